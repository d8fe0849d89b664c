//! The node: what it is made of, starting and stopping it, and the local operations
//! (post, repost, timeline, archive, status, GC). The networked part is
//! [`crate::online::Online`], present when the node runs with a network.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use starling_core::post::check_body;
use starling_core::{
    AuthorId, Channel, Handle, HandleError, Identity, Limits, Post, PostContent, PostError,
    PostRef, SignatureError, Verdict,
};
use starling_net::{Multiaddr, Net, NetConfig, NetError, NetEvent, PeerId};
use starling_store::{Cursor, Inserted, Quota, Store, StoreConfig, StoreError};
use thiserror::Error;
use tokio::sync::{Mutex, broadcast, mpsc};

use crate::clock::Clock;
use crate::follows::{Follows, Target};
use crate::gate::Gate;
use crate::intake::{Arrival, Intake, STORING_BATCHES, Storing, Transport};
use crate::metrics::Metrics;
use crate::online::Online;
use crate::profile::{Profile, ProfileError};
use crate::skew::Skew;
use crate::tasks::Tasks;
use crate::trace::{Stage, Stamp, Trace};
use crate::view::{
    ClockStatus, FlaggedAuthor, FollowView, HandleState, PostView, Status, StoreStatus,
    TimelinePage, UserView, WhoAmI,
};

/// How long a post waits for the newest own post's number to be learned (a key
/// restored from its words) before it is refused.
pub const HEAD_WAIT: Duration = Duration::from_secs(20);

/// How long [`Node::user`] waits to learn the handle of a key it knows no name for.
pub const USER_HANDLE_LOOKUP: Duration = Duration::from_secs(3);

/// How a node runs; the defaults are what `starling up` uses.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Lifetime of this user's new posts.
    pub post_ttl: Duration,
    /// SNTP servers (`host:port`); empty: use the system clock as it is.
    pub ntp_servers: Vec<String>,
    pub ntp_interval: Duration,
    /// How often expired posts of others are deleted.
    pub gc_interval: Duration,
    /// How often the node re-announces itself (profile, provider records), looks for
    /// new followers, and reconnects to followed authors.
    pub maintenance_interval: Duration,
    pub limits: Limits,
    /// How many posts of others are kept (enforced at each GC round).
    pub quota: Quota,
    pub store: StoreConfig,
    /// Keep stamps of each stage posts pass ([`crate::trace`]), for the benchmark's
    /// latency breakdown.
    pub trace: bool,
    /// `None`: a node without network (local only).
    pub network: Option<NetConfig>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            post_ttl: starling_core::limits::DEFAULT_POST_TTL,
            ntp_servers: Vec::new(),
            ntp_interval: Duration::from_secs(15 * 60),
            gc_interval: Duration::from_secs(30),
            maintenance_interval: Duration::from_secs(60),
            limits: Limits::default(),
            quota: Quota::default(),
            store: StoreConfig::default(),
            trace: false,
            network: Some(NetConfig::default()),
        }
    }
}

#[derive(Debug, Error)]
pub enum NodeError {
    #[error(transparent)]
    Post(#[from] PostError),
    #[error("post #{0} is not in your archive")]
    NotInArchive(u64),
    #[error("post #{0} has not expired yet; only archived posts can be reposted")]
    NotExpired(u64),
    #[error(transparent)]
    Handle(#[from] HandleError),
    #[error("{0:?} is neither a handle (a-z, 0-9, _) nor a key (12D3KooW...)")]
    BadTarget(String),
    #[error("no user @{0} was found in the network")]
    UnknownHandle(String),
    #[error("handle @{handle} is already taken by another key ({by}, fingerprint {fingerprint})")]
    HandleTaken {
        handle: String,
        by: AuthorId,
        fingerprint: String,
    },
    #[error("could not confirm who holds @{handle}: {reason}")]
    HandleUnconfirmed { handle: String, reason: String },
    #[error("could not claim @{handle} yet: {reason}")]
    ClaimPending { handle: String, reason: String },
    #[error(
        "handle @{handle} now points to key {now} but you first saw it held by {pinned}; \
         not following. If you trust the new key, follow it by key."
    )]
    KeyChanged {
        handle: String,
        pinned: AuthorId,
        now: AuthorId,
    },
    #[error("you cannot follow yourself")]
    SelfFollow,
    #[error("{given} users in one batch of follows; at most {max}")]
    TooManyTargets { given: usize, max: usize },
    #[error("you do not follow {0}")]
    NotFollowing(String),
    #[error("the network is unavailable: this node runs without network")]
    Offline,
    #[error(
        "this key was restored from its words and the number of its newest post is not known yet: it is being looked up in the network (start the node with the network, or import your export); posting now could reuse a number your followers hold"
    )]
    HeadUnknown,
    #[error("the network is unavailable: {0}")]
    Network(#[from] NetError),
    #[error("invalid setting: {0}")]
    Config(String),
    #[error("storage error: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Profile(#[from] ProfileError),
}

impl From<SignatureError> for NodeError {
    fn from(e: SignatureError) -> Self {
        NodeError::Post(PostError::Signature(e))
    }
}

/// What interfaces can watch live.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NodeEvent {
    /// A post entered the timeline (ours, or received).
    Post(PostView),
    /// Someone started following us.
    Follower(FollowView),
}

/// A running node; cheap to clone.
#[derive(Clone)]
pub struct Node {
    shared: Arc<Shared>,
    online: Option<Arc<Online>>,
}

/// What every part of a node uses: its identity, settings, store, clock, counters,
/// tasks and live events, and the small pieces of local state (profile, own head,
/// names, follows) behind their own methods.
pub(crate) struct Shared {
    pub(crate) me: AuthorId,
    pub(crate) config: NodeConfig,
    pub(crate) store: Store,
    pub(crate) clock: Arc<Clock>,
    pub(crate) metrics: Metrics,
    pub(crate) tasks: Tasks,
    pub(crate) follows: Follows,
    pub(crate) intake: Intake,
    /// Admission of inbound requests, per peer.
    pub(crate) gate: Arc<Gate>,
    pub(crate) trace: Trace,
    /// Posts of others refused as future-dated, to tell their authors; and what
    /// followers told us of ours.
    pub(crate) skew: Skew,
    events: broadcast::Sender<NodeEvent>,
    pub(crate) profile: RwLock<Profile>,
    /// Verified handles of other users, for display.
    names: RwLock<HashMap<AuthorId, String>>,
    /// Serialises this user's posts so each gets the next seq.
    post_lock: Mutex<()>,
    pub(crate) head_seq: AtomicU64,
    /// False while the newest own post's number is to be learned from the network
    /// (a key restored from its words: see `ProfileDir::head_unknown`).
    pub(crate) head_known: tokio::sync::watch::Sender<bool>,
    started: Instant,
}

impl Shared {
    pub(crate) fn identity(&self) -> Identity {
        self.profile
            .read()
            .expect("profile poisoned")
            .identity
            .clone()
    }
    pub(crate) fn handle(&self) -> Handle {
        self.profile
            .read()
            .expect("profile poisoned")
            .handle
            .clone()
    }
    pub(crate) fn set_handle(&self, handle: Handle) -> Result<(), ProfileError> {
        self.profile
            .write()
            .expect("profile poisoned")
            .set_handle(handle)
    }
    pub(crate) fn head_seq(&self) -> u64 {
        self.head_seq.load(Ordering::SeqCst)
    }
    pub(crate) fn name_of(&self, a: &AuthorId) -> Option<String> {
        if *a == self.me {
            return Some(self.handle().to_string());
        }
        self.names.read().expect("names poisoned").get(a).cloned()
    }
    pub(crate) fn remember_name(&self, key: AuthorId, handle: String) {
        self.names
            .write()
            .expect("names poisoned")
            .insert(key, handle);
    }
    pub(crate) fn view(&self, post: &Post) -> PostView {
        PostView::new(post, self.name_of(&post.author), post.author == self.me)
    }
    /// Announces a post that entered the timeline; its view is built only when
    /// someone is listening (the web UI, an API client).
    pub(crate) fn announce_post(&self, post: &Post) {
        if self.events.receiver_count() > 0 {
            self.announce(NodeEvent::Post(self.view(post)));
        }
    }
    pub(crate) fn announce(&self, event: NodeEvent) {
        // Nobody listening is fine.
        let _ = self.events.send(event);
    }
}

/// The addresses (with `/p2p/<id>`) of the peers remembered from the last run.
async fn remembered_peers(shared: &Shared) -> Result<Vec<Multiaddr>, NodeError> {
    let rows = shared.store.peers(crate::online::PEERS_REJOINED).await?;
    let mut addrs = Vec::new();
    for (id, list) in rows {
        let Ok(peer) = PeerId::from_bytes(&id) else {
            continue;
        };
        if peer == shared.me.peer_id() {
            continue;
        }
        for a in list.iter().take(2) {
            if let Ok(a) = a.parse::<Multiaddr>() {
                addrs.push(a.with_p2p(peer).unwrap_or_else(|a| a));
            }
        }
    }
    Ok(addrs)
}

impl Node {
    /// Opens the profile's store, starts the network (if configured) and the
    /// background tasks.
    pub async fn start(profile: Profile, config: NodeConfig) -> Result<Self, NodeError> {
        let net = config.network.clone();
        Self::start_with(profile, config, Clock::new(), |shared| async move {
            match net {
                None => Ok(None),
                Some(mut nc) => {
                    nc.initial_records = shared.store.dht_records(shared.clock.now_ms()).await?;
                    if nc.bootstrap.is_empty() {
                        nc.bootstrap = remembered_peers(&shared).await?;
                        if !nc.bootstrap.is_empty() {
                            tracing::info!(
                                peers = nc.bootstrap.len(),
                                "no bootstrap address given: rejoining through the peers of the last run"
                            );
                        }
                    }
                    Ok(Some(Net::start(&shared.identity(), nc).await?))
                }
            }
        })
        .await
    }

    /// Starts a node on a network given from outside (the simulator's), with its own
    /// clock. `config.network` is not used.
    pub async fn start_on(
        profile: Profile,
        config: NodeConfig,
        clock: Clock,
        net: Net,
        events: mpsc::Receiver<NetEvent>,
    ) -> Result<Self, NodeError> {
        Self::start_with(profile, config, clock, |_| async move {
            Ok(Some((net, events)))
        })
        .await
    }

    async fn start_with<F, Fut>(
        profile: Profile,
        config: NodeConfig,
        clock: Clock,
        network: F,
    ) -> Result<Self, NodeError>
    where
        F: FnOnce(Arc<Shared>) -> Fut,
        Fut: std::future::Future<Output = Result<Option<(Net, mpsc::Receiver<NetEvent>)>, NodeError>>,
    {
        let ttl_ms = config.post_ttl.as_millis() as u64;
        if ttl_ms == 0 || ttl_ms > config.limits.max_post_lifetime_ms {
            return Err(NodeError::Config(format!(
                "post lifetime must be between 1 ms and {} days",
                config.limits.max_post_lifetime_ms / 86_400_000
            )));
        }
        let (limits, config_trace) = (config.limits, config.trace);
        let store = Store::open(&profile.db_path(), config.store.clone())?;
        let me = profile.identity.author();
        let head = store.head(me).await?;
        if let Some(h) = &head {
            clock.start_after(h.ts);
        }
        let statements = store.following(false).await?;
        // Our statements' stamps too: the newest statement per followee wins, so the
        // HLC must not go back below them, even on a machine a profile was imported
        // to whose clock is behind the old one's.
        if let Some(ts) = statements.iter().map(|r| r.statement.ts).max() {
            clock.start_after(ts);
        }
        let followed: Vec<_> = statements
            .into_iter()
            .filter(|r| r.statement.following)
            .collect();
        let following: BTreeSet<AuthorId> = followed.iter().map(|r| r.statement.followee).collect();
        let mut names: HashMap<AuthorId, String> = store.pins().await?.into_iter().collect();
        for row in followed {
            if let Some(h) = row.handle {
                names.entry(row.statement.followee).or_insert(h);
            }
        }
        // Live views only: a subscriber that falls this far behind gets `resync`.
        let (events, _) = broadcast::channel(128);
        let head_known = tokio::sync::watch::Sender::new(!profile.dir.head_unknown());
        let shared = Arc::new(Shared {
            me,
            head_seq: AtomicU64::new(head.map_or(0, |h| h.seq)),
            head_known,
            profile: RwLock::new(profile),
            store,
            clock: Arc::new(clock),
            post_lock: Mutex::new(()),
            events,
            started: Instant::now(),
            tasks: Tasks::default(),
            config,
            metrics: Metrics::default(),
            follows: Follows::new(following),
            intake: Intake::new(limits),
            gate: Arc::default(),
            trace: Trace::new(config_trace),
            skew: Skew::new(),
            names: RwLock::new(names),
        });
        let online = network(shared.clone())
            .await?
            .map(|(net, events)| Online::start(shared.clone(), net, events));
        let node = Self { shared, online };
        node.spawn_background();
        if let Some(online) = &node.online {
            online.run().await;
        }
        Ok(node)
    }

    fn spawn_background(&self) {
        let s = &self.shared;
        let clock = s.clock.clone();
        let (servers, every) = (s.config.ntp_servers.clone(), s.config.ntp_interval);
        let cancel = s.tasks.token();
        s.tasks
            .spawn(async move { clock.run_sntp(servers, every, cancel).await });
        let node = self.clone();
        s.tasks.spawn(async move { node.run_gc().await });
    }

    /// Tells every background task to stop, without waiting; the network and the
    /// store close once the last handle to them is gone. For teardown paths that
    /// cannot wait (prefer [`Node::shutdown`]).
    pub fn stop_now(&self) {
        self.shared.tasks.stop();
    }

    /// Stops the background tasks and the network, and flushes the store.
    pub async fn shutdown(&self) {
        self.shared.tasks.stop_and_wait().await;
        if let Some(online) = &self.online {
            online.net().shutdown().await;
        }
        self.shared.store.close().await;
    }

    /// The networked part, or [`NodeError::Offline`].
    fn online(&self) -> Result<&Arc<Online>, NodeError> {
        self.online.as_ref().ok_or(NodeError::Offline)
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }
    pub fn clock(&self) -> &Arc<Clock> {
        &self.shared.clock
    }
    pub fn net(&self) -> Option<&Net> {
        self.online.as_ref().map(|o| o.net())
    }
    pub fn author(&self) -> AuthorId {
        self.shared.me
    }
    pub fn handle(&self) -> Handle {
        self.shared.handle()
    }
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.shared.events.subscribe()
    }
    pub fn handle_state(&self) -> HandleState {
        match &self.online {
            Some(o) => o.handles.state(),
            None => HandleState::Offline,
        }
    }
    /// Runs batches of posts received from elsewhere through the one intake, as
    /// gossip does (as if `from` had sent them on `channel`): each batch is checked,
    /// counted and queued for the store, and the next is checked while it commits
    /// (up to [`STORING_BATCHES`] queued); new posts are announced. One verdict per
    /// post, in order. For benchmarks and tools; gaps it reveals are left to the next
    /// catch-up.
    pub async fn ingest(
        &self,
        from: PeerId,
        batches: impl IntoIterator<Item = Vec<(Vec<u8>, Channel)>>,
    ) -> Vec<Verdict> {
        let s = &self.shared;
        let mut storing = std::collections::VecDeque::<Storing>::with_capacity(STORING_BATCHES);
        let mut verdicts = Vec::new();
        for posts in batches {
            if storing.len() >= STORING_BATCHES
                && let Some(oldest) = storing.pop_front()
            {
                verdicts.extend(oldest.done(&s.intake, s).await.verdicts);
            }
            let arrivals = posts
                .into_iter()
                .map(|(bytes, channel)| Arrival {
                    bytes,
                    channel,
                    from,
                    received_ns: 0,
                })
                .collect();
            let checked = s.intake.check(s, arrivals, Transport::Sync).await;
            storing.push_back(checked.submit(&s.intake, s).await);
        }
        for batch in storing {
            verdicts.extend(batch.done(&s.intake, s).await.verdicts);
        }
        verdicts
    }

    /// Records that our post `seq` reached `stage` at `ns` ([`starling_net::mono_ns`]),
    /// when tracing is on: for stages outside the node (the API's).
    pub fn stamp(&self, seq: u64, stage: Stage, ns: u64) {
        self.shared.trace.stamp(self.shared.me, seq, stage, ns);
    }

    /// Takes the stage stamps kept so far (empty unless the node traces).
    pub fn take_trace(&self) -> Vec<Stamp> {
        self.shared.trace.take()
    }

    /// Background tasks running now (reaped as they end).
    pub fn tasks(&self) -> usize {
        self.shared.tasks.len()
    }

    /// Creates, signs, stores and announces a post. Resolves once it is on disk.
    pub async fn post(&self, body: &str) -> Result<PostView, NodeError> {
        self.publish(body, None).await
    }

    /// Republishes an archived (expired) post of ours as a new post.
    pub async fn repost(&self, seq: u64) -> Result<PostView, NodeError> {
        let s = &self.shared;
        let original = s
            .store
            .post(s.me, seq)
            .await?
            .ok_or(NodeError::NotInArchive(seq))?;
        if !original.is_expired(s.clock.now_ms()) {
            return Err(NodeError::NotExpired(seq));
        }
        // A repost of a repost names the first original.
        let root = original.repost_of.unwrap_or(original.id());
        self.publish(&original.body, Some(root)).await
    }

    async fn publish(&self, body: &str, repost_of: Option<PostRef>) -> Result<PostView, NodeError> {
        check_body(body)?;
        let s = &self.shared;
        if !*s.head_known.borrow() {
            // Without the network nothing can tell it: refused at once.
            if self.online.is_none() {
                return Err(NodeError::HeadUnknown);
            }
            let mut known = s.head_known.subscribe();
            let wait = tokio::time::timeout(HEAD_WAIT, known.wait_for(|k| *k)).await;
            if !matches!(wait, Ok(Ok(_))) {
                return Err(NodeError::HeadUnknown);
            }
        }
        let post = {
            let _turn = s.post_lock.lock().await;
            let ts = s.clock.post_stamp();
            let content = PostContent {
                author: s.me,
                seq: s.head_seq() + 1,
                ts,
                expires_at: ts.millis() + s.config.post_ttl.as_millis() as u64,
                body: body.to_string(),
                repost_of,
            };
            content.check(&s.config.limits)?;
            let post = Post::sign(content, &s.identity())?;
            let tracing_on = s.trace.on();
            if tracing_on {
                s.trace
                    .stamp(s.me, post.seq, Stage::Signed, starling_net::mono_ns());
            }
            let outcome = s
                .store
                .insert_posts(vec![post.clone()], s.clock.now_ms())
                .await?;
            if outcome.first() != Some(&Inserted::New) {
                // Only possible if the database was changed behind our back.
                return Err(NodeError::Store(StoreError::Corrupt {
                    table: "posts",
                    reason: format!("seq {} was already taken", post.seq),
                }));
            }
            s.head_seq.store(post.seq, Ordering::SeqCst);
            if tracing_on {
                s.trace
                    .stamp(s.me, post.seq, Stage::Committed, starling_net::mono_ns());
            }
            post
        };
        // On disk: now push it to online followers. Nobody online is fine: they pull.
        if let Some(online) = &self.online {
            online.push_own(&post).await;
            if s.trace.on() {
                s.trace
                    .stamp(s.me, post.seq, Stage::Sent, starling_net::mono_ns());
            }
        }
        let view = s.view(&post);
        s.announce(NodeEvent::Post(view.clone()));
        Ok(view)
    }

    fn page(&self, posts: Vec<Post>, limit: usize) -> TimelinePage {
        let next_cursor = (posts.len() == limit && limit > 0)
            .then(|| posts.last().map(|p| Cursor::of(p).to_string()))
            .flatten();
        TimelinePage {
            posts: posts.iter().map(|p| self.shared.view(p)).collect(),
            next_cursor,
        }
    }

    /// Own and followed posts, unexpired, newest first.
    pub async fn timeline(
        &self,
        limit: usize,
        before: Option<Cursor>,
    ) -> Result<TimelinePage, NodeError> {
        let limit = limit.clamp(1, 500);
        let s = &self.shared;
        let rows = s.store.timeline(s.clock.now_ms(), limit, before).await?;
        Ok(self.page(rows.into_iter().map(|r| r.post).collect(), limit))
    }

    /// One author's unexpired posts that this node holds (their page; one's own
    /// feed), newest first.
    pub async fn posts_of(
        &self,
        author: AuthorId,
        limit: usize,
        before: Option<Cursor>,
    ) -> Result<TimelinePage, NodeError> {
        let limit = limit.clamp(1, 500);
        let s = &self.shared;
        let rows = s
            .store
            .unexpired_posts_of(author, s.clock.now_ms(), limit, before)
            .await?;
        Ok(self.page(rows.into_iter().map(|r| r.post).collect(), limit))
    }

    /// This user's expired posts, newest first.
    pub async fn archive(
        &self,
        limit: usize,
        before: Option<Cursor>,
    ) -> Result<TimelinePage, NodeError> {
        let limit = limit.clamp(1, 500);
        let s = &self.shared;
        let rows = s
            .store
            .expired_posts_of(s.me, s.clock.now_ms(), limit, before)
            .await?;
        Ok(self.page(rows.into_iter().map(|r| r.post).collect(), limit))
    }

    pub fn whoami(&self) -> WhoAmI {
        let s = &self.shared;
        let p = s.profile.read().expect("profile poisoned");
        WhoAmI {
            peer_id: s.me,
            handle: p.handle.to_string(),
            handle_state: self.handle_state(),
            fingerprint: s.me.fingerprint(),
            data_dir: p.dir.display().to_string(),
        }
    }

    pub async fn status(&self) -> Result<Status, NodeError> {
        let s = &self.shared;
        let (stored, live) = s.store.post_counts(s.clock.now_ms()).await?;
        let followers = s.store.followers(true).await?.len() as u64;
        let outbox_pending = s.store.outbox_len().await?;
        let tasks_refused = s.tasks.refused();
        let flagged = s
            .store
            .equivocators()
            .await?
            .into_iter()
            .map(|e| FlaggedAuthor {
                peer_id: e.author,
                handle: s.name_of(&e.author),
                proofs: e.proofs,
                first_seq: e.first_seq,
            })
            .collect();
        let network = match &self.online {
            Some(o) => Some(o.network_status().await?),
            None => None,
        };
        Ok(Status {
            peer_id: s.me,
            handle: self.handle().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_secs: s.started.elapsed().as_secs(),
            posts_stored: stored,
            posts_live: live,
            head_seq: s.head_seq(),
            post_ttl_secs: s.config.post_ttl.as_secs_f64(),
            clock: {
                let ntp = s.clock.ntp_status();
                ClockStatus {
                    offset_ms: s.clock.offset_ms(),
                    future_refusals: s.skew.warning(s.clock.now_ms(), ntp.synced_at),
                    ntp,
                }
            },
            handle_state: self.handle_state(),
            following: s.follows.len() as u64,
            followers,
            outbox_pending,
            store: StoreStatus {
                disk_bytes: s.store.disk_bytes(),
                quota_per_author: s.config.quota.per_author,
                quota_total: s.config.quota.total,
            },
            rejected: s.metrics.rejected(),
            counters: s
                .metrics
                .snapshot()
                .into_iter()
                .filter(|(k, _)| !k.starts_with("rejected."))
                .chain((tasks_refused > 0).then(|| ("tasks.refused".to_string(), tasks_refused)))
                .chain(std::iter::once((
                    "store.fsyncs".to_string(),
                    s.store.fsyncs(),
                )))
                .collect(),
            flagged,
            network,
        })
    }

    /// Deletes other authors' expired posts now; returns how many.
    pub async fn collect_garbage(&self) -> Result<usize, NodeError> {
        const CHUNK: usize = 1000;
        let s = &self.shared;
        let mut total = 0;
        loop {
            let n = s
                .store
                .delete_expired(s.clock.now_ms(), s.me, CHUNK)
                .await?;
            total += n;
            if n < CHUNK {
                return Ok(total);
            }
        }
    }

    async fn run_gc(&self) {
        let mut tick = tokio::time::interval(self.shared.config.gc_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.shared.metrics.inc("gc.runs");
            match self.collect_garbage().await {
                Ok(0) => {}
                Ok(n) => {
                    self.shared.metrics.add("gc.deleted", n as u64);
                    tracing::debug!(deleted = n, "expired posts collected");
                }
                Err(e) => tracing::warn!(error = %e, "garbage collection failed"),
            }
            let s = &self.shared;
            match s.store.enforce_quota(s.me, s.config.quota).await {
                Ok(0) => {}
                Ok(n) => {
                    s.metrics.add("evicted.quota", n);
                    tracing::info!(evicted = n, "posts of others over the quota evicted");
                }
                Err(e) => tracing::warn!(error = %e, "quota enforcement failed"),
            }
        }
    }

    // ---- the networked operations ---------------------------------------------------

    /// Resolves a handle through the DHT and pins its key (trust on first use).
    pub async fn resolve(&self, handle: &Handle) -> Result<AuthorId, NodeError> {
        self.online()?.resolve(handle).await
    }

    /// Claims our handle (or `new_handle`) in the DHT now.
    pub async fn register(&self, new_handle: Option<&str>) -> Result<HandleState, NodeError> {
        self.online()?.register(new_handle).await
    }

    /// Follows a user by handle or key; works while they are offline.
    pub async fn follow(&self, target: &str) -> Result<FollowView, NodeError> {
        self.online()?.follow(target).await
    }

    /// Follows several users at once (at most [`MAX_FOLLOW_BATCH`]), one result per
    /// target: their statements are stored in one transaction and delivered
    /// together.
    ///
    /// [`MAX_FOLLOW_BATCH`]: crate::MAX_FOLLOW_BATCH
    pub async fn follow_many(
        &self,
        targets: &[String],
    ) -> Result<Vec<Result<FollowView, NodeError>>, NodeError> {
        self.online()?.follow_many(targets).await
    }

    /// Unfollows by handle or key.
    pub async fn unfollow(&self, target: &str) -> Result<FollowView, NodeError> {
        self.online()?.unfollow(target).await
    }

    /// Brings our copy of `author`'s feed up to date (no-op without network).
    pub async fn catch_up(&self, author: AuthorId) {
        if let Some(o) = &self.online {
            o.catch_up(author, None).await;
        }
    }

    /// Whom we follow, newest first, with delivery state.
    pub async fn following_list(&self) -> Result<Vec<FollowView>, NodeError> {
        let s = &self.shared;
        Ok(s.store
            .following(true)
            .await?
            .into_iter()
            .map(|r| {
                let who = r.statement.followee;
                let handle = s.name_of(&who).or(r.handle);
                FollowView::new(
                    who,
                    handle,
                    r.statement.ts.millis(),
                    r.delivered_at.is_none(),
                )
            })
            .collect())
    }

    /// The key `target` (a key, a handle or `@handle`) names, and its handle when
    /// known. A handle pinned before (or our own) needs no lookup; another is
    /// resolved through the network and pinned, as a follow would.
    pub async fn find_user(&self, target: &str) -> Result<(AuthorId, Option<String>), NodeError> {
        let s = &self.shared;
        match Target::parse(target)? {
            Target::Key(key) => Ok((key, s.name_of(&key))),
            Target::Handle(h) if h == s.handle() => Ok((s.me, Some(h.to_string()))),
            Target::Handle(h) => {
                let key = match s.store.pinned_key(h.to_string()).await? {
                    Some(key) => key,
                    None => self.resolve(&h).await?,
                };
                Ok((key, Some(h.to_string())))
            }
        }
    }

    /// Who `target` is, for their page: key, handle, and whether each follows the
    /// other. A key whose handle is not known yet gets a short lookup of its
    /// profile (at most [`USER_HANDLE_LOOKUP`]).
    pub async fn user(&self, target: &str) -> Result<UserView, NodeError> {
        let s = &self.shared;
        let (key, handle) = self.find_user(target).await?;
        let me = key == s.me;
        let (followee, follower) = if me {
            (None, None)
        } else {
            let followee = s.store.following_of(key).await?;
            let follower = s.store.follower_of(key).await?;
            (
                followee.filter(|r| r.statement.following),
                follower.filter(|r| r.statement.following),
            )
        };
        let mut handle = handle.or_else(|| followee.as_ref().and_then(|r| r.handle.clone()));
        if let (None, Some(online), false) = (&handle, &self.online, me) {
            handle = tokio::time::timeout(USER_HANDLE_LOOKUP, online.learn_handle(key))
                .await
                .ok()
                .flatten();
        }
        Ok(UserView {
            peer_id: key,
            handle,
            fingerprint: key.fingerprint(),
            me,
            following: followee.is_some(),
            pending: followee.as_ref().is_some_and(|r| r.delivered_at.is_none()),
            following_since_ms: followee.as_ref().map(|r| r.statement.ts.millis()),
            follows_me: follower.is_some(),
            follows_me_since_ms: follower.as_ref().map(|r| r.statement.ts.millis()),
        })
    }

    /// Who follows us, newest first.
    pub async fn followers_list(&self) -> Result<Vec<FollowView>, NodeError> {
        let s = &self.shared;
        Ok(s.store
            .followers(true)
            .await?
            .into_iter()
            .map(|r| {
                let who = r.statement.follower;
                FollowView::new(who, s.name_of(&who), r.statement.ts.millis(), false)
            })
            .collect())
    }
}
