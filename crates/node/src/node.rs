//! The node: posting, reposting, timeline, archive, status, and the background tasks
//! it runs until shut down. The networked parts live in `gossip`, `sync`, `social`
//! and `network`, as further `impl Node` blocks.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use starling_core::post::check_body;
use starling_core::{
    AuthorId, Handle, HandleError, Limits, Post, PostContent, PostError, PostRef, SignatureError,
};
use starling_net::{Net, NetConfig, NetError};
use starling_store::{Cursor, Inserted, Store, StoreConfig, StoreError};
use thiserror::Error;
use tokio::sync::{Mutex, Notify, broadcast};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::profile::{Profile, ProfileError};
use crate::view::{ClockStatus, FollowView, HandleState, PostView, Status, TimelinePage, WhoAmI};

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
    pub store: StoreConfig,
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
            store: StoreConfig::default(),
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
    #[error("you do not follow {0}")]
    NotFollowing(String),
    #[error("the network is unavailable: {0}")]
    Network(String),
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

impl From<NetError> for NodeError {
    fn from(e: NetError) -> Self {
        NodeError::Network(e.to_string())
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
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) profile: std::sync::RwLock<Profile>,
    pub(crate) me: AuthorId,
    pub(crate) config: NodeConfig,
    pub(crate) store: Store,
    pub(crate) clock: Arc<Clock>,
    pub(crate) net: Option<Net>,
    /// Serialises this user's posts so each gets the next seq.
    pub(crate) post_lock: Mutex<()>,
    pub(crate) head_seq: AtomicU64,
    pub(crate) events: broadcast::Sender<NodeEvent>,
    pub(crate) started: Instant,
    pub(crate) cancel: CancellationToken,
    pub(crate) tasks: std::sync::Mutex<JoinSet<()>>,
    pub(crate) metrics: Metrics,
    /// Authors we follow (active follows), for gossip validation.
    pub(crate) following: RwLock<HashSet<AuthorId>>,
    /// Verified handles of other users, for display.
    pub(crate) handles: RwLock<HashMap<AuthorId, String>>,
    pub(crate) handle_state: std::sync::Mutex<HandleState>,
    /// Authors being caught up; `true` when another round was asked for meanwhile.
    pub(crate) syncing: std::sync::Mutex<HashMap<AuthorId, bool>>,
    /// Followees whose statement is being delivered right now.
    pub(crate) delivering: std::sync::Mutex<HashSet<AuthorId>>,
    /// Wakes the outbox early (a followee came online, a new statement).
    pub(crate) outbox_kick: Notify,
    /// Wakes the registration task (first peer connected).
    pub(crate) connected_kick: Notify,
    /// The head seq last published in our profile record.
    pub(crate) published_head: AtomicU64,
    /// Set once we announced ourselves to the network (at the first connection).
    pub(crate) announced: AtomicBool,
    /// Highest seq stored per followed author, as of our last insert: a gossiped
    /// post beyond it cannot be held yet, so checking it needs no database read.
    pub(crate) feed_max: std::sync::Mutex<HashMap<AuthorId, u64>>,
}

impl Node {
    /// Opens the profile's store, starts the network (if configured) and the
    /// background tasks.
    pub async fn start(profile: Profile, config: NodeConfig) -> Result<Self, NodeError> {
        let ttl_ms = config.post_ttl.as_millis() as u64;
        if ttl_ms == 0 || ttl_ms > config.limits.max_post_lifetime_ms {
            return Err(NodeError::Config(format!(
                "post lifetime must be between 1 ms and {} days",
                config.limits.max_post_lifetime_ms / 86_400_000
            )));
        }
        let store = Store::open(&profile.db_path(), config.store.clone())?;
        let clock = Arc::new(Clock::new());
        let me = profile.identity.author();
        let head = store.head(me).await?;
        if let Some(h) = &head {
            clock.start_after(h.ts);
        }
        let followed = store.following(true).await?;
        let following: HashSet<AuthorId> = followed.iter().map(|r| r.statement.followee).collect();
        let mut handles: HashMap<AuthorId, String> = store.pins().await?.into_iter().collect();
        for row in followed {
            if let Some(h) = row.handle {
                handles.entry(row.statement.followee).or_insert(h);
            }
        }
        let (net, net_events) = match &config.network {
            Some(nc) => {
                let mut nc = nc.clone();
                nc.initial_records = store.dht_records(clock.now_ms()).await?;
                let (net, ev) = Net::start(&profile.identity, nc).await?;
                (Some(net), Some(ev))
            }
            None => (None, None),
        };
        // Live views only: a subscriber that falls this far behind gets `resync`.
        let (events, _) = broadcast::channel(128);
        let handle_state = if net.is_some() {
            HandleState::Pending {
                reason: "waiting for peers".into(),
            }
        } else {
            HandleState::Offline
        };
        let node = Self {
            inner: Arc::new(Inner {
                head_seq: AtomicU64::new(head.map_or(0, |h| h.seq)),
                me,
                profile: std::sync::RwLock::new(profile),
                store,
                clock,
                net,
                post_lock: Mutex::new(()),
                events,
                started: Instant::now(),
                cancel: CancellationToken::new(),
                tasks: std::sync::Mutex::new(JoinSet::new()),
                config,
                metrics: Metrics::default(),
                following: RwLock::new(following),
                handles: RwLock::new(handles),
                handle_state: std::sync::Mutex::new(handle_state),
                syncing: std::sync::Mutex::new(HashMap::new()),
                delivering: std::sync::Mutex::new(HashSet::new()),
                outbox_kick: Notify::new(),
                connected_kick: Notify::new(),
                published_head: AtomicU64::new(u64::MAX),
                announced: AtomicBool::new(false),
                feed_max: Default::default(),
            }),
        };
        node.spawn_background();
        if let Some(events) = net_events {
            node.start_network(events).await;
        }
        Ok(node)
    }

    pub(crate) fn spawn(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        let cancel = self.inner.cancel.clone();
        self.inner
            .tasks
            .lock()
            .expect("tasks poisoned")
            .spawn(async move {
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = fut => {}
                }
            });
    }

    fn spawn_background(&self) {
        let (clock, cancel) = (self.inner.clock.clone(), self.inner.cancel.clone());
        let (servers, every) = (
            self.inner.config.ntp_servers.clone(),
            self.inner.config.ntp_interval,
        );
        self.spawn(async move { clock.run_sntp(servers, every, cancel).await });
        let node = self.clone();
        self.spawn(async move { node.run_gc().await });
    }

    /// Tells every background task to stop, without waiting; the network and the
    /// store close once the last handle to them is gone. For teardown paths that
    /// cannot wait (prefer [`Node::shutdown`]).
    pub fn stop_now(&self) {
        self.inner.cancel.cancel();
    }

    /// Stops the background tasks and the network, and flushes the store.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        let mut tasks = std::mem::take(&mut *self.inner.tasks.lock().expect("tasks poisoned"));
        while tasks.join_next().await.is_some() {}
        if let Some(net) = &self.inner.net {
            net.shutdown().await;
        }
        self.inner.store.close().await;
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }
    pub fn clock(&self) -> &Arc<Clock> {
        &self.inner.clock
    }
    pub fn net(&self) -> Option<&Net> {
        self.inner.net.as_ref()
    }
    pub fn author(&self) -> AuthorId {
        self.inner.me
    }
    pub fn handle(&self) -> Handle {
        self.inner
            .profile
            .read()
            .expect("profile poisoned")
            .handle
            .clone()
    }
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.inner.events.subscribe()
    }
    pub fn handle_state(&self) -> HandleState {
        self.inner
            .handle_state
            .lock()
            .expect("state poisoned")
            .clone()
    }
    pub(crate) fn set_handle_state(&self, s: HandleState) {
        *self.inner.handle_state.lock().expect("state poisoned") = s;
    }
    pub(crate) fn is_following(&self, a: &AuthorId) -> bool {
        self.inner
            .following
            .read()
            .expect("following poisoned")
            .contains(a)
    }
    pub(crate) fn handle_of(&self, a: &AuthorId) -> Option<String> {
        if *a == self.inner.me {
            return Some(self.handle().to_string());
        }
        self.inner
            .handles
            .read()
            .expect("handles poisoned")
            .get(a)
            .cloned()
    }

    /// Creates, signs, stores and announces a post. Resolves once it is on disk.
    pub async fn post(&self, body: &str) -> Result<PostView, NodeError> {
        self.publish(body, None).await
    }

    /// Republishes an archived (expired) post of ours as a new post.
    pub async fn repost(&self, seq: u64) -> Result<PostView, NodeError> {
        let original = self
            .inner
            .store
            .post(self.inner.me, seq)
            .await?
            .ok_or(NodeError::NotInArchive(seq))?;
        if !original.is_expired(self.inner.clock.now_ms()) {
            return Err(NodeError::NotExpired(seq));
        }
        // A repost of a repost names the first original.
        let root = original.repost_of.unwrap_or(original.id());
        self.publish(&original.body, Some(root)).await
    }

    async fn publish(&self, body: &str, repost_of: Option<PostRef>) -> Result<PostView, NodeError> {
        check_body(body)?;
        let inner = &self.inner;
        let post = {
            let _turn = inner.post_lock.lock().await;
            let ts = inner.clock.stamp();
            let identity = inner
                .profile
                .read()
                .expect("profile poisoned")
                .identity
                .clone();
            let content = PostContent {
                author: inner.me,
                seq: inner.head_seq.load(Ordering::SeqCst) + 1,
                ts,
                expires_at: ts.millis() + inner.config.post_ttl.as_millis() as u64,
                body: body.to_string(),
                repost_of,
            };
            content.check(&inner.config.limits)?;
            let post = Post::sign(content, &identity)?;
            let outcome = inner
                .store
                .insert_posts(vec![post.clone()], inner.clock.now_ms())
                .await?;
            if outcome.first() != Some(&Inserted::New) {
                // Only possible if the database was changed behind our back.
                return Err(NodeError::Store(StoreError::Corrupt {
                    table: "posts",
                    reason: format!("seq {} was already taken", post.seq),
                }));
            }
            inner.head_seq.store(post.seq, Ordering::SeqCst);
            post
        };
        // On disk: now push it to online followers. Nobody online is fine: they pull.
        if let Some(net) = &inner.net {
            match net.publish(inner.me, post.as_bytes().to_vec()).await {
                Ok(n) => tracing::debug!(seq = post.seq, peers = n, "published"),
                Err(e) => {
                    tracing::warn!(seq = post.seq, error = %e, "publish failed; followers will pull")
                }
            }
        }
        let view = self.view(&post);
        let _ = inner.events.send(NodeEvent::Post(view.clone()));
        Ok(view)
    }

    pub(crate) fn view(&self, post: &Post) -> PostView {
        let mine = post.author == self.inner.me;
        PostView::new(post, self.handle_of(&post.author), mine)
    }

    fn page(&self, posts: Vec<Post>, limit: usize) -> TimelinePage {
        let next_cursor = (posts.len() == limit && limit > 0)
            .then(|| posts.last().map(|p| Cursor::of(p).to_string()))
            .flatten();
        TimelinePage {
            posts: posts.iter().map(|p| self.view(p)).collect(),
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
        let rows = self
            .inner
            .store
            .timeline(self.inner.clock.now_ms(), limit, before)
            .await?;
        Ok(self.page(rows.into_iter().map(|s| s.post).collect(), limit))
    }

    /// This user's expired posts, newest first.
    pub async fn archive(
        &self,
        limit: usize,
        before: Option<Cursor>,
    ) -> Result<TimelinePage, NodeError> {
        let limit = limit.clamp(1, 500);
        let rows = self
            .inner
            .store
            .expired_posts_of(self.inner.me, self.inner.clock.now_ms(), limit, before)
            .await?;
        Ok(self.page(rows.into_iter().map(|s| s.post).collect(), limit))
    }

    pub fn whoami(&self) -> WhoAmI {
        let p = self.inner.profile.read().expect("profile poisoned");
        WhoAmI {
            peer_id: self.inner.me,
            handle: p.handle.to_string(),
            handle_state: self.handle_state(),
            fingerprint: self.inner.me.fingerprint(),
            data_dir: p.dir.display().to_string(),
        }
    }

    pub async fn status(&self) -> Result<Status, NodeError> {
        let inner = &self.inner;
        let (stored, live) = inner.store.post_counts(inner.clock.now_ms()).await?;
        let following = inner.following.read().expect("following poisoned").len() as u64;
        let followers = inner.store.followers(true).await?.len() as u64;
        let outbox_pending = inner.store.outbox_len().await?;
        let network = match &inner.net {
            Some(_) => Some(self.network_status().await?),
            None => None,
        };
        Ok(Status {
            peer_id: inner.me,
            handle: self.handle().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_secs: inner.started.elapsed().as_secs(),
            posts_stored: stored,
            posts_live: live,
            head_seq: inner.head_seq.load(Ordering::SeqCst),
            post_ttl_secs: inner.config.post_ttl.as_secs_f64(),
            clock: ClockStatus {
                offset_ms: inner.clock.offset_ms(),
                ntp: inner.clock.ntp_status(),
            },
            handle_state: self.handle_state(),
            following,
            followers,
            outbox_pending,
            rejected: inner.metrics.rejected(),
            counters: inner
                .metrics
                .snapshot()
                .into_iter()
                .filter(|(k, _)| !k.starts_with("rejected."))
                .collect(),
            network,
        })
    }

    /// Deletes other authors' expired posts now; returns how many.
    pub async fn collect_garbage(&self) -> Result<usize, NodeError> {
        const CHUNK: usize = 1000;
        let mut total = 0;
        loop {
            let n = self
                .inner
                .store
                .delete_expired(self.inner.clock.now_ms(), self.inner.me, CHUNK)
                .await?;
            total += n;
            if n < CHUNK {
                return Ok(total);
            }
        }
    }

    async fn run_gc(&self) {
        let mut tick = tokio::time::interval(self.inner.config.gc_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.collect_garbage().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(deleted = n, "expired posts collected"),
                Err(e) => tracing::warn!(error = %e, "garbage collection failed"),
            }
        }
    }
}
