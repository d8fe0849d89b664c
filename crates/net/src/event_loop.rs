//! The swarm task: the only code that touches the [`Swarm`]. It turns commands into
//! swarm calls, keeps the pending replies in maps keyed by query or request id, and
//! turns swarm events into replies and [`NetEvent`]s. It never waits on the node:
//! events go out with `try_send`, and what does not fit is counted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::gossipsub::{self, MessageAcceptance, PublishError};
use libp2p::kad::{
    self, GetClosestPeersOk, GetProvidersOk, GetRecordOk, QueryId, QueryResult, Quorum, Record,
    RecordKey,
};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, identify, noise, tcp, yamux};
use starling_core::Identity;
use tokio::sync::mpsc;

use crate::behaviour::{Behaviour, BehaviourEvent};
use crate::protocol::*;
use crate::records::{self, Verdict};
use crate::{Command, GetMode, NetConfig, NetError, NetEvent, NetStatus, Reply};

/// How long we keep a record stored for someone else.
const RECORD_TTL: Duration = Duration::from_secs(36 * 3600);

/// An outbound request waiting for its response.
enum Outbound {
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

struct PendingGet {
    key: Vec<u8>,
    mode: GetMode,
    found: Vec<Vec<u8>>,
    reply: Reply<Vec<Vec<u8>>>,
}

/// Waiting on a peer lookup: a caller, or a request to retry once addresses are known.
enum FindWaiter {
    Caller(Reply<Vec<Multiaddr>>),
    Retry(PendingRequest),
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Proto {
    Sync,
    Social,
}

pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetEvent>,
    bootstrap_peers: HashSet<PeerId>,
    bootstrapped: bool,
    gets: HashMap<QueryId, PendingGet>,
    puts: HashMap<QueryId, Reply<()>>,
    provides: HashMap<QueryId, Reply<()>>,
    providers: HashMap<QueryId, (HashSet<PeerId>, Reply<Vec<PeerId>>)>,
    finds: HashMap<QueryId, (PeerId, Vec<FindWaiter>)>,
    requests: HashMap<(Proto, OutboundRequestId), PendingRequest>,
    bans: HashMap<PeerId, Instant>,
    /// When we last exchanged something useful with each connected peer.
    activity: HashMap<PeerId, Instant>,
    idle_timeout: Duration,
    counters: BTreeMap<String, u64>,
}

fn count(counters: &mut BTreeMap<String, u64>, what: &str) {
    *counters.entry(what.to_string()).or_default() += 1;
}

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

/// Addresses worth telling the DHT about: not `0.0.0.0` / `::`.
fn is_dialable(addr: &Multiaddr) -> bool {
    !addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

impl EventLoop {
    pub(crate) async fn new(
        identity: &Identity,
        config: &NetConfig,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<NetEvent>,
    ) -> Result<Self, NetError> {
        let key = identity.to_libp2p();
        let setup = |e: String| NetError::Setup(e);
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| setup(e.to_string()))?
            .with_quic()
            .with_behaviour(|key| Behaviour::new(key, config))
            .map_err(|e| setup(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_timeout))
            .build();

        let mut pending_listeners = HashSet::new();
        for addr in &config.listen {
            let id = swarm
                .listen_on(addr.clone())
                .map_err(|e| NetError::Listen {
                    addr: addr.to_string(),
                    reason: e.to_string(),
                })?;
            pending_listeners.insert(id);
        }
        // Wait (bounded) until every listener is bound, so callers can print real
        // addresses (port 0 is resolved by then).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !pending_listeners.is_empty() {
            let ev = tokio::time::timeout_at(deadline, swarm.select_next_some())
                .await
                .map_err(|_| setup("listeners did not come up within 10 s".into()))?;
            match ev {
                SwarmEvent::NewListenAddr { listener_id, .. } => {
                    pending_listeners.remove(&listener_id);
                }
                SwarmEvent::ListenerClosed {
                    listener_id,
                    reason,
                    addresses,
                } => {
                    pending_listeners.remove(&listener_id);
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

        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        for (key, value, expires) in &config.initial_records {
            if *expires <= now_ms || !records::is_valid(key, value) {
                continue;
            }
            let mut record = Record::new(RecordKey::new(key), value.clone());
            record.expires = Some(Instant::now() + Duration::from_millis(expires - now_ms));
            let store = swarm.behaviour_mut().kad.store_mut();
            let _ = kad::store::RecordStore::put(store, record);
        }

        let mut bootstrap_peers = HashSet::new();
        for addr in &config.bootstrap {
            let (bare, peer) = strip_p2p(addr);
            let Some(peer) = peer else {
                return Err(NetError::BadAddress {
                    addr: addr.to_string(),
                    reason: "a bootstrap address must end with /p2p/<peer id>".into(),
                });
            };
            if peer == *swarm.local_peer_id() {
                continue; // listed ourselves: we are a bootstrap node
            }
            swarm.behaviour_mut().kad.add_address(&peer, bare);
            bootstrap_peers.insert(peer);
            if let Err(e) = swarm.dial(addr.clone()) {
                tracing::warn!(%addr, error = %e, "cannot dial bootstrap peer");
            }
        }

        Ok(Self {
            swarm,
            commands,
            events,
            bootstrap_peers,
            bootstrapped: false,
            gets: HashMap::new(),
            puts: HashMap::new(),
            provides: HashMap::new(),
            providers: HashMap::new(),
            finds: HashMap::new(),
            requests: HashMap::new(),
            bans: HashMap::new(),
            activity: HashMap::new(),
            idle_timeout: config.idle_timeout,
            counters: BTreeMap::new(),
        })
    }

    pub(crate) async fn run(mut self) {
        let mut housekeeping = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm_event(ev),
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Shutdown { done }) => {
                        let _ = done.send(());
                        break;
                    }
                    Some(cmd) => self.on_command(cmd),
                    None => break,
                },
                _ = housekeeping.tick() => {
                    self.lift_bans();
                    self.prune_connections();
                }
            }
        }
        tracing::debug!("network task stopped");
    }

    fn touch(&mut self, peer: PeerId) {
        self.activity.insert(peer, Instant::now());
    }

    /// Closes connections that serve no purpose any more. Gossipsub keeps a stream
    /// open on every connection, so without this a small network ends up all-to-all
    /// (every DHT query leaves connections behind). Kept: gossip mesh peers, peers
    /// sharing one of our feed topics (followers and co-followers), the authors we
    /// follow, peers we are waiting on, and anything active within the idle timeout.
    fn prune_connections(&mut self) {
        let now = Instant::now();
        let gs = &self.swarm.behaviour().gossipsub;
        let ours: HashSet<_> = gs.topics().cloned().collect();
        let mut keep: HashSet<PeerId> = gs.all_mesh_peers().copied().collect();
        keep.extend(
            gs.all_peers()
                .filter(|(_, topics)| topics.iter().any(|t| ours.contains(*t)))
                .map(|(p, _)| *p),
        );
        keep.extend(
            ours.iter()
                .filter_map(|t| topic_author(t.as_str()))
                .map(|a| a.peer_id()),
        );
        keep.extend(self.requests.values().map(|r| r.peer));
        let idle: Vec<PeerId> = self
            .swarm
            .connected_peers()
            .filter(|p| !keep.contains(p))
            .filter(|p| {
                self.activity
                    .get(p)
                    .is_none_or(|t| now.duration_since(*t) > self.idle_timeout)
            })
            .copied()
            .collect();
        for p in idle {
            if self.swarm.disconnect_peer_id(p).is_ok() {
                count(&mut self.counters, "connections_pruned");
            }
        }
        let connected: HashSet<PeerId> = self.swarm.connected_peers().copied().collect();
        self.activity.retain(|p, _| connected.contains(p));
    }

    fn lift_bans(&mut self) {
        let now = Instant::now();
        let expired: Vec<PeerId> = self
            .bans
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(p, _)| *p)
            .collect();
        for p in expired {
            self.bans.remove(&p);
            self.swarm.behaviour_mut().blocked.unblock_peer(p);
        }
    }

    /// Hands an event to the node; gives it back when the queue is full.
    fn emit(&mut self, ev: NetEvent) -> Option<NetEvent> {
        match self.events.try_send(ev) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(ev))
            | Err(mpsc::error::TrySendError::Closed(ev)) => {
                count(&mut self.counters, "events_dropped");
                Some(ev)
            }
        }
    }

    // ---- commands -------------------------------------------------------------------

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Command::IsConnected { peer, reply } => {
                let _ = reply.send(self.swarm.is_connected(&peer));
            }
            Command::Dial { addr, reply } => {
                let r = self
                    .swarm
                    .dial(addr.clone())
                    .map_err(|e| NetError::BadAddress {
                        addr: addr.to_string(),
                        reason: e.to_string(),
                    });
                let _ = reply.send(r);
            }
            Command::Subscribe { author } => {
                let gs = &mut self.swarm.behaviour_mut().gossipsub;
                if let Err(e) = gs.subscribe(&feed_topic(&author)) {
                    tracing::warn!(%author, error = %e, "cannot subscribe");
                }
            }
            Command::Unsubscribe { author } => {
                let gs = &mut self.swarm.behaviour_mut().gossipsub;
                gs.unsubscribe(&feed_topic(&author));
            }
            Command::Publish {
                author,
                data,
                reply,
            } => {
                let topic = feed_topic(&author);
                let gs = &mut self.swarm.behaviour_mut().gossipsub;
                let peers = gs
                    .all_peers()
                    .filter(|(_, topics)| topics.contains(&&topic.hash()))
                    .count();
                let r = match gs.publish(topic, data) {
                    Ok(_) => Ok(peers),
                    // Nobody subscribed online: normal; followers pull it later.
                    Err(PublishError::NoPeersSubscribedToTopic) | Err(PublishError::Duplicate) => {
                        Ok(0)
                    }
                    Err(e) => Err(NetError::Publish(e.to_string())),
                };
                let _ = reply.send(r);
            }
            Command::Report {
                id,
                source,
                acceptance,
            } => {
                if acceptance == MessageAcceptance::Reject {
                    count(&mut self.counters, "gossip_rejected");
                }
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&id, &source, acceptance);
            }
            Command::GetRecord { key, mode, reply } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_record(RecordKey::new(&key));
                self.gets.insert(
                    id,
                    PendingGet {
                        key,
                        mode,
                        found: Vec::new(),
                        reply,
                    },
                );
            }
            Command::PutRecord { key, value, reply } => {
                let record = Record::new(RecordKey::new(&key), value);
                match self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .put_record(record, Quorum::One)
                {
                    Ok(id) => {
                        self.puts.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NetError::Query(format!("{e:?}"))));
                    }
                }
            }
            Command::StartProviding { key, reply } => {
                match self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .start_providing(RecordKey::new(&key))
                {
                    Ok(id) => {
                        self.provides.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NetError::Query(format!("{e:?}"))));
                    }
                }
            }
            Command::StopProviding { key } => {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .stop_providing(&RecordKey::new(&key));
            }
            Command::Providers { key, reply } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_providers(RecordKey::new(&key));
                self.providers.insert(id, (HashSet::new(), reply));
            }
            Command::FindPeer { peer, reply } => self.find_peer(peer, FindWaiter::Caller(reply)),
            Command::Sync {
                peer,
                request,
                reply,
            } => self.send_request(PendingRequest {
                peer,
                outbound: Outbound::Sync(request, reply),
                looked_up: false,
            }),
            Command::Social {
                peer,
                request,
                reply,
            } => self.send_request(PendingRequest {
                peer,
                outbound: Outbound::Social(request, reply),
                looked_up: false,
            }),
            Command::RespondSync { channel, response } => {
                // Fails only if the requester went away meanwhile.
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_response(channel, response);
            }
            Command::RespondSocial { channel, response } => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .social
                    .send_response(channel, response);
            }
            Command::Ban { peer, duration } => {
                count(&mut self.counters, "peers_banned");
                tracing::info!(%peer, ?duration, "banning misbehaving peer");
                self.bans.insert(peer, Instant::now() + duration);
                self.swarm.behaviour_mut().blocked.block_peer(peer);
            }
            Command::Shutdown { .. } => unreachable!("handled in run"),
        }
    }

    fn status(&mut self) -> NetStatus {
        let local = *self.swarm.local_peer_id();
        let listen_addrs = self
            .swarm
            .listeners()
            .map(|a| a.clone().with(Protocol::P2p(local)))
            .collect();
        let routing_table_size = self
            .swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .map(|b| b.num_entries())
            .sum();
        NetStatus {
            peer_id: local,
            listen_addrs,
            connected_peers: self.swarm.connected_peers().copied().collect(),
            routing_table_size,
            subscribed_topics: self.swarm.behaviour().gossipsub.topics().count(),
            dht_queries: self.swarm.behaviour_mut().kad.iter_queries().count(),
            counters: self.counters.clone(),
        }
    }

    fn send_request(&mut self, req: PendingRequest) {
        let b = self.swarm.behaviour_mut();
        let key = match &req.outbound {
            Outbound::Sync(r, _) => (Proto::Sync, b.sync.send_request(&req.peer, r.clone())),
            Outbound::Social(r, _) => (Proto::Social, b.social.send_request(&req.peer, r.clone())),
        };
        self.requests.insert(key, req);
    }

    fn find_peer(&mut self, peer: PeerId, waiter: FindWaiter) {
        if let Some((_, waiters)) = self.finds.values_mut().find(|(p, _)| *p == peer) {
            waiters.push(waiter);
            return;
        }
        let id = self.swarm.behaviour_mut().kad.get_closest_peers(peer);
        self.finds.insert(id, (peer, vec![waiter]));
    }

    fn on_found_peer(&mut self, id: QueryId, addrs: Option<Vec<Multiaddr>>) {
        let Some((peer, waiters)) = self.finds.remove(&id) else {
            return;
        };
        let addrs = addrs.unwrap_or_default();
        for a in &addrs {
            self.swarm.add_peer_address(peer, a.clone());
        }
        for w in waiters {
            match w {
                FindWaiter::Caller(reply) => {
                    let _ = reply.send(if addrs.is_empty() {
                        Err(NetError::Unreachable(peer))
                    } else {
                        Ok(addrs.clone())
                    });
                }
                FindWaiter::Retry(req) if !addrs.is_empty() => self.send_request(req),
                FindWaiter::Retry(req) => req.outbound.fail(NetError::Unreachable(peer)),
            }
        }
    }

    // ---- swarm events ---------------------------------------------------------------

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(ev)) => self.on_gossip(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(ev)) => self.on_kad(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(ev)) => self.on_identify(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(ev)) => self.on_sync(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Social(ev)) => self.on_social(ev),
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                ..
            } => {
                self.touch(peer_id);
                if self.bootstrap_peers.contains(&peer_id) && !self.bootstrapped {
                    self.bootstrapped = true;
                    let _ = self.swarm.behaviour_mut().kad.bootstrap();
                }
                if num_established.get() == 1 {
                    let _ = self.emit(NetEvent::Connected { peer: peer_id });
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                let _ = self.emit(NetEvent::Disconnected { peer: peer_id });
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(?peer_id, %error, "dial failed");
            }
            _ => {}
        }
    }

    fn on_gossip(&mut self, ev: gossipsub::Event) {
        let gossipsub::Event::Message {
            propagation_source,
            message_id,
            message,
        } = ev
        else {
            return;
        };
        self.touch(propagation_source);
        let Some(topic_author) = topic_author(message.topic.as_str()) else {
            count(&mut self.counters, "gossip_bad_topic");
            self.swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(
                    &message_id,
                    &propagation_source,
                    MessageAcceptance::Reject,
                );
            return;
        };
        let ev = NetEvent::Gossip {
            id: message_id,
            source: propagation_source,
            topic_author,
            data: message.data,
        };
        if let Some(NetEvent::Gossip { id, source, .. }) = self.emit(ev) {
            // The node is overloaded: neither forward nor penalise.
            self.swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(&id, &source, MessageAcceptance::Ignore);
        }
    }

    fn on_identify(&mut self, ev: identify::Event) {
        let identify::Event::Received { peer_id, info, .. } = ev else {
            return;
        };
        if info.protocol_version != IDENTIFY_VERSION {
            tracing::debug!(%peer_id, version = %info.protocol_version, "not a Starling peer; disconnecting");
            let _ = self.swarm.disconnect_peer_id(peer_id);
            return;
        }
        // Only peers that speak our Kademlia go into the routing table.
        if info.protocols.contains(&KAD_PROTOCOL) {
            for addr in info.listen_addrs.into_iter().filter(is_dialable) {
                self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
            }
        }
    }

    fn on_sync(&mut self, ev: request_response::Event<SyncRequest, SyncResponse>) {
        if let request_response::Event::Message { peer, .. } = &ev {
            self.touch(*peer);
        }
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    // When the node is overloaded the channel is dropped: the
                    // requester sees a failure and tries elsewhere.
                    let _ = self.emit(NetEvent::SyncRequest {
                        peer,
                        request,
                        channel,
                    });
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(PendingRequest {
                        outbound: Outbound::Sync(_, reply),
                        ..
                    }) = self.requests.remove(&(Proto::Sync, request_id))
                    {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => self.on_outbound_failure(Proto::Sync, request_id, error),
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound sync request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_social(&mut self, ev: request_response::Event<SocialRequest, SocialResponse>) {
        if let request_response::Event::Message { peer, .. } = &ev {
            self.touch(*peer);
        }
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let _ = self.emit(NetEvent::SocialRequest {
                        peer,
                        request,
                        channel,
                    });
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(PendingRequest {
                        outbound: Outbound::Social(_, reply),
                        ..
                    }) = self.requests.remove(&(Proto::Social, request_id))
                    {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => self.on_outbound_failure(Proto::Social, request_id, error),
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound social request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_outbound_failure(
        &mut self,
        proto: Proto,
        id: OutboundRequestId,
        error: request_response::OutboundFailure,
    ) {
        let Some(req) = self.requests.remove(&(proto, id)) else {
            return;
        };
        match error {
            // We did not know how to reach the peer: look it up once, then retry.
            request_response::OutboundFailure::DialFailure if !req.looked_up => {
                let peer = req.peer;
                self.find_peer(
                    peer,
                    FindWaiter::Retry(PendingRequest {
                        looked_up: true,
                        ..req
                    }),
                );
            }
            request_response::OutboundFailure::DialFailure => {
                let peer = req.peer;
                req.outbound.fail(NetError::Unreachable(peer));
            }
            other => {
                let peer = req.peer;
                req.outbound.fail(NetError::Request {
                    peer,
                    reason: other.to_string(),
                });
            }
        }
    }

    fn on_kad(&mut self, ev: kad::Event) {
        match ev {
            kad::Event::InboundRequest { request } => self.on_kad_inbound(request),
            kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            } => self.on_query(id, result, step.last),
            _ => {}
        }
    }

    fn on_kad_inbound(&mut self, request: kad::InboundRequest) {
        let kind = match &request {
            kad::InboundRequest::FindNode { .. } => "kad_in.find_node",
            kad::InboundRequest::GetProvider { .. } => "kad_in.get_providers",
            kad::InboundRequest::AddProvider { .. } => "kad_in.add_provider",
            kad::InboundRequest::GetRecord { .. } => "kad_in.get_record",
            kad::InboundRequest::PutRecord { .. } => "kad_in.put_record",
        };
        count(&mut self.counters, kind);
        match request {
            kad::InboundRequest::PutRecord {
                source,
                record: Some(mut record),
                ..
            } => {
                let store = self.swarm.behaviour_mut().kad.store_mut();
                let existing =
                    kad::store::RecordStore::get(store, &record.key).map(|r| r.value.clone());
                match records::judge_put(record.key.as_ref(), &record.value, existing.as_deref()) {
                    Verdict::Store => {
                        let ttl = record
                            .expires
                            .map(|e| e.saturating_duration_since(Instant::now()))
                            .unwrap_or(RECORD_TTL)
                            .min(RECORD_TTL);
                        record.expires = Some(Instant::now() + ttl);
                        let (key, value) = (record.key.to_vec(), record.value.clone());
                        match kad::store::RecordStore::put(store, record) {
                            Ok(()) => {
                                let expires = std::time::SystemTime::now()
                                    .duration_since(std::time::UNIX_EPOCH)
                                    .unwrap_or_default()
                                    .as_millis()
                                    as u64
                                    + ttl.as_millis() as u64;
                                let _ = self.emit(NetEvent::RecordStored {
                                    key,
                                    value,
                                    expires,
                                });
                            }
                            Err(e) => {
                                tracing::debug!(error = ?e, "record not stored");
                                count(&mut self.counters, "records_refused");
                            }
                        }
                    }
                    Verdict::Refuse(why) => {
                        tracing::debug!(%source, reason = why, "refused a DHT record");
                        count(&mut self.counters, "records_refused");
                    }
                }
            }
            kad::InboundRequest::AddProvider {
                record: Some(record),
            } => {
                if records::is_provided_key(record.key.as_ref()) {
                    let store = self.swarm.behaviour_mut().kad.store_mut();
                    if kad::store::RecordStore::add_provider(store, record).is_err() {
                        count(&mut self.counters, "providers_refused");
                    }
                } else {
                    count(&mut self.counters, "providers_refused");
                }
            }
            _ => {}
        }
    }

    fn on_query(&mut self, id: QueryId, result: QueryResult, last: bool) {
        if last {
            let kind = match &result {
                QueryResult::Bootstrap(_) => "kad_query.bootstrap",
                QueryResult::GetClosestPeers(_) => "kad_query.closest_peers",
                QueryResult::GetProviders(_) => "kad_query.get_providers",
                QueryResult::StartProviding(_) => "kad_query.start_providing",
                QueryResult::RepublishProvider(_) => "kad_query.republish_provider",
                QueryResult::GetRecord(_) => "kad_query.get_record",
                QueryResult::PutRecord(_) => "kad_query.put_record",
                QueryResult::RepublishRecord(_) => "kad_query.republish_record",
            };
            count(&mut self.counters, kind);
        }
        match result {
            QueryResult::GetRecord(res) => {
                let Some(mut pending) = self.gets.remove(&id) else {
                    return;
                };
                let mut done = last;
                match res {
                    Ok(GetRecordOk::FoundRecord(peer_record)) => {
                        let remote = peer_record.peer.is_some();
                        let value = peer_record.record.value;
                        if records::is_valid(&pending.key, &value) {
                            if pending.mode == GetMode::First {
                                pending.found.push(value);
                                done = true;
                                if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                                    q.finish();
                                }
                            } else if remote && !pending.found.contains(&value) {
                                pending.found.push(value);
                            }
                        } else {
                            count(&mut self.counters, "records_invalid");
                        }
                    }
                    Ok(GetRecordOk::FinishedWithNoAdditionalRecord { .. }) => done = true,
                    Err(kad::GetRecordError::Timeout { .. })
                        if pending.found.is_empty() && pending.mode == GetMode::First =>
                    {
                        let _ = pending.reply.send(Err(NetError::Query("timed out".into())));
                        return;
                    }
                    Err(_) => done = true,
                }
                if done {
                    let _ = pending.reply.send(Ok(pending.found));
                } else {
                    self.gets.insert(id, pending);
                }
            }
            QueryResult::PutRecord(res) => {
                if let Some(reply) = self.puts.remove(&id) {
                    let _ = reply.send(res.map(|_| ()).map_err(|e| NetError::Query(e.to_string())));
                }
            }
            QueryResult::StartProviding(res) => {
                if let Some(reply) = self.provides.remove(&id) {
                    let _ = reply.send(res.map(|_| ()).map_err(|e| NetError::Query(e.to_string())));
                }
            }
            QueryResult::GetProviders(res) => {
                let Some((mut found, reply)) = self.providers.remove(&id) else {
                    return;
                };
                let mut done = last;
                match res {
                    Ok(GetProvidersOk::FoundProviders { providers, .. }) => found.extend(providers),
                    Ok(GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) => done = true,
                    Err(_) => done = true,
                }
                if done {
                    found.remove(self.swarm.local_peer_id());
                    let _ = reply.send(Ok(found.into_iter().collect()));
                } else {
                    self.providers.insert(id, (found, reply));
                }
            }
            QueryResult::GetClosestPeers(res) => {
                let Some((target, _)) = self.finds.get(&id) else {
                    return;
                };
                let target = *target;
                let peers = match res {
                    Ok(GetClosestPeersOk { peers, .. }) => peers,
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
                };
                let addrs = peers
                    .into_iter()
                    .find(|p| p.peer_id == target)
                    .map(|p| p.addrs);
                if addrs.as_ref().is_some_and(|a| !a.is_empty()) || last {
                    self.on_found_peer(id, addrs);
                    if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                        q.finish();
                    }
                }
            }
            _ => {}
        }
    }
}
