//! The composed libp2p behaviour and how each part is configured.

use std::time::Duration;

use libp2p::gossipsub::{self, MessageAuthenticity, MessageId, ValidationMode};
use libp2p::identity::Keypair;
use libp2p::kad::{self, Mode, StoreInserts};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{allow_block_list, autonat, connection_limits, dcutr, identify, ping, relay};
use sha2::{Digest, Sha256};

use crate::NetConfig;
use crate::ip_gate::{IpGate, IpLimits};
use crate::protocol::*;
use crate::record_store::{DhtStore, StoreLimits};

/// The longest a ping may take before its connection is given up (see
/// [`NetConfig::keepalive`]).
const PING_TIMEOUT_MAX: Duration = Duration::from_secs(20);

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub ip_gate: IpGate,
    pub limits: connection_limits::Behaviour,
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    /// Learns whether we are reachable from outside (peers dial us back).
    pub autonat: autonat::Behaviour,
    /// Reserves slots on relays and carries relayed connections (absent in swarms
    /// built without the relay transport).
    pub relay_client: Toggle<relay::client::Behaviour>,
    /// Relays for peers behind NAT, while we are publicly reachable.
    pub relay: Toggle<relay::Behaviour>,
    /// Turns relayed connections into direct ones (hole punching).
    pub dcutr: dcutr::Behaviour,
    pub kad: kad::Behaviour<DhtStore>,
    pub gossipsub: gossipsub::Behaviour,
    pub sync: request_response::cbor::Behaviour<SyncRequest, SyncResponse>,
    pub social: request_response::cbor::Behaviour<SocialRequest, SocialResponse>,
}

impl Behaviour {
    /// The behaviour without libp2p's own counters, for a swarm without the relay
    /// transport (it neither reserves nor dials relayed addresses).
    pub fn new(
        key: &Keypair,
        config: &NetConfig,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Self::build(key, config, None, None)
    }

    /// The behaviour of a node: the relay client of the swarm's relay transport,
    /// gossipsub recording its counters into `registry`.
    pub fn with_registry(
        key: &Keypair,
        relay_client: relay::client::Behaviour,
        config: &NetConfig,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Self::build(key, config, Some(relay_client), Some(registry))
    }

    fn build(
        key: &Keypair,
        config: &NetConfig,
        relay_client: Option<relay::client::Behaviour>,
        registry: Option<&mut prometheus_client::registry::Registry>,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let peer_id = key.public().to_peer_id();

        let limits = connection_limits::Behaviour::new(
            connection_limits::ConnectionLimits::default()
                .with_max_established(Some(config.max_connections))
                .with_max_established_per_peer(Some(2))
                .with_max_pending_incoming(Some(64))
                .with_max_pending_outgoing(Some(64)),
        );

        let ip_gate = IpGate::new(IpLimits {
            max_per_ip: config.max_connections_per_ip,
            ..IpLimits::default()
        });

        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_VERSION.to_string(), key.public())
                .with_agent_version(format!("starling/{}", env!("CARGO_PKG_VERSION")))
                .with_push_listen_addr_updates(true),
        );

        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        kad_config
            .set_query_timeout(config.query_timeout)
            // Every record is checked (signature, first-come claim, newest profile)
            // before it is stored: see `records::judge_put`.
            .set_record_filtering(StoreInserts::FilterBoth)
            .set_periodic_bootstrap_interval(config.periodic_bootstrap)
            // The longest any record lives (a name claim's); `store_for` holds each kind
            // to its own (`records::ttl`).
            .set_record_ttl(Some(crate::records::CLAIM_TTL))
            .set_publication_interval(Some(Duration::from_secs(3600)))
            .set_provider_record_ttl(Some(Duration::from_secs(24 * 3600)))
            .set_provider_publication_interval(Some(Duration::from_secs(3600)))
            // libp2p allocates all 256 buckets at full size up front (k=20: 1.6 MB per
            // node). Eight contacts per bucket, as in BitTorrent's Mainline DHT, is
            // plenty for lookups; records still go to the 20 closest nodes.
            .set_kbucket_size(std::num::NonZeroUsize::new(8).expect("non-zero"));
        // Bounded against floods: see `record_store`.
        let store = DhtStore::new(peer_id, StoreLimits::default());
        let mut kad = kad::Behaviour::with_config(peer_id, store, kad_config);
        // Kademlia would wait for a confirmed external address before serving, which
        // never comes on loopback or behind NAT: every node serves the DHT.
        kad.set_mode(Some(Mode::Server));

        // Posts are signed once by their author and checked by the application
        // (validate_messages); gossipsub's own signatures would be checked on every
        // duplicate. Message id = hash of the content, so a forged copy can never
        // shadow the real post in the duplicate cache.
        let gossip_config = gossipsub::ConfigBuilder::default()
            .protocol_id_prefix(GOSSIP_PREFIX)
            .validation_mode(ValidationMode::Anonymous)
            .validate_messages()
            .message_id_fn(|m: &gossipsub::Message| {
                MessageId::from(Sha256::digest(&m.data)[..20].to_vec())
            })
            .max_transmit_size(MAX_GOSSIP_BYTES)
            .heartbeat_initial_delay(Duration::from_millis(100))
            .heartbeat_interval(Duration::from_secs(1))
            // No mesh: an author's posts go straight to every follower it is connected
            // to (flood publishing), one copy each, and followers forward nothing
            // eagerly. With a mesh (degree 3, IDONTWANT at every size) each follower
            // still took in 3.6-3.8 copies of every post, because mesh forwarding beat
            // the IDONTWANT notices; without it, 1.0, and CPU per delivery fell by a
            // fifth to a third (BENCHMARKS.md). A follower the author is not connected
            // to (over the follower slots) learns of each post by gossip (IHAVE, every
            // heartbeat, from up to 3 connected peers of the topic that validated it)
            // and fetches it (IWANT), or gets it by catch-up.
            .mesh_n(0)
            .mesh_n_low(0)
            .mesh_n_high(0)
            .mesh_outbound_min(0)
            .gossip_lazy(3)
            .gossip_factor(0.1)
            .duplicate_cache_time(Duration::from_secs(120))
            .build()
            .map_err(|e| format!("gossipsub config: {e}"))?;
        // Its counters say how many copies of each post arrive (duplicates included);
        // per topic, for at most `max_topics` topics (the rest are not counted).
        let mut gossipsub =
            gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, gossip_config)?;
        if let Some(registry) = registry {
            gossipsub = gossipsub.with_metrics(
                registry.sub_registry_with_prefix("gossipsub"),
                libp2p_gossipsub::MetricsConfig::default(),
            );
        }

        let rr_config =
            request_response::Config::default().with_request_timeout(config.request_timeout);
        let sync = request_response::cbor::Behaviour::with_codec(
            request_response::cbor::codec::Codec::default()
                .set_request_size_maximum(MAX_SYNC_REQUEST_BYTES)
                .set_response_size_maximum(MAX_SYNC_RESPONSE_BYTES),
            [(SYNC_PROTOCOL, ProtocolSupport::Full)],
            rr_config.clone(),
        );
        let social = request_response::cbor::Behaviour::with_codec(
            request_response::cbor::codec::Codec::default()
                .set_request_size_maximum(MAX_SOCIAL_BYTES)
                .set_response_size_maximum(MAX_SOCIAL_BYTES),
            [(SOCIAL_PROTOCOL, ProtocolSupport::Full)],
            rr_config,
        );

        // AutoNAT asks connected peers to dial our addresses back; as a server it
        // dials back only the requester's own IP, at most 30 probes a second in all
        // and 3 per peer.
        let autonat = autonat::Behaviour::new(
            peer_id,
            autonat::Config {
                boot_delay: Duration::from_secs(5),
                only_global_ips: !config.autonat_private_ips,
                ..autonat::Config::default()
            },
        );
        let relay = config.relay.as_ref().map(|l| {
            let mut r = relay::Behaviour::new(
                peer_id,
                relay::Config {
                    max_reservations: l.max_reservations,
                    max_reservations_per_peer: l.max_reservations_per_peer,
                    reservation_duration: l.reservation_duration,
                    max_circuits: l.max_circuits,
                    max_circuits_per_peer: l.max_circuits_per_peer,
                    max_circuit_duration: l.max_circuit_duration,
                    max_circuit_bytes: l.max_circuit_bytes,
                    // libp2p's rate limits per peer and per IP stay.
                    ..relay::Config::default()
                },
            );
            // Offered only while AutoNAT says we are public (or an external address
            // is configured): the event loop switches it.
            r.set_status(Some(relay::Status::Disable));
            r
        });

        Ok(Self {
            ip_gate,
            limits,
            blocked: allow_block_list::Behaviour::default(),
            identify,
            ping: ping::Behaviour::new(
                ping::Config::new()
                    .with_interval(config.keepalive)
                    .with_timeout(config.keepalive.min(PING_TIMEOUT_MAX)),
            ),
            autonat,
            relay_client: relay_client.into(),
            relay: relay.into(),
            dcutr: dcutr::Behaviour::new(peer_id),
            kad,
            gossipsub,
            sync,
            social,
        })
    }
}
