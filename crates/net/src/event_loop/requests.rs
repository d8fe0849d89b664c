//! Our outbound sync and social requests, each waiting for its response (keyed by
//! protocol and request id) or, when its peer could not be dialed, for a DHT lookup
//! of that peer; and the handler the two request-response behaviours share.

use std::collections::HashMap;

use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::{Multiaddr, PeerId, Swarm};

use super::EventLoop;
use crate::Responder;
use crate::behaviour::Behaviour;
use crate::protocol::{SocialRequest, SocialResponse, SyncRequest, SyncResponse};
use crate::{NetError, NetEvent, Reply};

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Proto {
    Sync,
    Social,
}

/// An outbound request and who waits for its response.
pub(super) enum Outbound {
    Sync(SyncRequest, Reply<SyncResponse>),
    Social(SocialRequest, Reply<SocialResponse>),
}

impl Outbound {
    fn fail(self, e: NetError) {
        match self {
            Outbound::Sync(_, r) => {
                let _ = r.send(Err(e));
            }
            Outbound::Social(_, r) => {
                let _ = r.send(Err(e));
            }
        }
    }
}

struct PendingRequest {
    peer: PeerId,
    outbound: Outbound,
    /// Whether we already looked the peer up after a failed dial.
    looked_up: bool,
}

#[derive(Default)]
pub(super) struct Requests {
    /// Sent, waiting for the response.
    sent: HashMap<(Proto, OutboundRequestId), PendingRequest>,
    /// Their peer could not be dialed: waiting for a lookup of it.
    lookups: HashMap<PeerId, Vec<PendingRequest>>,
}

impl Requests {
    /// Sends a request (the swarm dials the peer as needed).
    pub(super) fn send(&mut self, swarm: &mut Swarm<Behaviour>, peer: PeerId, outbound: Outbound) {
        self.dispatch(
            swarm,
            PendingRequest {
                peer,
                outbound,
                looked_up: false,
            },
        );
    }

    fn dispatch(&mut self, swarm: &mut Swarm<Behaviour>, req: PendingRequest) {
        let b = swarm.behaviour_mut();
        let key = match &req.outbound {
            Outbound::Sync(r, _) => (Proto::Sync, b.sync.send_request(&req.peer, r.clone())),
            Outbound::Social(r, _) => (Proto::Social, b.social.send_request(&req.peer, r.clone())),
        };
        self.sent.insert(key, req);
    }

    /// The peers sent requests wait on.
    pub(super) fn peers(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.sent.values().map(|r| r.peer)
    }

    fn on_response<Q: Exchange>(&mut self, id: OutboundRequestId, response: Q::Response) {
        if let Some(req) = self.sent.remove(&(Q::PROTO, id)) {
            Q::answer(req.outbound, response);
        }
    }

    /// A request failed. The first time its peer could not be dialed it waits for a
    /// lookup of the peer: returns the peer to look up. Otherwise its caller gets
    /// the error.
    fn on_failure(
        &mut self,
        proto: Proto,
        id: OutboundRequestId,
        error: request_response::OutboundFailure,
    ) -> Option<PeerId> {
        let req = self.sent.remove(&(proto, id))?;
        let peer = req.peer;
        match error {
            request_response::OutboundFailure::DialFailure if !req.looked_up => {
                self.lookups.entry(peer).or_default().push(PendingRequest {
                    looked_up: true,
                    ..req
                });
                return Some(peer);
            }
            request_response::OutboundFailure::DialFailure => {
                req.outbound.fail(NetError::Unreachable(peer));
            }
            other => req.outbound.fail(NetError::Request {
                peer,
                reason: other.to_string(),
            }),
        }
        None
    }

    /// A lookup of `peer` ended with `addrs` (empty: not found): the requests
    /// waiting for it are sent again, or fail.
    pub(super) fn on_lookup(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        addrs: &[Multiaddr],
    ) {
        for req in self.lookups.remove(&peer).unwrap_or_default() {
            if addrs.is_empty() {
                req.outbound.fail(NetError::Unreachable(peer));
            } else {
                self.dispatch(swarm, req);
            }
        }
    }
}

/// What sets the sync and social protocols apart, for the handler they share.
pub(super) trait Exchange: Sized {
    type Response;
    const PROTO: Proto;
    const NAME: &'static str;
    /// The event handing an inbound request to the node.
    fn inbound(peer: PeerId, request: Self, channel: ResponseChannel<Self::Response>) -> NetEvent;
    /// Hands the response to whoever waits for it.
    fn answer(outbound: Outbound, response: Self::Response);
}

impl Exchange for SyncRequest {
    type Response = SyncResponse;
    const PROTO: Proto = Proto::Sync;
    const NAME: &'static str = "sync";

    fn inbound(peer: PeerId, request: Self, channel: ResponseChannel<SyncResponse>) -> NetEvent {
        NetEvent::SyncRequest {
            peer,
            request,
            channel: Responder::swarm(channel),
        }
    }

    fn answer(outbound: Outbound, response: SyncResponse) {
        if let Outbound::Sync(_, reply) = outbound {
            let _ = reply.send(Ok(response));
        }
    }
}

impl Exchange for SocialRequest {
    type Response = SocialResponse;
    const PROTO: Proto = Proto::Social;
    const NAME: &'static str = "social";

    fn inbound(peer: PeerId, request: Self, channel: ResponseChannel<SocialResponse>) -> NetEvent {
        NetEvent::SocialRequest {
            peer,
            request,
            channel: Responder::swarm(channel),
        }
    }

    fn answer(outbound: Outbound, response: SocialResponse) {
        if let Outbound::Social(_, reply) = outbound {
            let _ = reply.send(Ok(response));
        }
    }
}

impl EventLoop {
    /// Events of the sync and the social behaviour: inbound requests go to the node
    /// (when it is overloaded the channel is dropped: the requester sees a failure
    /// and tries elsewhere), responses to their callers.
    pub(super) fn on_exchange<Q: Exchange>(&mut self, ev: request_response::Event<Q, Q::Response>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => {
                self.connections.touch(peer);
                match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => {
                        let _ = self.emit(Q::inbound(peer, request, channel));
                    }
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => {
                        self.requests.on_response::<Q>(request_id, response);
                    }
                }
            }
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(peer) = self.requests.on_failure(Q::PROTO, request_id, error) {
                    let kad = &mut self.swarm.behaviour_mut().kad;
                    self.queries.find_peer(kad, peer, None);
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound {} request failed", Q::NAME);
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}
