//! The node with a network: [`Online`] owns the [`Net`] handle and the networked
//! subsystems (handles, catch-up), dispatches [`NetEvent`]s to them, and
//! runs the periodic maintenance (announcements, follower discovery, reconnection).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use starling_core::records::feed_key;
use starling_core::{AuthorId, Blame, Channel, Post, Verdict};
use starling_net::{MessageAcceptance, Net, NetEvent, PeerId};
use tokio::sync::mpsc;

use crate::catchup::CatchUp;
use crate::handles::Handles;
use crate::intake::{Arrival, STORING_BATCHES, Transport};
use crate::metrics::BAN_TIME;
use crate::node::{NodeError, Shared};
use crate::view::NetworkStatus;

/// A gossip message: its id, the peer it came from, its topic's author, its bytes,
/// when the network took it in.
type Gossip = (starling_net::MessageId, PeerId, AuthorId, Vec<u8>, u64);

/// An event, with gossip (which the node takes in batches) set apart.
enum Sorted {
    Gossip(Gossip),
    Other(NetEvent),
}

fn sort(ev: NetEvent) -> Sorted {
    match ev {
        NetEvent::Gossip {
            id,
            source,
            topic_author,
            data,
            received_ns,
        } => Sorted::Gossip((id, source, topic_author, data, received_ns)),
        other => Sorted::Other(other),
    }
}

/// Gossip messages validated together (one batch verification, one transaction).
const GOSSIP_BATCH: usize = 256;
/// DHT records stored for others waiting to be persisted; beyond that they are
/// dropped (counted: the record is still served, only a restart forgets it).
const PERSIST_QUEUE: usize = 1024;
/// Rows kept in `dht_records` (the network's record store holds at most 8,192).
const PERSIST_MAX_ROWS: usize = 8 * 1024;

/// Peers remembered to rejoin the network through after a restart.
pub(crate) const PEERS_KEPT: usize = 64;

/// Remembered peers dialed at a start without bootstrap addresses.
pub(crate) const PEERS_REJOINED: usize = 16;

/// The wait before a node's first maintenance round: between half of `every` and
/// one and a half, by the node's key.
fn phase(me: &AuthorId, every: std::time::Duration) -> std::time::Duration {
    let b = me.as_bytes();
    let n = u16::from_le_bytes([b[b.len() - 2], b[b.len() - 1]]);
    every.mul_f64(0.5 + f64::from(n) / f64::from(u16::MAX))
}

/// Followed authors caught up with per maintenance round.
const CATCH_UP_PER_ROUND: usize = 16;

pub(crate) struct Online {
    pub(crate) shared: Arc<Shared>,
    pub(crate) net: Net,
    pub(crate) handles: Handles,
    pub(crate) catchup: CatchUp,
    /// Set once we announced ourselves to the network (at the first connection).
    announced: AtomicBool,
    events: std::sync::Mutex<Option<mpsc::Receiver<NetEvent>>>,
}

impl Online {
    pub(crate) fn start(
        shared: Arc<Shared>,
        net: Net,
        events: mpsc::Receiver<NetEvent>,
    ) -> Arc<Self> {
        Arc::new(Self {
            handles: Handles::new(),
            catchup: CatchUp::default(),
            announced: AtomicBool::new(false),
            events: std::sync::Mutex::new(Some(events)),
            shared,
            net,
        })
    }

    pub(crate) fn net(&self) -> &Net {
        &self.net
    }

    /// Subscribes to our feed and the followed ones, and starts the loops.
    pub(crate) async fn run(self: &Arc<Self>) {
        let s = &self.shared;
        let _ = self.net.subscribe(s.me).await;
        for a in s.follows.all() {
            let _ = self.net.subscribe(a).await;
        }
        if let Some(events) = self.events.lock().expect("events poisoned").take() {
            s.tasks.spawn(self.clone().run_events(events));
        }
        s.tasks.spawn(self.clone().run_outbox());
        s.tasks.spawn(self.clone().run_clock_notices());
        s.tasks.spawn(self.clone().run_registration());
        s.tasks.spawn(self.clone().run_maintenance());
        if !*s.head_known.borrow() {
            s.tasks.spawn(self.clone().learn_own_head());
        }
    }

    /// A key restored from its words holds none of its posts: learns the newest
    /// one's number from the profile records the network keeps (the highest any
    /// peer holds, signed by us), so the next post continues after it. An empty
    /// answer counts only once peers are connected; until then it asks again.
    async fn learn_own_head(self: Arc<Self>) {
        use starling_core::ProfileRecord;
        use starling_net::GetMode;
        let s = &self.shared;
        let mut pause = Duration::from_secs(1);
        loop {
            let peers = self
                .net
                .status()
                .await
                .map_or(0, |st| st.connected_peers.len());
            if peers > 0 {
                let key = starling_core::records::profile_key(&s.me);
                if let Ok(answers) = self.net.get_record(key, GetMode::Poll).await {
                    let head = answers
                        .iter()
                        .filter_map(|a| ProfileRecord::decode(&a.value).ok())
                        .filter(|r| r.owner == s.me)
                        .map(|r| r.head_seq)
                        .max()
                        .unwrap_or(0);
                    s.head_seq.fetch_max(head, Ordering::SeqCst);
                    let dir = s.profile.read().expect("profile poisoned").dir.clone();
                    if let Err(e) = dir.clear_head_unknown() {
                        tracing::warn!(error = %e, "cannot clear the restored-key mark");
                    }
                    tracing::info!(
                        head,
                        answers = answers.len(),
                        "newest own post number learned"
                    );
                    s.head_known.send_replace(true);
                    return;
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(30));
        }
    }

    /// Pushes a post of ours, just stored, to online followers.
    pub(crate) async fn push_own(&self, post: &Post) {
        match self
            .net
            .publish(self.shared.me, post.as_bytes().to_vec())
            .await
        {
            Ok(n) => tracing::debug!(seq = post.seq, peers = n, "published"),
            Err(e) => {
                tracing::warn!(seq = post.seq, error = %e, "publish failed; followers will pull")
            }
        }
    }

    pub(crate) async fn ban_all(&self, peers: Vec<PeerId>) {
        for p in peers {
            let _ = self.net.ban(p, BAN_TIME).await;
        }
    }

    /// Persists DHT records stored for others, in batches, off the event path.
    async fn run_persist(self: Arc<Self>, mut records: mpsc::Receiver<(Vec<u8>, Vec<u8>, u64)>) {
        let mut batch = Vec::new();
        while records.recv_many(&mut batch, PERSIST_QUEUE).await > 0 {
            let (s, n) = (&self.shared, batch.len() as u64);
            let rows = std::mem::take(&mut batch);
            match s
                .store
                .put_dht_records(rows, s.clock.now_ms(), PERSIST_MAX_ROWS)
                .await
            {
                Ok(_) => s.metrics.add("dht.persisted", n),
                Err(e) => tracing::warn!(error = %e, "cannot persist DHT records"),
            }
        }
    }

    async fn run_events(self: Arc<Self>, mut events: mpsc::Receiver<NetEvent>) {
        let (persist, to_persist) = mpsc::channel(PERSIST_QUEUE);
        self.shared
            .tasks
            .spawn(self.clone().run_persist(to_persist));
        let mut backlog: VecDeque<NetEvent> = VecDeque::new();
        // Gossip batches checked and queued for the store, oldest first: the next
        // batch is checked while they commit.
        let mut storing: FuturesOrdered<BoxFuture<'static, ()>> = FuturesOrdered::new();
        loop {
            while storing.len() >= STORING_BATCHES {
                storing.next().await;
            }
            let ev = match backlog.pop_front() {
                Some(ev) => ev,
                None => tokio::select! {
                    Some(()) = storing.next(), if !storing.is_empty() => continue,
                    ev = events.recv() => match ev {
                        Some(ev) => ev,
                        None => break,
                    },
                },
            };
            let ev = match sort(ev) {
                Sorted::Gossip(first) => {
                    let mut batch = vec![first];
                    // Take whatever else is queued, up to a batch; keep the rest in order.
                    while batch.len() < GOSSIP_BATCH {
                        match events.try_recv().map(sort) {
                            Ok(Sorted::Gossip(g)) => batch.push(g),
                            Ok(Sorted::Other(other)) => {
                                backlog.push_back(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    storing.push_back(self.on_gossip(batch).await);
                    continue;
                }
                Sorted::Other(ev) => ev,
            };
            match ev {
                NetEvent::Gossip { .. } => {}
                NetEvent::SyncRequest {
                    peer,
                    request,
                    channel,
                } => {
                    let online = self.clone();
                    self.shared.tasks.spawn(async move {
                        let response = online.answer_sync(peer, request).await;
                        let _ = online.net.respond_sync(channel, response).await;
                    });
                }
                NetEvent::SocialRequest {
                    peer,
                    request,
                    channel,
                } => {
                    let online = self.clone();
                    self.shared.tasks.spawn(async move {
                        let response = online.answer_social(peer, request).await;
                        let _ = online.net.respond_social(channel, response).await;
                    });
                }
                NetEvent::RecordStored {
                    key,
                    value,
                    expires,
                } => {
                    if persist.try_send((key, value, expires)).is_err() {
                        self.shared.metrics.inc("dht.persist_dropped");
                    }
                }
                NetEvent::Connected { peer } => self.on_connected(peer).await,
                NetEvent::Disconnected { .. } => {}
            }
        }
        while storing.next().await.is_some() {}
    }

    /// A batch of gossip through the intake's checks; the verdicts go back to
    /// gossipsub (accepted posts are forwarded) and the fresh posts are queued for
    /// the store. Returns the rest, to run while the next batch is checked: the
    /// commit, then catch-ups for the gaps it shows.
    async fn on_gossip(self: &Arc<Self>, batch: Vec<Gossip>) -> BoxFuture<'static, ()> {
        let mut ids = Vec::with_capacity(batch.len());
        let arrivals = batch
            .into_iter()
            .map(|(id, source, topic_author, data, received_ns)| {
                ids.push((id, source));
                Arrival {
                    bytes: data,
                    channel: Channel::Topic(topic_author),
                    from: source,
                    received_ns,
                }
            })
            .collect();
        let s = &self.shared;
        let checked = s.intake.check(s, arrivals, Transport::Gossip).await;
        // Verdicts first, in one command: what is valid is forwarded while we store it.
        let verdicts = ids
            .into_iter()
            .enumerate()
            .map(|(i, (id, source))| {
                let acceptance = match checked.verdicts.get(i) {
                    Some(Verdict::Refused(why)) if why.blame() == Blame::Sender => {
                        MessageAcceptance::Reject
                    }
                    Some(Verdict::Refused(_)) | None => MessageAcceptance::Ignore,
                    Some(_) => MessageAcceptance::Accept,
                };
                (id, source, acceptance)
            })
            .collect();
        let _ = self.net.report(verdicts).await;
        let storing = checked.submit(&s.intake, s).await;
        let online = self.clone();
        Box::pin(async move {
            let s = &online.shared;
            let outcome = storing.done(&s.intake, s).await;
            online.ban_all(outcome.to_ban).await;
            // A post beyond the next expected seq shows a gap: catch up on that
            // author, unless gossip (which reorders) brings the missing posts
            // meanwhile.
            for (author, shown_by) in outcome.gaps {
                online.spawn_gap_catch_up(author, shown_by);
            }
        })
    }

    async fn on_connected(self: &Arc<Self>, peer: PeerId) {
        self.handles.peer_connected();
        // Our first peer: announce ourselves and catch up on everything.
        if !self.announced.swap(true, Ordering::SeqCst) {
            let online = self.clone();
            self.shared
                .tasks
                .spawn(async move { online.announce_and_catch_up().await });
        }
        let Ok(key) = AuthorId::from_peer_id(&peer) else {
            return;
        };
        if self.shared.follows.contains(&key) {
            // A followed author came (back) online: catch up from them.
            self.spawn_catch_up(key, Some(peer));
        }
        // Deliver any statement still waiting for them.
        self.retry_delivery_to(key).await;
    }

    /// After joining: provide the feeds we follow, publish our profile, learn of
    /// followers, and catch up on every followed author.
    async fn announce_and_catch_up(self: &Arc<Self>) {
        let followees = self.shared.follows.all();
        let catch_up = futures::future::join_all(followees.iter().map(|a| self.catch_up(*a, None)));
        let provide = async {
            for a in &followees {
                if let Err(e) = self.net.start_providing(feed_key(a)).await {
                    tracing::debug!(author = %a, error = %e, "provider record not announced");
                }
            }
        };
        futures::join!(
            catch_up,
            provide,
            self.publish_profile(),
            self.discover_followers()
        );
    }

    async fn run_maintenance(self: Arc<Self>) {
        let every = self.shared.config.maintenance_interval;
        // Each node keeps its own phase, spread over time: nodes started together
        // (a restart after an outage, a test network) would otherwise all query the
        // DHT in the same instant. Taken from our key, so a simulated run replays.
        let first = phase(&self.shared.me, every);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + first, every);
        let mut round = 0usize;
        loop {
            tick.tick().await;
            round += 1;
            // Idle connections are closed by now; give their memory back.
            crate::sysmem::release_free_memory();
            if self.handles.profile_behind(self.shared.head_seq()) {
                self.publish_profile().await;
            }
            self.discover_followers().await;
            self.remember_peers().await;
            // Anti-entropy: catch up with a few followed authors per round, round
            // robin, connected or not. A lost push of an author's newest post shows
            // no gap until the next post; this finds it. Up to date costs one empty
            // sync answer; an author away is asked through its providers.
            let followees = self.shared.follows.all();
            let n = followees.len().max(1);
            let start = (round * CATCH_UP_PER_ROUND) % n;
            for a in followees
                .iter()
                .cycle()
                .skip(start)
                .take(CATCH_UP_PER_ROUND.min(followees.len()))
            {
                self.spawn_catch_up(*a, None);
            }
        }
    }

    /// Keeps the peers we are connected to (and their addresses) in the store: a
    /// restart without `--bootstrap` rejoins through them.
    async fn remember_peers(&self) {
        let s = &self.shared;
        let Ok(peers) = self.net.connected_peers().await else {
            return;
        };
        if peers.is_empty() {
            return;
        }
        let rows = peers
            .into_iter()
            .map(|(p, addrs)| (p.to_bytes(), addrs.iter().map(|a| a.to_string()).collect()))
            .collect();
        if let Err(e) = s.store.put_peers(rows, s.clock.now_ms(), PEERS_KEPT).await {
            tracing::warn!(error = %e, "cannot remember peers");
        }
    }

    pub(crate) async fn network_status(&self) -> Result<NetworkStatus, NodeError> {
        let st = self.net.status().await?;
        Ok(NetworkStatus {
            listen_addrs: st.listen_addrs.iter().map(|a| a.to_string()).collect(),
            external_addrs: st.external_addrs.iter().map(|a| a.to_string()).collect(),
            reachability: st.reachability.to_string(),
            relays: st.relays.iter().map(|p| p.to_string()).collect(),
            connected_peers: st.connected_peers.len(),
            peers: st.connected_peers.iter().map(|p| p.to_string()).collect(),
            relayed_peers: st.relayed_peers.iter().map(|p| p.to_string()).collect(),
            routing_table_size: st.routing_table_size,
            subscribed_topics: st.subscribed_topics,
            dht_queries: st.dht_queries,
            counters: st.counters,
        })
    }
}
