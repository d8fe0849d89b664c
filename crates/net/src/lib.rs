//! Starling's network layer, on rust-libp2p.
//!
//! One task owns the [`libp2p::Swarm`] (the [`event_loop`]); the rest of the program
//! holds a cloneable [`Net`] handle that sends [`Command`]s carrying oneshot reply
//! senders, and receives [`NetEvent`]s (gossip messages awaiting validation, inbound
//! requests carrying their response channel, connection changes). When the task is
//! gone every call fails with [`NetError::Stopped`].
//!
//! Layout:
//! - [`protocol`]: protocol names, topics, request/response messages, size limits.
//! - [`records`]: which DHT records are stored for others and believed.
//! - [`behaviour`]: the composed libp2p behaviour and its configuration.
//! - [`event_loop`]: the swarm task.

pub mod behaviour;
pub mod event_loop;
pub mod protocol;
pub mod records;

use std::collections::BTreeMap;
use std::time::Duration;

pub use libp2p::gossipsub::{MessageAcceptance, MessageId};
pub use libp2p::request_response::ResponseChannel;
pub use libp2p::{Multiaddr, PeerId};
use starling_core::{AuthorId, Identity};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

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
    /// Most established connections.
    pub max_connections: u32,
    /// Capacity of the event queue towards the node; when full, gossip is ignored
    /// (and counted) rather than blocking the swarm.
    pub event_buffer: usize,
    /// DHT records this node held before a restart (`key`, `value`, expiry in Unix
    /// ms); loaded into the record store if still valid.
    pub initial_records: Vec<(Vec<u8>, Vec<u8>, u64)>,
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
            idle_timeout: Duration::from_secs(30),
            max_connections: 512,
            event_buffer: 4096,
            initial_records: Vec::new(),
        }
    }
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
    },
    SyncRequest {
        peer: PeerId,
        request: SyncRequest,
        channel: ResponseChannel<SyncResponse>,
    },
    SocialRequest {
        peer: PeerId,
        request: SocialRequest,
        channel: ResponseChannel<SocialResponse>,
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
    /// Run the query to its end, counting only records held by other peers.
    AllRemote,
}

/// A snapshot of the network for `status`.
#[derive(Debug, Clone)]
pub struct NetStatus {
    pub peer_id: PeerId,
    /// Full addresses others can dial (with `/p2p/<peer id>`).
    pub listen_addrs: Vec<Multiaddr>,
    pub connected_peers: Vec<PeerId>,
    pub routing_table_size: usize,
    pub subscribed_topics: usize,
    /// Kademlia queries in flight.
    pub dht_queries: usize,
    /// Counted events: refused DHT records, ignored gossip, bans, ...
    pub counters: BTreeMap<String, u64>,
}

pub(crate) type Reply<T> = oneshot::Sender<Result<T, NetError>>;

/// Commands to the swarm task. Those with a `reply` are answered on it.
pub(crate) enum Command {
    Status {
        reply: oneshot::Sender<NetStatus>,
    },
    IsConnected {
        peer: PeerId,
        reply: oneshot::Sender<bool>,
    },
    Dial {
        addr: Multiaddr,
        reply: Reply<()>,
    },
    Subscribe {
        author: AuthorId,
    },
    Unsubscribe {
        author: AuthorId,
    },
    Publish {
        author: AuthorId,
        data: Vec<u8>,
        reply: Reply<usize>,
    },
    Report {
        id: MessageId,
        source: PeerId,
        acceptance: MessageAcceptance,
    },
    GetRecord {
        key: Vec<u8>,
        mode: GetMode,
        reply: Reply<Vec<Vec<u8>>>,
    },
    PutRecord {
        key: Vec<u8>,
        value: Vec<u8>,
        reply: Reply<()>,
    },
    StartProviding {
        key: Vec<u8>,
        reply: Reply<()>,
    },
    StopProviding {
        key: Vec<u8>,
    },
    Providers {
        key: Vec<u8>,
        reply: Reply<Vec<PeerId>>,
    },
    FindPeer {
        peer: PeerId,
        reply: Reply<Vec<Multiaddr>>,
    },
    Sync {
        peer: PeerId,
        request: SyncRequest,
        reply: Reply<SyncResponse>,
    },
    Social {
        peer: PeerId,
        request: SocialRequest,
        reply: Reply<SocialResponse>,
    },
    RespondSync {
        channel: ResponseChannel<SyncResponse>,
        response: SyncResponse,
    },
    RespondSocial {
        channel: ResponseChannel<SocialResponse>,
        response: SocialResponse,
    },
    Ban {
        peer: PeerId,
        duration: Duration,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
}

/// The handle to the network task; cheap to clone.
#[derive(Clone)]
pub struct Net {
    tx: mpsc::Sender<Command>,
    peer_id: PeerId,
}

impl Net {
    /// Starts the swarm task on the current tokio runtime, listening and dialing the
    /// bootstrap peers. Returns once every listener is bound (or failed).
    pub async fn start(
        identity: &Identity,
        config: NetConfig,
    ) -> Result<(Self, mpsc::Receiver<NetEvent>), NetError> {
        let (tx, rx) = mpsc::channel(1024);
        let (events_tx, events_rx) = mpsc::channel(config.event_buffer);
        let peer_id = identity.author().peer_id();
        let event_loop = event_loop::EventLoop::new(identity, &config, rx, events_tx).await?;
        tokio::spawn(event_loop.run());
        Ok((Self { tx, peer_id }, events_rx))
    }

    pub fn local_peer_id(&self) -> PeerId {
        self.peer_id
    }

    async fn send(&self, cmd: Command) -> Result<(), NetError> {
        self.tx.send(cmd).await.map_err(|_| NetError::Stopped)
    }

    /// Sends a command carrying a reply sender and waits for the answer.
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NetError> {
        let (reply, rx) = oneshot::channel();
        self.send(make(reply)).await?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, NetError> {
        self.ask(make).await?
    }

    pub async fn status(&self) -> Result<NetStatus, NetError> {
        self.ask(|reply| Command::Status { reply }).await
    }

    pub async fn is_connected(&self, peer: PeerId) -> Result<bool, NetError> {
        self.ask(|reply| Command::IsConnected { peer, reply }).await
    }

    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetError> {
        self.call(|reply| Command::Dial { addr, reply }).await
    }

    /// Joins an author's feed topic.
    pub async fn subscribe(&self, author: AuthorId) -> Result<(), NetError> {
        self.send(Command::Subscribe { author }).await
    }

    pub async fn unsubscribe(&self, author: AuthorId) -> Result<(), NetError> {
        self.send(Command::Unsubscribe { author }).await
    }

    /// Publishes on `author`'s topic; returns how many peers it went to (0 is normal:
    /// nobody online subscribes; followers will pull).
    pub async fn publish(&self, author: AuthorId, data: Vec<u8>) -> Result<usize, NetError> {
        self.call(|reply| Command::Publish {
            author,
            data,
            reply,
        })
        .await
    }

    /// The node's verdict on a gossip message: accepted messages are forwarded,
    /// rejected ones count against the peer that sent them.
    pub async fn report(
        &self,
        id: MessageId,
        source: PeerId,
        acceptance: MessageAcceptance,
    ) -> Result<(), NetError> {
        self.send(Command::Report {
            id,
            source,
            acceptance,
        })
        .await
    }

    /// Valid records found under `key` (empty when there are none).
    pub async fn get_record(&self, key: Vec<u8>, mode: GetMode) -> Result<Vec<Vec<u8>>, NetError> {
        self.call(|reply| Command::GetRecord { key, mode, reply })
            .await
    }

    /// Stores a record locally and at the peers closest to its key (at least one).
    pub async fn put_record(&self, key: Vec<u8>, value: Vec<u8>) -> Result<(), NetError> {
        self.call(|reply| Command::PutRecord { key, value, reply })
            .await
    }

    pub async fn start_providing(&self, key: Vec<u8>) -> Result<(), NetError> {
        self.call(|reply| Command::StartProviding { key, reply })
            .await
    }

    pub async fn stop_providing(&self, key: Vec<u8>) -> Result<(), NetError> {
        self.send(Command::StopProviding { key }).await
    }

    pub async fn providers(&self, key: Vec<u8>) -> Result<Vec<PeerId>, NetError> {
        self.call(|reply| Command::Providers { key, reply }).await
    }

    /// Looks a peer up in the DHT; its addresses are remembered for dialing.
    pub async fn find_peer(&self, peer: PeerId) -> Result<Vec<Multiaddr>, NetError> {
        self.call(|reply| Command::FindPeer { peer, reply }).await
    }

    /// Sends a sync request (dialing, and looking the peer up, as needed).
    pub async fn sync(&self, peer: PeerId, request: SyncRequest) -> Result<SyncResponse, NetError> {
        self.call(|reply| Command::Sync {
            peer,
            request,
            reply,
        })
        .await
    }

    pub async fn social(
        &self,
        peer: PeerId,
        request: SocialRequest,
    ) -> Result<SocialResponse, NetError> {
        self.call(|reply| Command::Social {
            peer,
            request,
            reply,
        })
        .await
    }

    pub async fn respond_sync(
        &self,
        channel: ResponseChannel<SyncResponse>,
        response: SyncResponse,
    ) -> Result<(), NetError> {
        self.send(Command::RespondSync { channel, response }).await
    }

    pub async fn respond_social(
        &self,
        channel: ResponseChannel<SocialResponse>,
        response: SocialResponse,
    ) -> Result<(), NetError> {
        self.send(Command::RespondSocial { channel, response })
            .await
    }

    /// Disconnects a misbehaving peer and refuses it for `duration`.
    pub async fn ban(&self, peer: PeerId, duration: Duration) -> Result<(), NetError> {
        self.send(Command::Ban { peer, duration }).await
    }

    /// Stops the swarm task (closing every connection) and waits for it.
    pub async fn shutdown(&self) {
        let (done, rx) = oneshot::channel();
        if self.send(Command::Shutdown { done }).await.is_ok() {
            let _ = rx.await;
        }
    }
}
