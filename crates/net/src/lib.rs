//! Starling's network layer, on rust-libp2p.
//!
//! One task owns the [`libp2p::Swarm`] (the `event_loop`); the rest of the program
//! holds a cloneable [`Net`] handle that sends commands carrying oneshot reply
//! senders, and receives [`NetEvent`]s (gossip messages awaiting validation, inbound
//! requests carrying their response channel, connection changes). When the task is
//! gone every call fails with [`NetError::Stopped`].
//!
//! Layout:
//! - [`protocol`]: protocol names, topics, request/response messages, size limits.
//! - [`records`]: which DHT records are stored for others and believed.
//! - [`record_store`]: the bounded Kademlia store holding them.
//! - [`behaviour`]: the composed libp2p behaviour and its configuration.
//! - `event_loop`: the swarm task.
//! - `handle`: [`Net`] and the commands it sends.
//! - [`sim`]: a simulated network serving the same [`Net`] handles and
//!   [`NetEvent`]s from one in-process world, for the deterministic simulator.

pub mod behaviour;
mod event_loop;
mod handle;
pub mod ip_gate;
pub mod protocol;
pub mod record_store;
pub mod records;
pub mod sim;

use std::collections::BTreeMap;
use std::time::Duration;

pub use libp2p::gossipsub::{MessageAcceptance, MessageId};
pub use libp2p::request_response::ResponseChannel;
pub use libp2p::{Multiaddr, PeerId, multiaddr};
use starling_core::AuthorId;
use thiserror::Error;

pub(crate) use handle::{Command, Reply};
pub use handle::{Net, Responder};
pub use protocol::{SocialRequest, SocialResponse, SyncRequest, SyncResponse};

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum NetError {
    #[error("the network task has stopped")]
    Stopped,
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("cannot set up the network: {0}")]
    Setup(String),
    #[error("invalid address {addr}: {reason}")]
    BadAddress { addr: String, reason: String },
    #[error("peer {0} cannot be reached")]
    Unreachable(PeerId),
    #[error("request to {peer} failed: {reason}")]
    Request { peer: PeerId, reason: String },
    #[error("DHT query failed: {0}")]
    Query(String),
    #[error("publish failed: {0}")]
    Publish(String),
}

/// How the network runs.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Addresses to listen on (`/ip4/127.0.0.1/tcp/0`, `/ip4/0.0.0.0/udp/7421/quic-v1`, ...).
    pub listen: Vec<Multiaddr>,
    /// Peers to join through, with their `/p2p/<peer id>` suffix. None: this node is
    /// itself a bootstrap node.
    pub bootstrap: Vec<Multiaddr>,
    /// Timeout of one request-response exchange.
    pub request_timeout: Duration,
    /// Timeout of one DHT query.
    pub query_timeout: Duration,
    /// Kademlia's periodic bootstrap; `None` disables it (tests, small networks).
    pub periodic_bootstrap: Option<Duration>,
    /// Connections with nothing going on are closed after this long.
    pub idle_timeout: Duration,
    /// How often each connection is checked with a ping; a connection whose peer
    /// does not answer within this long (at most 20 s) is closed: a peer behind a
    /// NAT that dropped its mapping, or a machine gone without a word, is noticed
    /// instead of being written to until TCP gives up (minutes later).
    pub keepalive: Duration,
    /// Most established connections. Peers that are only our followers (subscribed to
    /// our feed topic and nothing we need) hold at most three quarters of them.
    pub max_connections: u32,
    /// Inbound connections one IP address (an IPv6 /64) may hold; 0: no limit.
    pub max_connections_per_ip: u32,
    /// Capacity of the event queue towards the node; when full, gossip is ignored
    /// (and counted) rather than blocking the swarm.
    pub event_buffer: usize,
    /// DHT records this node held before a restart (`key`, `value`, expiry in Unix
    /// ms); loaded into the record store if still valid.
    pub initial_records: Vec<(Vec<u8>, Vec<u8>, u64)>,
    /// Serve as a circuit relay for peers behind NAT, within these limits. The relay
    /// is offered only while this node is publicly reachable (AutoNAT confirmed an
    /// address, or one is named in `external_addrs`). `None`: never.
    pub relay: Option<RelayLimits>,
    /// While not known to be publicly reachable, reserve slots on up to two relays
    /// (peers we reached directly that offer one) and advertise the relayed
    /// addresses, so that peers can reach us through them.
    pub use_relays: bool,
    /// Addresses this node is known to be reachable at (a server's public address):
    /// advertised from the start, and the relay is offered at once.
    pub external_addrs: Vec<Multiaddr>,
    /// AutoNAT also tests private addresses (10/8, 192.168/16, ...): for a network
    /// that is private as a whole and has NATs inside it (a test network, a campus).
    /// Off: only global addresses count, as on the internet.
    pub autonat_private_ips: bool,
}

/// What a relay grants the peers behind NAT that use it (circuit relay v2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayLimits {
    /// Peers holding a reservation (reachable through us) at once.
    pub max_reservations: usize,
    /// Reservations one peer may hold.
    pub max_reservations_per_peer: usize,
    /// How long a reservation lasts before the peer must renew it.
    pub reservation_duration: Duration,
    /// Relayed connections at once.
    pub max_circuits: usize,
    /// Relayed connections one peer may hold.
    pub max_circuits_per_peer: usize,
    /// A relayed connection is closed after this long (peers then reconnect, or
    /// have already moved to a direct connection by hole punching).
    pub max_circuit_duration: Duration,
    /// ... or after this many bytes in each direction.
    pub max_circuit_bytes: u64,
}

impl Default for RelayLimits {
    /// What an ordinary node grants when it is publicly reachable: a few circuits,
    /// enough for posts and a catch-up page (512 KiB) each.
    fn default() -> Self {
        Self {
            max_reservations: 64,
            max_reservations_per_peer: 2,
            reservation_duration: Duration::from_secs(3600),
            max_circuits: 16,
            max_circuits_per_peer: 4,
            max_circuit_duration: Duration::from_secs(10 * 60),
            max_circuit_bytes: 1 << 20,
        }
    }
}

impl RelayLimits {
    /// What `starling relay` grants by default: a server whose job is relaying.
    pub fn server() -> Self {
        Self {
            max_reservations: 1024,
            max_reservations_per_peer: 2,
            reservation_duration: Duration::from_secs(3600),
            max_circuits: 256,
            max_circuits_per_peer: 8,
            max_circuit_duration: Duration::from_secs(10 * 60),
            max_circuit_bytes: 4 << 20,
        }
    }
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            listen: vec![
                "/ip4/0.0.0.0/tcp/7421".parse().expect("literal"),
                "/ip4/0.0.0.0/udp/7421/quic-v1".parse().expect("literal"),
            ],
            bootstrap: Vec::new(),
            request_timeout: Duration::from_secs(10),
            query_timeout: Duration::from_secs(10),
            periodic_bootstrap: Some(Duration::from_secs(300)),
            // A DHT query's connections are done with in seconds; a new one costs a
            // handshake (about a millisecond on a LAN).
            idle_timeout: Duration::from_secs(30),
            // libp2p's default is 15 s; every connection pays for it at rest, and
            // home routers keep an established TCP mapping for minutes at least.
            keepalive: Duration::from_secs(30),
            max_connections: 512,
            max_connections_per_ip: 16,
            event_buffer: 4096,
            initial_records: Vec::new(),
            relay: Some(RelayLimits::default()),
            use_relays: true,
            external_addrs: Vec::new(),
            autonat_private_ips: false,
        }
    }
}

/// Nanoseconds on the monotonic clock. It is the same clock for every process on
/// one machine (Linux `CLOCK_MONOTONIC`), so stamps taken in several processes
/// compare: the latency breakdown of a post across nodes uses it.
pub fn mono_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// What the network tells the node.
#[derive(Debug)]
pub enum NetEvent {
    /// A gossip message on a feed topic we subscribe to. It is neither delivered
    /// onwards nor forgotten until the node calls [`Net::report`].
    Gossip {
        id: MessageId,
        source: PeerId,
        /// The author whose topic carried it.
        topic_author: AuthorId,
        data: Vec<u8>,
        /// When the swarm task took it in ([`mono_ns`]).
        received_ns: u64,
    },
    SyncRequest {
        peer: PeerId,
        request: SyncRequest,
        channel: Responder<SyncResponse>,
    },
    SocialRequest {
        peer: PeerId,
        request: SocialRequest,
        channel: Responder<SocialResponse>,
    },
    /// We stored a DHT record for someone (validated); persist it to keep serving it
    /// across restarts. `expires` is in Unix ms.
    RecordStored {
        key: Vec<u8>,
        value: Vec<u8>,
        expires: u64,
    },
    /// First connection to a peer established.
    Connected { peer: PeerId },
    /// Last connection to a peer closed.
    Disconnected { peer: PeerId },
}

/// How much of a DHT query to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetMode {
    /// Stop at the first valid record (ours included).
    First,
    /// Run the query to its end: one answer from each peer holding a valid record,
    /// and ours (at most [`MAX_ANSWERS`]). For questions that must not trust a single
    /// peer, such as who holds a handle.
    Poll,
}

/// Answers one [`GetMode::Poll`] query keeps (Kademlia asks about 20 peers).
pub const MAX_ANSWERS: usize = 64;

/// A valid record found by a DHT query, and who held it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The peer that answered; `None` for our own record store.
    pub from: Option<PeerId>,
    pub value: Vec<u8>,
}

/// A snapshot of the network for `status`.
#[derive(Debug, Clone)]
pub struct NetStatus {
    pub peer_id: PeerId,
    /// Full addresses others can dial (with `/p2p/<peer id>`), relayed ones included.
    pub listen_addrs: Vec<Multiaddr>,
    /// Addresses confirmed to reach us from outside (AutoNAT, a relay, the config).
    pub external_addrs: Vec<Multiaddr>,
    /// What AutoNAT found: `public`, `private` (behind NAT or a firewall) or `unknown`.
    pub reachability: &'static str,
    /// Relays holding a reservation for us.
    pub relays: Vec<PeerId>,
    pub connected_peers: Vec<PeerId>,
    /// Connected peers reached only through a relay (no direct connection yet).
    pub relayed_peers: Vec<PeerId>,
    pub routing_table_size: usize,
    pub subscribed_topics: usize,
    /// Kademlia queries in flight.
    pub dht_queries: usize,
    /// Counted events: refused DHT records, ignored gossip, bans, ...
    pub counters: BTreeMap<String, u64>,
}
