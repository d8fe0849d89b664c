//! The node: posting, reposting, timeline, archive, status, and background tasks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use starling_core::post::check_body;
use starling_core::{Limits, Post, PostContent, PostError, PostRef, SignatureError};
use starling_store::{Cursor, Inserted, Store, StoreConfig, StoreError};
use thiserror::Error;
use tokio::sync::{Mutex, broadcast};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::profile::Profile;
use crate::view::{ClockStatus, PostView, Status, TimelinePage, WhoAmI};

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
    pub limits: Limits,
    pub store: StoreConfig,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            post_ttl: starling_core::limits::DEFAULT_POST_TTL,
            ntp_servers: Vec::new(),
            ntp_interval: Duration::from_secs(15 * 60),
            gc_interval: Duration::from_secs(30),
            limits: Limits::default(),
            store: StoreConfig::default(),
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
    #[error("invalid setting: {0}")]
    Config(String),
    #[error("storage error: {0}")]
    Store(#[from] StoreError),
}

impl From<SignatureError> for NodeError {
    fn from(e: SignatureError) -> Self {
        NodeError::Post(PostError::Signature(e))
    }
}

/// What interfaces can watch live.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NodeEvent {
    /// A post entered the timeline.
    Post(PostView),
}

/// A running node; cheap to clone.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    profile: Profile,
    config: NodeConfig,
    store: Store,
    clock: Arc<Clock>,
    /// Serialises this user's posts so each gets the next seq.
    post_lock: Mutex<()>,
    head_seq: AtomicU64,
    events: broadcast::Sender<NodeEvent>,
    started: Instant,
    cancel: CancellationToken,
    tasks: std::sync::Mutex<JoinSet<()>>,
}

impl Node {
    /// Opens the profile's store and starts the background tasks.
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
        let (events, _) = broadcast::channel(1024);
        let node = Self {
            inner: Arc::new(Inner {
                head_seq: AtomicU64::new(head.map_or(0, |h| h.seq)),
                profile,
                store,
                clock,
                post_lock: Mutex::new(()),
                events,
                started: Instant::now(),
                cancel: CancellationToken::new(),
                tasks: std::sync::Mutex::new(JoinSet::new()),
                config,
            }),
        };
        node.spawn_background();
        Ok(node)
    }

    fn spawn_background(&self) {
        let mut tasks = self.inner.tasks.lock().expect("tasks poisoned");
        let (clock, cancel) = (self.inner.clock.clone(), self.inner.cancel.clone());
        let (servers, every) = (
            self.inner.config.ntp_servers.clone(),
            self.inner.config.ntp_interval,
        );
        tasks.spawn(async move { clock.run_sntp(servers, every, cancel).await });
        let node = self.clone();
        tasks.spawn(async move { node.run_gc().await });
    }

    /// Stops the background tasks and flushes the store.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        let mut tasks = std::mem::take(&mut *self.inner.tasks.lock().expect("tasks poisoned"));
        while tasks.join_next().await.is_some() {}
        self.inner.store.close().await;
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }
    pub fn clock(&self) -> &Arc<Clock> {
        &self.inner.clock
    }
    pub fn profile(&self) -> &Profile {
        &self.inner.profile
    }
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.inner.events.subscribe()
    }

    /// Creates, signs, stores and announces a post. Resolves once it is on disk.
    pub async fn post(&self, body: &str) -> Result<PostView, NodeError> {
        self.publish(body, None).await
    }

    /// Republishes an archived (expired) post of ours as a new post.
    pub async fn repost(&self, seq: u64) -> Result<PostView, NodeError> {
        let me = self.inner.profile.identity.author();
        let original = self
            .inner
            .store
            .post(me, seq)
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
            let content = PostContent {
                author: inner.profile.identity.author(),
                seq: inner.head_seq.load(Ordering::SeqCst) + 1,
                ts,
                expires_at: ts.millis() + inner.config.post_ttl.as_millis() as u64,
                body: body.to_string(),
                repost_of,
            };
            content.check(&inner.config.limits)?;
            let post = Post::sign(content, &inner.profile.identity)?;
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
        let view = self.view(&post);
        let _ = inner.events.send(NodeEvent::Post(view.clone()));
        tracing::debug!(seq = post.seq, "posted");
        Ok(view)
    }

    fn view(&self, post: &Post) -> PostView {
        let me = self.inner.profile.identity.author();
        let mine = post.author == me;
        let handle = mine.then(|| self.inner.profile.handle.to_string());
        PostView::new(post, handle, mine)
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
            .expired_posts_of(
                self.inner.profile.identity.author(),
                self.inner.clock.now_ms(),
                limit,
                before,
            )
            .await?;
        Ok(self.page(rows.into_iter().map(|s| s.post).collect(), limit))
    }

    pub fn whoami(&self) -> WhoAmI {
        let p = &self.inner.profile;
        WhoAmI {
            peer_id: p.identity.author(),
            handle: p.handle.to_string(),
            fingerprint: p.identity.author().fingerprint(),
            data_dir: p.dir.display().to_string(),
        }
    }

    pub async fn status(&self) -> Result<Status, NodeError> {
        let inner = &self.inner;
        let (stored, live) = inner.store.post_counts(inner.clock.now_ms()).await?;
        Ok(Status {
            peer_id: inner.profile.identity.author(),
            handle: inner.profile.handle.to_string(),
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
        })
    }

    /// Deletes other authors' expired posts now; returns how many.
    pub async fn collect_garbage(&self) -> Result<usize, NodeError> {
        const CHUNK: usize = 1000;
        let me = self.inner.profile.identity.author();
        let mut total = 0;
        loop {
            let n = self
                .inner
                .store
                .delete_expired(self.inner.clock.now_ms(), me, CHUNK)
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
            tokio::select! {
                _ = self.inner.cancel.cancelled() => return,
                _ = tick.tick() => match self.collect_garbage().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(deleted = n, "expired posts collected"),
                    Err(e) => tracing::warn!(error = %e, "garbage collection failed"),
                },
            }
        }
    }
}
