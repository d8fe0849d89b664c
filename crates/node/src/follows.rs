//! Follows and followers.
//!
//! - [`Follows`] owns whom we follow (in memory, for the intake) and which follow
//!   statements are being delivered right now.
//! - Following is our own signed statement: stored, sent to the followee through an
//!   outbox retried with backoff until acknowledged, and announced by providing the
//!   followee's feed key in the DHT (so it works while the followee is offline).
//! - Followers are the statements we receive, plus those we ask the providers of our
//!   own feed key for.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use starling_core::records::feed_key;
use starling_core::{AuthorId, FollowContent, FollowStatement, Handle, Refusal};
use starling_net::{PeerId, SocialRequest, SocialResponse};
use tokio::sync::Notify;

use crate::node::{NodeError, NodeEvent};
use crate::online::Online;
use crate::view::FollowView;

/// Longest wait between two delivery attempts of a follow statement.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Outbox deliveries at once.
const OUTBOX_PARALLEL: usize = 8;
/// Most targets in one batch of follows.
pub const MAX_FOLLOW_BATCH: usize = 256;
/// New followees set up at once in the background (provider record, first
/// catch-up, handle): a batch of follows must not start hundreds of DHT queries.
const SETUP_PARALLEL: usize = 4;
/// Longest wait of a batch's setups for the outbox's first delivery attempts.
const SETUP_DEFERRAL: Duration = Duration::from_secs(30);
/// Providers of our feed asked for their statement per discovery round.
const DISCOVER_PER_ROUND: usize = 64;

/// The wait before the next delivery attempt after `attempts` failed ones.
pub fn backoff(attempts: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << attempts.min(10))).min(MAX_BACKOFF)
}

/// Whom we follow, and the outbox's deliveries in flight.
pub(crate) struct Follows {
    /// Ordered: rounds over it visit authors in the same order every time.
    set: RwLock<BTreeSet<AuthorId>>,
    delivering: Mutex<HashSet<AuthorId>>,
    /// Wakes the outbox early (a followee came online, a new statement).
    kick: Notify,
}

impl Follows {
    pub(crate) fn new(set: BTreeSet<AuthorId>) -> Self {
        Self {
            set: RwLock::new(set),
            delivering: Mutex::new(HashSet::new()),
            kick: Notify::new(),
        }
    }
    pub(crate) fn contains(&self, a: &AuthorId) -> bool {
        self.set.read().expect("follows poisoned").contains(a)
    }
    pub(crate) fn len(&self) -> usize {
        self.set.read().expect("follows poisoned").len()
    }
    pub(crate) fn all(&self) -> Vec<AuthorId> {
        self.set
            .read()
            .expect("follows poisoned")
            .iter()
            .copied()
            .collect()
    }
    fn set(&self, a: AuthorId, following: bool) {
        let mut set = self.set.write().expect("follows poisoned");
        if following {
            set.insert(a);
        } else {
            set.remove(&a);
        }
    }
    /// Marks a delivery to `followee` as started; false when one is running or the
    /// outbox is at its limit.
    fn start_delivery(&self, followee: AuthorId) -> bool {
        let mut d = self.delivering.lock().expect("delivering poisoned");
        d.len() < OUTBOX_PARALLEL && d.insert(followee)
    }
    fn delivering_none(&self) -> bool {
        self.delivering
            .lock()
            .expect("delivering poisoned")
            .is_empty()
    }
    fn end_delivery(&self, followee: &AuthorId) {
        self.delivering
            .lock()
            .expect("delivering poisoned")
            .remove(followee);
        self.kick.notify_one();
    }
    /// Wakes the outbox.
    pub(crate) fn kick(&self) {
        self.kick.notify_one();
    }
}

impl Online {
    /// Who a follow target names: a key (`12D3KooW...`) as it is, or a handle
    /// (`alice`, `@alice`) resolved through the DHT (and pinned).
    async fn target(&self, target: &str) -> Result<(AuthorId, Option<String>), NodeError> {
        match Target::parse(target)? {
            Target::Key(key) => Ok((key, self.shared.name_of(&key))),
            Target::Handle(handle) => {
                let key = self.resolve(&handle).await?;
                Ok((key, Some(handle.to_string())))
            }
        }
    }

    /// Follows a user by handle or key. Works while they are offline: the statement
    /// waits in the outbox, and we announce ourselves as a provider of their feed.
    pub(crate) async fn follow(
        self: &std::sync::Arc<Self>,
        target: &str,
    ) -> Result<FollowView, NodeError> {
        self.follow_many(&[target.to_string()])
            .await?
            .pop()
            .expect("one result per target")
    }

    /// Follows several users at once, one result per target (in order): handles are
    /// resolved concurrently, the statements are stored in one transaction (one
    /// flush to disk) and handed to the outbox together; announcing each feed and the
    /// first catch-up run in the background, a few at a time.
    pub(crate) async fn follow_many(
        self: &std::sync::Arc<Self>,
        targets: &[String],
    ) -> Result<Vec<Result<FollowView, NodeError>>, NodeError> {
        let s = &self.shared;
        if targets.len() > MAX_FOLLOW_BATCH {
            return Err(NodeError::TooManyTargets {
                given: targets.len(),
                max: MAX_FOLLOW_BATCH,
            });
        }
        let resolved = futures::future::join_all(targets.iter().map(|t| self.target(t))).await;
        let mut results = Vec::with_capacity(targets.len());
        let mut batch = Vec::new();
        for r in resolved {
            let signed = r.and_then(|(key, handle)| {
                if key == s.me {
                    return Err(NodeError::SelfFollow);
                }
                Ok((self.sign_follow(key, true)?, handle))
            });
            results.push(signed.map(|(statement, handle)| {
                let key = statement.followee;
                let view = FollowView::new(key, s.name_of(&key), statement.ts.millis(), true);
                batch.push((statement, handle));
                view
            }));
        }
        if batch.is_empty() {
            return Ok(results);
        }
        // (followee, whether its handle is still to learn)
        let setups: Vec<(AuthorId, bool)> = batch
            .iter()
            .map(|(statement, handle)| (statement.followee, handle.is_none()))
            .collect();
        s.store.put_followings(batch, s.clock.now_ms()).await?;
        for (key, _) in &setups {
            s.follows.set(*key, true);
            self.net.subscribe(*key).await?;
        }
        s.follows.kick();
        // Announce and catch up in the background: neither may block the user, nor
        // the delivery of the statements (which catches up with each followee it
        // reaches, over the connection it made): those go first.
        let online = self.clone();
        s.tasks.spawn(async move {
            use futures::StreamExt;
            online.deliveries_done(SETUP_DEFERRAL).await;
            futures::stream::iter(setups)
                .for_each_concurrent(SETUP_PARALLEL, |(key, learn)| {
                    let online = online.clone();
                    async move {
                        if let Err(e) = online.net.start_providing(feed_key(&key)).await {
                            tracing::debug!(error = %e, "provider record not announced yet");
                        }
                        // An acknowledged statement already brought a catch-up from
                        // the followee; an unreachable one is caught up via providers.
                        if !online.delivered(key).await {
                            online.catch_up(key, None).await;
                        }
                        if learn {
                            online.learn_handle(key).await;
                        }
                    }
                })
                .await;
        });
        Ok(results)
    }

    /// Unfollows: a signed unfollow statement (delivered like a follow), no more
    /// provider announcements, and their posts leave our store.
    pub(crate) async fn unfollow(&self, target: &str) -> Result<FollowView, NodeError> {
        let s = &self.shared;
        let key = match Target::parse(target)? {
            Target::Key(k) => k,
            // Our pin decides who "@handle" is for us; no lookup needed.
            Target::Handle(handle) => s
                .store
                .pinned_key(handle.to_string())
                .await?
                .ok_or_else(|| NodeError::NotFollowing(format!("@{handle}")))?,
        };
        if !s.follows.contains(&key) {
            return Err(NodeError::NotFollowing(
                s.name_of(&key).map_or(key.to_string(), |h| format!("@{h}")),
            ));
        }
        let statement = self.sign_follow(key, false)?;
        let since = statement.ts.millis();
        s.store
            .put_following(statement, None, s.clock.now_ms())
            .await?;
        s.follows.set(key, false);
        self.net.unsubscribe(key).await?;
        self.net.stop_providing(feed_key(&key)).await?;
        s.store.delete_posts_of(key).await?;
        s.intake.forget(&key);
        s.follows.kick();
        Ok(FollowView::new(key, s.name_of(&key), since, true))
    }

    fn sign_follow(
        &self,
        followee: AuthorId,
        following: bool,
    ) -> Result<FollowStatement, NodeError> {
        let s = &self.shared;
        Ok(FollowStatement::sign(
            FollowContent {
                follower: s.me,
                followee,
                following,
                ts: s.clock.stamp(),
            },
            &s.identity(),
        )?)
    }

    /// Takes a follow statement about us (delivered, or fetched from a provider).
    /// Returns whether it was new.
    pub(crate) async fn accept_follower(
        self: &std::sync::Arc<Self>,
        st: FollowStatement,
    ) -> Result<bool, FollowRefusal> {
        let s = &self.shared;
        if st.followee != s.me {
            return Err(FollowRefusal::NotAboutUs);
        }
        st.validate()
            .map_err(|e| FollowRefusal::Invalid(Refusal::BadFollow(e)))?;
        let new = s.store.put_follower(st.clone(), s.clock.now_ms()).await?;
        if new && st.following {
            let online = self.clone();
            let follower = st.follower;
            let since_ms = st.ts.millis();
            s.tasks.spawn(async move {
                let handle = online.learn_handle(follower).await;
                let view = FollowView::new(follower, handle, since_ms, false);
                online.shared.announce(NodeEvent::Follower(view));
            });
        }
        Ok(new)
    }

    /// Answers a `/starling/social/1` request.
    pub(crate) async fn answer_social(
        self: &std::sync::Arc<Self>,
        peer: PeerId,
        req: SocialRequest,
    ) -> SocialResponse {
        let s = &self.shared;
        let Some(_permit) = s.gate.admit(peer) else {
            s.metrics.refused(&Refusal::Throttled, None, None);
            return SocialResponse::Refused {
                reason: Refusal::Throttled.to_string(),
            };
        };
        match req {
            SocialRequest::Follow { statement } => {
                let accepted = match FollowStatement::decode(&statement) {
                    Err(e) => Err(FollowRefusal::Invalid(Refusal::BadFollow(e.into()))),
                    // Only the follower delivers its statement (our outbox does so for
                    // ours): one peer cannot fill our followers with other keys.
                    Ok(st) if st.follower.peer_id() != peer => {
                        Err(FollowRefusal::Invalid(Refusal::NotFromFollower))
                    }
                    Ok(st) => self.accept_follower(st).await,
                };
                match accepted {
                    Ok(_) => SocialResponse::Accepted,
                    Err(why) => {
                        if let FollowRefusal::Invalid(r) = &why {
                            s.metrics.refused(r, None, None);
                        } else {
                            s.metrics.inc("rejected.bad_follow");
                        }
                        tracing::info!(%peer, reason = %why, "refused a follow statement");
                        SocialResponse::Refused {
                            reason: why.to_string(),
                        }
                    }
                }
            }
            SocialRequest::ClockNotice { post, now_ms } => {
                self.answer_clock_notice(peer, &post, now_ms)
            }
            SocialRequest::GetFollow { followee } => match AuthorId::from_slice(&followee) {
                Err(_) => SocialResponse::Refused {
                    reason: "not a valid key".into(),
                },
                Ok(f) => {
                    let st = s.store.following_of(f).await.ok().flatten();
                    SocialResponse::Statement {
                        statement: st.map(|r| serde_bytes::ByteBuf::from(r.statement.into_bytes())),
                    }
                }
            },
        }
    }

    /// Delivers due follow statements, with backoff, until the node stops.
    pub(crate) async fn run_outbox(self: std::sync::Arc<Self>) {
        let s = &self.shared;
        loop {
            let due = s
                .store
                .outbox_due(s.clock.now_ms(), 64)
                .await
                .unwrap_or_default();
            for row in due {
                let followee = row.statement.followee;
                if !s.follows.start_delivery(followee) {
                    continue;
                }
                let online = self.clone();
                s.tasks.spawn(async move {
                    let followed = online.deliver(row.statement, row.attempts).await;
                    online.shared.follows.end_delivery(&followee);
                    // We are connected to them now: their posts cost one sync request.
                    if followed {
                        online.catch_up(followee, None).await;
                    }
                });
            }
            tokio::select! {
                biased;
                _ = s.follows.kick.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    /// One delivery attempt. True when a follow (not an unfollow) was acknowledged.
    async fn deliver(&self, st: FollowStatement, attempts: u32) -> bool {
        let s = &self.shared;
        let followee = st.followee;
        let ts = st.ts.0;
        let result = self
            .net
            .social(
                followee.peer_id(),
                SocialRequest::Follow {
                    statement: st.as_bytes().to_vec(),
                },
            )
            .await;
        let now = s.clock.now_ms();
        match result {
            Ok(SocialResponse::Accepted) => {
                tracing::debug!(%followee, "follow statement acknowledged");
                let _ = s.store.outbox_delivered(followee, ts, now).await;
                st.following
            }
            other => {
                let error = match other {
                    Ok(SocialResponse::Refused { reason }) => format!("refused: {reason}"),
                    Ok(_) => "unexpected answer".to_string(),
                    Err(e) => e.to_string(),
                };
                let next = now + backoff(attempts).as_millis() as u64;
                tracing::debug!(%followee, %error, attempts, "follow statement not delivered; will retry");
                let _ = s.store.outbox_failed(followee, ts, next, error).await;
                false
            }
        }
    }

    /// Whether our latest statement about `followee` was acknowledged.
    async fn delivered(&self, followee: AuthorId) -> bool {
        matches!(
            self.shared.store.following_of(followee).await,
            Ok(Some(row)) if row.delivered_at.is_some()
        )
    }

    /// Waits until the outbox has no statement due (or `limit` passed).
    async fn deliveries_done(&self, limit: Duration) {
        let s = &self.shared;
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            match s.store.outbox_due(s.clock.now_ms(), 1).await {
                Ok(due) if due.is_empty() && s.follows.delivering_none() => return,
                Err(_) => return,
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// Retries at once the statement waiting for `followee`, if any.
    pub(crate) async fn retry_delivery_to(&self, followee: AuthorId) {
        if self
            .shared
            .store
            .outbox_retry_now(followee)
            .await
            .unwrap_or(false)
        {
            self.shared.follows.kick();
        }
    }

    /// Asks the providers of our feed key for their follow statements: how we learn
    /// of followers who followed while we were offline.
    pub(crate) async fn discover_followers(self: &std::sync::Arc<Self>) {
        let s = &self.shared;
        let Ok(providers) = self.net.providers(feed_key(&s.me)).await else {
            return;
        };
        let known: HashSet<AuthorId> = s
            .store
            .followers(false)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.statement.follower)
            .collect();
        for p in providers.into_iter().take(DISCOVER_PER_ROUND) {
            let Ok(key) = AuthorId::from_peer_id(&p) else {
                continue;
            };
            if known.contains(&key) {
                continue;
            }
            let req = SocialRequest::GetFollow {
                followee: s.me.as_bytes().to_vec(),
            };
            if let Ok(SocialResponse::Statement {
                statement: Some(raw),
            }) = self.net.social(p, req).await
                && let Ok(st) = FollowStatement::decode(&raw)
                && st.follower == key
            {
                match self.accept_follower(st).await {
                    Ok(true) => {
                        tracing::info!(follower = %key, "learned of a follower from the DHT")
                    }
                    Ok(false) => {}
                    Err(e) => tracing::debug!(%p, error = %e, "bad statement from provider"),
                }
            }
        }
    }
}

/// What a follow or unfollow names.
/// What a user names someone by: a key (`12D3KooW...`) or a handle (`alice`,
/// `@alice`).
pub(crate) enum Target {
    Key(AuthorId),
    Handle(Handle),
}

impl Target {
    /// A handle (`alice`, `@alice`) or a key, exactly: no white space around it (the
    /// command line and the web UI trim what people type).
    pub(crate) fn parse(t: &str) -> Result<Self, NodeError> {
        let bad = || NodeError::BadTarget(t.chars().take(80).collect());
        if t.trim() != t {
            return Err(bad());
        }
        if let Ok(key) = t.parse::<AuthorId>() {
            return Ok(Target::Key(key));
        }
        Handle::parse(t.strip_prefix('@').unwrap_or(t))
            .map(Target::Handle)
            .map_err(|_| bad())
    }
}

/// Why a follow statement about us was not taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FollowRefusal {
    #[error("this statement is not about me")]
    NotAboutUs,
    #[error(transparent)]
    Invalid(Refusal),
    #[error("cannot store it: {0}")]
    Store(#[from] starling_store::StoreError),
}
