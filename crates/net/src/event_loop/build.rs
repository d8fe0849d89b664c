//! Building the swarm: transports and behaviour, listeners bound before
//! [`crate::Net::start`] returns, the records held before a restart, and the first
//! dial of the bootstrap peers.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::kad::{self, Record, RecordKey};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, noise, tcp, yamux};
use starling_core::Identity;

use super::unix_ms;
use crate::behaviour::Behaviour;
use crate::records;
use crate::{NetConfig, NetError};

/// The swarm with TCP (Noise, Yamux), QUIC, DNS and relayed connections, and our
/// behaviour, whose gossipsub records its counters into `registry`.
pub(super) fn swarm(
    identity: &Identity,
    config: &NetConfig,
    registry: &mut prometheus_client::registry::Registry,
) -> Result<Swarm<Behaviour>, NetError> {
    let setup = |e: String| NetError::Setup(e);
    // Without a readable /etc/resolv.conf (a minimal container) the node still
    // starts: host names then resolve from /etc/hosts only.
    let (dns_config, dns_options) = hickory_resolver::system_conf::read_system_conf()
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "no system DNS configuration; host names resolve from /etc/hosts only");
            Default::default()
        });
    Ok(
        libp2p::SwarmBuilder::with_existing_identity(identity.to_libp2p())
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| setup(e.to_string()))?
            .with_quic()
            // Host names in addresses (`/dns4/boot.example.org/tcp/7421/...`),
            // resolved as the system does (/etc/hosts, then its name servers).
            .with_dns_config(dns_config, dns_options)
            // Connections through a relay (`.../p2p/<relay>/p2p-circuit/p2p/<peer>`),
            // for peers behind NAT.
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(|e| setup(e.to_string()))?
            .with_behaviour(|key, relay_client| {
                Behaviour::with_registry(key, relay_client, config, registry)
            })
            .map_err(|e| setup(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_timeout))
            .build(),
    )
}

/// Listens on every address and waits (bounded) until each listener is bound, so
/// callers can print real addresses (port 0 is resolved by then).
pub(super) async fn listen(
    swarm: &mut Swarm<Behaviour>,
    addrs: &[Multiaddr],
) -> Result<(), NetError> {
    let mut pending = HashSet::new();
    for addr in addrs {
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::Listen {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
        pending.insert(id);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !pending.is_empty() {
        let ev = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .map_err(|_| NetError::Setup("listeners did not come up within 10 s".into()))?;
        match ev {
            SwarmEvent::NewListenAddr { listener_id, .. } => {
                pending.remove(&listener_id);
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                addresses,
            } => {
                pending.remove(&listener_id);
                if let Err(e) = reason {
                    return Err(NetError::Listen {
                        addr: format!("{addresses:?}"),
                        reason: e.to_string(),
                    });
                }
            }
            SwarmEvent::ListenerError { error, .. } => {
                return Err(NetError::Listen {
                    addr: String::new(),
                    reason: error.to_string(),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// Puts the records held before a restart (`key`, `value`, expiry in Unix ms) back
/// into the record store, skipping expired and invalid ones.
pub(super) fn load_records(swarm: &mut Swarm<Behaviour>, held: &[(Vec<u8>, Vec<u8>, u64)]) {
    let now_ms = unix_ms();
    for (key, value, expires) in held {
        if *expires <= now_ms || !records::is_valid(key, value) {
            continue;
        }
        let mut record = Record::new(RecordKey::new(key), value.clone());
        record.expires = Some(Instant::now() + Duration::from_millis(expires - now_ms));
        let store = swarm.behaviour_mut().kad.store_mut();
        let _ = kad::store::RecordStore::put(store, record);
    }
}

/// Adds the bootstrap peers to the routing table and dials them; returns their ids
/// (without our own, when we are listed: then we are a bootstrap node).
pub(super) fn dial_bootstrap(
    swarm: &mut Swarm<Behaviour>,
    addrs: &[Multiaddr],
) -> Result<HashSet<PeerId>, NetError> {
    let mut peers = HashSet::new();
    for addr in addrs {
        let (bare, peer) = strip_p2p(addr);
        let Some(peer) = peer else {
            return Err(NetError::BadAddress {
                addr: addr.to_string(),
                reason: "a bootstrap address must end with /p2p/<peer id>".into(),
            });
        };
        if peer == *swarm.local_peer_id() {
            continue;
        }
        swarm.behaviour_mut().kad.add_address(&peer, bare.clone());
        // Bootstrap nodes are servers: the first to ask whether we are reachable.
        swarm.behaviour_mut().autonat.add_server(peer, Some(bare));
        peers.insert(peer);
        if let Err(e) = swarm.dial(addr.clone()) {
            tracing::warn!(%addr, error = %e, "cannot dial bootstrap peer");
        }
    }
    Ok(peers)
}

/// The address without its `/p2p/<peer id>` part, and that peer id.
fn strip_p2p(addr: &Multiaddr) -> (Multiaddr, Option<PeerId>) {
    let mut out = Multiaddr::empty();
    let mut peer = None;
    for p in addr.iter() {
        match p {
            Protocol::P2p(id) => peer = Some(id),
            other => out.push(other),
        }
    }
    (out, peer)
}
