//! A simulated network: the same [`Net`] handles and [`NetEvent`]s the swarm task
//! gives a node, served by one in-process world instead of sockets, for the
//! deterministic simulator. The node above it runs unchanged.
//!
//! Everything random (loss, duplication, delay and so reordering) comes from one
//! seeded generator, drawn in the order the world handles commands; delays are
//! tokio sleeps, so on a paused tokio clock (`start_paused`) a run takes no real
//! time and the same seed gives the same run. Maps are ordered (`BTreeMap`) so that
//! nothing depends on hash order.
//!
//! What it models: every online member is connected to every other; a publish goes
//! from the author straight to each online subscriber of its topic (each copy may
//! be lost, duplicated and delayed on its own); a request reaches its target and
//! its answer comes back, either leg may be lost (the requester then sees a timeout);
//! the DHT is one shared map, judged by [`crate::records::judge_put`] like the real
//! one, plus one provider set per key. A crashed member is offline: what is sent to
//! it is lost, and its old handle stops working.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::PeerId;
use libp2p::gossipsub::MessageId;
use starling_core::AuthorId;
use tokio::sync::{mpsc, oneshot};

use crate::handle::{Command, Net, Responder};
use crate::records::{Verdict, judge_put};
use crate::{Answer, GetMode, NetError, NetEvent, NetStatus};

/// What the network does to what is sent over it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Chance that one copy of a message (a gossip copy, a request, a response) is lost.
    pub loss: f64,
    /// Chance that a gossip copy arrives twice.
    pub duplicate: f64,
    /// Each message is delayed by up to this much (uniformly): messages overtake
    /// each other.
    pub max_delay: Duration,
}

impl Faults {
    /// A perfect network: nothing lost or duplicated, 1 ms per message.
    pub const NONE: Faults = Faults {
        loss: 0.0,
        duplicate: 0.0,
        max_delay: Duration::from_millis(1),
    };
}

/// What happened on the network, for reports and checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SimStats {
    pub gossip_sent: u64,
    pub gossip_delivered: u64,
    pub requests: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// Events a member's queue had no room for.
    pub overflowed: u64,
}

/// How long a request waits for its answer (the real default).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A member's event queue.
const EVENT_QUEUE: usize = 1024;

/// The simulated network; cheap to clone.
#[derive(Clone)]
pub struct SimNetwork {
    world: Arc<Mutex<World>>,
}

struct Member {
    events: mpsc::Sender<NetEvent>,
    online: bool,
    /// Bumped at every (re)join: handles of earlier lives stop working.
    life: u64,
}

struct World {
    rng: fastrand::Rng,
    faults: Faults,
    members: BTreeMap<PeerId, Member>,
    topics: BTreeMap<AuthorId, BTreeSet<PeerId>>,
    records: BTreeMap<Vec<u8>, Vec<u8>>,
    providers: BTreeMap<Vec<u8>, BTreeSet<PeerId>>,
    next_message: u64,
    stats: SimStats,
}

impl World {
    fn delay(&mut self) -> Duration {
        let max = self.faults.max_delay.as_micros().max(1) as u64;
        Duration::from_micros(self.rng.u64(1..=max))
    }
    fn lost(&mut self) -> bool {
        let lost = self.rng.f64() < self.faults.loss;
        if lost {
            self.stats.lost += 1;
        }
        lost
    }
    fn online(&self, peer: &PeerId) -> bool {
        self.members.get(peer).is_some_and(|m| m.online)
    }
    fn alive(&self, peer: &PeerId, life: u64) -> bool {
        self.members
            .get(peer)
            .is_some_and(|m| m.online && m.life == life)
    }
    /// Hands an event to an online member now; false when it could not take it.
    fn deliver(&mut self, to: &PeerId, ev: NetEvent) -> bool {
        let Some(m) = self.members.get(to).filter(|m| m.online) else {
            return false;
        };
        if m.events.try_send(ev).is_err() {
            self.stats.overflowed += 1;
            return false;
        }
        true
    }
    /// The online members other than `me`.
    fn others(&self, me: PeerId) -> Vec<PeerId> {
        self.members
            .iter()
            .filter(|(p, m)| **p != me && m.online)
            .map(|(p, _)| *p)
            .collect()
    }
    fn disconnect(&mut self, peer: PeerId) {
        if let Some(m) = self.members.get_mut(&peer) {
            m.online = false;
        }
        for o in self.others(peer) {
            self.deliver(&o, NetEvent::Disconnected { peer });
        }
    }
}

impl SimNetwork {
    pub fn new(seed: u64, faults: Faults) -> Self {
        Self {
            world: Arc::new(Mutex::new(World {
                rng: fastrand::Rng::with_seed(seed),
                faults,
                members: BTreeMap::new(),
                topics: BTreeMap::new(),
                records: BTreeMap::new(),
                providers: BTreeMap::new(),
                next_message: 0,
                stats: SimStats::default(),
            })),
        }
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().expect("world poisoned")
    }

    pub fn set_faults(&self, faults: Faults) {
        self.world().faults = faults;
    }

    pub fn stats(&self) -> SimStats {
        self.world().stats
    }

    pub fn is_online(&self, peer: &PeerId) -> bool {
        self.world().online(peer)
    }

    /// Brings `peer` (back) online and connects it to every online member. Returns
    /// its handle and event queue, as [`Net::start`] does. Must run inside a tokio
    /// runtime.
    pub fn join(&self, peer: PeerId) -> (Net, mpsc::Receiver<NetEvent>) {
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let (tx, rx) = mpsc::channel(256);
        let life = {
            let mut w = self.world();
            let life = w.members.get(&peer).map_or(0, |m| m.life + 1);
            w.members.insert(
                peer,
                Member {
                    events: events_tx,
                    online: true,
                    life,
                },
            );
            for o in w.others(peer) {
                w.deliver(&peer, NetEvent::Connected { peer: o });
                w.deliver(&o, NetEvent::Connected { peer });
            }
            life
        };
        tokio::spawn(self.clone().serve(peer, life, rx));
        (Net::on(tx, peer), events_rx)
    }

    /// Takes `peer` offline at once, as if its process died: what is sent to it is
    /// lost, and its handle stops working.
    pub fn crash(&self, peer: PeerId) {
        self.world().disconnect(peer);
    }

    /// One member's commands, handled in order until it leaves or a later life of
    /// it joined.
    async fn serve(self, me: PeerId, life: u64, mut commands: mpsc::Receiver<Command>) {
        while let Some(cmd) = commands.recv().await {
            if !self.world().alive(&me, life) {
                return; // dropping `commands` makes every later call fail: Stopped
            }
            if let Command::Shutdown { done } = cmd {
                self.world().disconnect(me);
                let _ = done.send(());
                return;
            }
            self.handle(me, life, cmd);
        }
    }

    fn handle(&self, me: PeerId, life: u64, cmd: Command) {
        let mut w = self.world();
        match cmd {
            Command::Metrics { reply } => {
                let _ = reply.send("# EOF\n".to_string());
            }
            Command::Status { reply } => {
                let connected = w.others(me);
                let subscribed = w.topics.values().filter(|s| s.contains(&me)).count();
                let _ = reply.send(NetStatus {
                    peer_id: me,
                    listen_addrs: Vec::new(),
                    external_addrs: Vec::new(),
                    reachability: "public",
                    relays: Vec::new(),
                    routing_table_size: connected.len(),
                    connected_peers: connected,
                    relayed_peers: Vec::new(),
                    subscribed_topics: subscribed,
                    dht_queries: 0,
                    counters: BTreeMap::new(),
                });
            }
            Command::ConnectedPeers { reply } => {
                let _ = reply.send(Vec::new());
            }
            Command::IsConnected { peer, reply } => {
                let _ = reply.send(peer != me && w.online(&peer));
            }
            Command::Dial { reply, .. } => {
                let _ = reply.send(Ok(()));
            }
            Command::Subscribe { author } => {
                w.topics.entry(author).or_default().insert(me);
            }
            Command::Unsubscribe { author } => {
                if let Some(s) = w.topics.get_mut(&author) {
                    s.remove(&me);
                }
            }
            Command::Publish {
                author,
                data,
                reply,
            } => {
                let to: Vec<PeerId> = w
                    .topics
                    .get(&author)
                    .map(|s| s.iter().filter(|p| **p != me).copied().collect())
                    .unwrap_or_default();
                let to: Vec<PeerId> = to.into_iter().filter(|p| w.online(p)).collect();
                w.next_message += 1;
                let id = MessageId::new(&w.next_message.to_be_bytes());
                for peer in &to {
                    w.stats.gossip_sent += 1;
                    if w.lost() {
                        continue;
                    }
                    let copies = if w.rng.f64() < w.faults.duplicate {
                        w.stats.duplicated += 1;
                        2
                    } else {
                        1
                    };
                    for _ in 0..copies {
                        let delay = w.delay();
                        let ev = NetEvent::Gossip {
                            id: id.clone(),
                            source: me,
                            topic_author: author,
                            data: data.clone(),
                            received_ns: 0,
                        };
                        let (net, peer) = (self.clone(), *peer);
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let mut w = net.world();
                            if w.deliver(&peer, ev) {
                                w.stats.gossip_delivered += 1;
                            }
                        });
                    }
                }
                let _ = reply.send(Ok(to.len()));
            }
            Command::Report { .. } | Command::Ban { .. } => {}
            Command::GetRecord { key, mode, reply } => {
                // One shared store: under `Poll` every online peer answers with it.
                let answers = match (w.records.get(&key), mode) {
                    (None, _) => Vec::new(),
                    (Some(v), GetMode::First) => vec![Answer {
                        from: None,
                        value: v.clone(),
                    }],
                    (Some(v), GetMode::Poll) => std::iter::once(None)
                        .chain(w.others(me).into_iter().map(Some))
                        .take(crate::MAX_ANSWERS)
                        .map(|from| Answer {
                            from,
                            value: v.clone(),
                        })
                        .collect(),
                };
                let _ = reply.send(Ok(answers));
            }
            Command::PutRecord { key, value, reply } => {
                // The simulated world has no wall clock: no bound on profile versions.
                let held = w.records.get(&key).map(|v| v.as_slice());
                let verdict = judge_put(&key, &value, held, u64::MAX);
                let _ = reply.send(match verdict {
                    Verdict::Store => {
                        w.records.insert(key, value);
                        Ok(())
                    }
                    Verdict::Refuse(why) => Err(NetError::Query(why.to_string())),
                });
            }
            Command::StartProviding { key, reply } => {
                w.providers.entry(key).or_default().insert(me);
                let _ = reply.send(Ok(()));
            }
            Command::StopProviding { key } => {
                if let Some(s) = w.providers.get_mut(&key) {
                    s.remove(&me);
                }
            }
            Command::Providers { key, reply } => {
                let _ = reply.send(Ok(w
                    .providers
                    .get(&key)
                    .map(|s| s.iter().copied().collect())
                    .unwrap_or_default()));
            }
            Command::FindPeer { reply, .. } => {
                let _ = reply.send(Ok(Vec::new()));
            }
            Command::Sync {
                peer,
                request,
                reply,
            } => {
                drop(w);
                self.request(me, life, peer, reply, move |channel| {
                    NetEvent::SyncRequest {
                        peer: me,
                        request,
                        channel: Responder::direct(channel),
                    }
                });
            }
            Command::Social {
                peer,
                request,
                reply,
            } => {
                drop(w);
                self.request(me, life, peer, reply, move |channel| {
                    NetEvent::SocialRequest {
                        peer: me,
                        request,
                        channel: Responder::direct(channel),
                    }
                });
            }
            // Answers to simulated requests go straight back (see `Responder`).
            Command::RespondSync { .. } | Command::RespondSocial { .. } => {}
            Command::Shutdown { done } => {
                let _ = done.send(());
            }
        }
    }

    /// One request-response exchange with `peer`, answered on `reply`.
    fn request<R: Send + 'static>(
        &self,
        me: PeerId,
        life: u64,
        peer: PeerId,
        reply: crate::Reply<R>,
        event: impl FnOnce(oneshot::Sender<R>) -> NetEvent + Send + 'static,
    ) {
        let (there, back, lost_there, lost_back) = {
            let mut w = self.world();
            w.stats.requests += 1;
            (w.delay(), w.delay(), w.lost(), w.lost())
        };
        let net = self.clone();
        tokio::spawn(async move {
            let failed = |reason: &str| NetError::Request {
                peer,
                reason: reason.to_string(),
            };
            if peer == me || !net.world().online(&peer) {
                tokio::time::sleep(there).await;
                let _ = reply.send(Err(NetError::Unreachable(peer)));
                return;
            }
            tokio::time::sleep(there).await;
            let (tx, rx) = oneshot::channel();
            let handed = !lost_there && net.world().deliver(&peer, event(tx));
            if !handed {
                tokio::time::sleep(REQUEST_TIMEOUT).await;
                let _ = reply.send(Err(failed("timed out")));
                return;
            }
            let answer = tokio::time::timeout(REQUEST_TIMEOUT, rx).await;
            tokio::time::sleep(back).await;
            let _ = reply.send(match answer {
                Ok(Ok(r)) if !lost_back && net.world().alive(&me, life) => Ok(r),
                Ok(Ok(_)) | Err(_) => Err(failed("timed out")),
                Ok(Err(_)) => Err(failed("the peer dropped the request")),
            });
        });
    }
}
