//! The [`Net`] handle and the [`Command`]s it sends to the swarm task, each carrying
//! the oneshot sender its answer comes back on.

use std::time::Duration;

use libp2p::gossipsub::{MessageAcceptance, MessageId};
use libp2p::request_response::ResponseChannel;
use libp2p::{Multiaddr, PeerId};
use starling_core::{AuthorId, Identity};
use tokio::sync::{mpsc, oneshot};

use crate::event_loop::EventLoop;
use crate::protocol::{SocialRequest, SocialResponse, SyncRequest, SyncResponse};
use crate::{Answer, GetMode, NetConfig, NetError, NetEvent, NetStatus};

pub(crate) type Reply<T> = oneshot::Sender<Result<T, NetError>>;

/// Commands to the swarm task. Those with a `reply` are answered on it.
pub(crate) enum Command {
    Status {
        reply: oneshot::Sender<NetStatus>,
    },
    /// libp2p's own metrics (swarm, Kademlia, gossipsub, identify, ping, relay,
    /// hole punching), in the OpenMetrics text format.
    Metrics {
        reply: oneshot::Sender<String>,
    },
    /// Peers in the routing table we are connected to now, with their addresses.
    ConnectedPeers {
        reply: oneshot::Sender<Vec<(PeerId, Vec<Multiaddr>)>>,
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
    /// Verdicts on gossip messages: (message, the peer it came from, verdict).
    Report {
        verdicts: Vec<(MessageId, PeerId, MessageAcceptance)>,
    },
    GetRecord {
        key: Vec<u8>,
        mode: GetMode,
        reply: Reply<Vec<Answer>>,
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

/// Where the answer to an inbound request goes: back through the swarm, or (in the
/// simulated network) straight to the requester.
#[derive(Debug)]
pub struct Responder<T: std::fmt::Debug>(Route<T>);

#[derive(Debug)]
enum Route<T: std::fmt::Debug> {
    Swarm(ResponseChannel<T>),
    Direct(oneshot::Sender<T>),
}

impl<T: std::fmt::Debug> Responder<T> {
    pub(crate) fn swarm(channel: ResponseChannel<T>) -> Self {
        Self(Route::Swarm(channel))
    }
    pub(crate) fn direct(reply: oneshot::Sender<T>) -> Self {
        Self(Route::Direct(reply))
    }
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
        let event_loop = EventLoop::new(identity, &config, rx, events_tx).await?;
        tokio::spawn(event_loop.run());
        Ok((Self { tx, peer_id }, events_rx))
    }

    /// A handle whose commands go to `tx` (the simulated network's member task).
    pub(crate) fn on(tx: mpsc::Sender<Command>, peer_id: PeerId) -> Self {
        Self { tx, peer_id }
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

    /// libp2p's own metrics, in the OpenMetrics text format (ending in `# EOF`).
    pub async fn metrics_text(&self) -> Result<String, NetError> {
        self.ask(|reply| Command::Metrics { reply }).await
    }

    /// The peers in the routing table we are connected to now, with the addresses
    /// they listen on (at most 64): what a restarted node can rejoin through.
    pub async fn connected_peers(&self) -> Result<Vec<(PeerId, Vec<Multiaddr>)>, NetError> {
        self.ask(|reply| Command::ConnectedPeers { reply }).await
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

    /// The node's verdicts on gossip messages (message, the peer it came from,
    /// verdict), all in one command: accepted messages are forwarded, rejected ones
    /// count against the peer that sent them.
    pub async fn report(
        &self,
        verdicts: Vec<(MessageId, PeerId, MessageAcceptance)>,
    ) -> Result<(), NetError> {
        self.send(Command::Report { verdicts }).await
    }

    /// Valid records found under `key` (empty when there are none).
    pub async fn get_record(&self, key: Vec<u8>, mode: GetMode) -> Result<Vec<Answer>, NetError> {
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
        channel: Responder<SyncResponse>,
        response: SyncResponse,
    ) -> Result<(), NetError> {
        match channel.0 {
            Route::Swarm(channel) => self.send(Command::RespondSync { channel, response }).await,
            Route::Direct(reply) => reply.send(response).map_err(|_| NetError::Stopped),
        }
    }

    pub async fn respond_social(
        &self,
        channel: Responder<SocialResponse>,
        response: SocialResponse,
    ) -> Result<(), NetError> {
        match channel.0 {
            Route::Swarm(channel) => {
                self.send(Command::RespondSocial { channel, response })
                    .await
            }
            Route::Direct(reply) => reply.send(response).map_err(|_| NetError::Stopped),
        }
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
