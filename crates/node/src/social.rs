//! Handles, follows and followers.
//!
//! - Handles: a name claim in the DHT (`/starling/name/<handle>`), first come first
//!   served; resolving one pins its key (trust on first use).
//! - Following is our own signed statement: stored, sent to the followee through an
//!   outbox retried until acknowledged, and announced by providing the followee's
//!   feed key in the DHT (so it works while the followee is offline).
//! - Followers are the statements we receive, plus those we ask the providers of our
//!   own feed key for.

use std::time::Duration;

use starling_core::records::{feed_key, name_key, profile_key};
use starling_core::{
    AuthorId, FollowContent, FollowStatement, Handle, NameClaim, NameClaimContent, ProfileContent,
    ProfileRecord,
};
use starling_net::{GetMode, PeerId, ResponseChannel, SocialRequest, SocialResponse};
use starling_store::Pin;

use crate::node::{Node, NodeError, NodeEvent};
use crate::view::{FollowView, HandleState};

/// Longest wait between two delivery attempts of a follow statement.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Outbox deliveries at once.
const OUTBOX_PARALLEL: usize = 8;

fn backoff(attempts: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << attempts.min(10))).min(MAX_BACKOFF)
}

impl Node {
    fn require_net(&self) -> Result<starling_net::Net, NodeError> {
        self.inner
            .net
            .clone()
            .ok_or_else(|| NodeError::Network("this node runs without network".into()))
    }

    // ---- handles --------------------------------------------------------------------

    /// Resolves a handle through the DHT and pins its key (trust on first use). A key
    /// different from the pinned one is an error, never silently accepted.
    pub async fn resolve(&self, handle: &Handle) -> Result<AuthorId, NodeError> {
        let net = self.require_net()?;
        let records = net.get_record(name_key(handle), GetMode::First).await?;
        let claim = records
            .iter()
            .find_map(|v| NameClaim::decode(v).ok())
            .ok_or_else(|| NodeError::UnknownHandle(handle.to_string()))?;
        let now = self.inner.clock.now_ms();
        match self
            .inner
            .store
            .pin(handle.to_string(), claim.owner, now)
            .await?
        {
            Pin::New | Pin::Same => {
                self.remember_handle(claim.owner, handle.to_string());
                Ok(claim.owner)
            }
            Pin::Conflict { pinned } => {
                tracing::warn!(%handle, %pinned, now = %claim.owner, "handle changed key");
                self.inner.metrics.inc("handle_key_changed");
                Err(NodeError::KeyChanged {
                    handle: handle.to_string(),
                    pinned,
                    now: claim.owner,
                })
            }
        }
    }

    fn remember_handle(&self, key: AuthorId, handle: String) {
        self.inner
            .handles
            .write()
            .expect("handles poisoned")
            .insert(key, handle);
    }

    /// Finds and verifies the handle of a key: its profile names a handle whose claim
    /// points back to the key. Pins it on success.
    pub(crate) async fn learn_handle(&self, key: AuthorId) -> Option<String> {
        if let Some(h) = self.handle_of(&key) {
            return Some(h);
        }
        let net = self.inner.net.clone()?;
        let profile = net
            .get_record(profile_key(&key), GetMode::First)
            .await
            .ok()?
            .iter()
            .find_map(|v| ProfileRecord::decode(v).ok())?;
        let handle = profile.handle.clone()?;
        let claims = net
            .get_record(name_key(&handle), GetMode::First)
            .await
            .ok()?;
        let owner = claims.iter().find_map(|v| NameClaim::decode(v).ok())?.owner;
        if owner != key {
            return None;
        }
        let now = self.inner.clock.now_ms();
        match self
            .inner
            .store
            .pin(handle.to_string(), key, now)
            .await
            .ok()?
        {
            Pin::New | Pin::Same => {
                self.remember_handle(key, handle.to_string());
                Some(handle.to_string())
            }
            Pin::Conflict { .. } => None,
        }
    }

    /// Claims our handle (or `new_handle`) in the DHT now. Taken handles are an
    /// error; a confirmed new handle becomes the profile's.
    pub async fn register(&self, new_handle: Option<&str>) -> Result<HandleState, NodeError> {
        let handle = match new_handle {
            Some(h) => Handle::parse(h.trim_start_matches('@'))?,
            None => self.handle(),
        };
        let state = self.try_claim(&handle).await;
        match &state {
            HandleState::Registered => {
                if handle != self.handle() {
                    self.inner
                        .profile
                        .write()
                        .expect("profile poisoned")
                        .set_handle(handle.clone())?;
                }
                self.set_handle_state(state.clone());
                self.publish_profile().await;
                Ok(state)
            }
            HandleState::Taken { by } => {
                if handle == self.handle() {
                    self.set_handle_state(state.clone());
                }
                Err(NodeError::HandleTaken {
                    handle: handle.to_string(),
                    by: *by,
                    fingerprint: by.fingerprint(),
                })
            }
            HandleState::Pending { reason } => Err(NodeError::Network(format!(
                "could not claim @{handle} yet: {reason}"
            ))),
            HandleState::Offline => {
                Err(NodeError::Network("this node runs without network".into()))
            }
        }
    }

    /// One claim attempt: is the handle held by another key? If not, store our claim.
    pub(crate) async fn try_claim(&self, handle: &Handle) -> HandleState {
        let Some(net) = self.inner.net.clone() else {
            return HandleState::Offline;
        };
        let key = name_key(handle);
        let held = match net.get_record(key.clone(), GetMode::AllRemote).await {
            Ok(h) => h,
            Err(e) => {
                return HandleState::Pending {
                    reason: e.to_string(),
                };
            }
        };
        // The earliest claim by another key wins (first come, first served).
        let rival = held
            .iter()
            .filter_map(|v| NameClaim::decode(v).ok())
            .filter(|c| c.owner != self.inner.me)
            .min_by_key(|c| (c.claimed_at, c.owner));
        if let Some(c) = rival {
            return HandleState::Taken { by: c.owner };
        }
        let identity = self
            .inner
            .profile
            .read()
            .expect("profile poisoned")
            .identity
            .clone();
        let claim = match NameClaim::sign(
            NameClaimContent {
                handle: handle.clone(),
                owner: self.inner.me,
                claimed_at: self.inner.clock.now_ms(),
            },
            &identity,
        ) {
            Ok(c) => c,
            Err(e) => {
                return HandleState::Pending {
                    reason: e.to_string(),
                };
            }
        };
        match net.put_record(key, claim.into_bytes()).await {
            Ok(()) => HandleState::Registered,
            Err(e) => HandleState::Pending {
                reason: format!("no peer stored the claim yet ({e})"),
            },
        }
    }

    /// Keeps trying to claim our handle until it is registered or found taken.
    pub(crate) async fn run_registration(&self) {
        let mut wait = Duration::from_millis(200);
        loop {
            if matches!(self.handle_state(), HandleState::Pending { .. }) {
                let state = self.try_claim(&self.handle()).await;
                if matches!(state, HandleState::Taken { .. }) {
                    tracing::warn!(handle = %self.handle(), %state, "handle is taken: choose another with `starling register <handle>`");
                }
                let registered = state == HandleState::Registered;
                // A register call may have settled it meanwhile: keep a final state.
                if matches!(self.handle_state(), HandleState::Pending { .. }) {
                    self.set_handle_state(state);
                }
                if registered {
                    tracing::info!(handle = %self.handle(), "handle registered");
                    self.publish_profile().await;
                }
            }
            if !matches!(self.handle_state(), HandleState::Pending { .. }) {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.inner.connected_kick.notified() => {}
            }
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }

    /// Publishes our signed profile record (handle when registered, newest post).
    pub(crate) async fn publish_profile(&self) {
        let Some(net) = self.inner.net.clone() else {
            return;
        };
        let head = self
            .inner
            .head_seq
            .load(std::sync::atomic::Ordering::SeqCst);
        let identity = self
            .inner
            .profile
            .read()
            .expect("profile poisoned")
            .identity
            .clone();
        let handle = (self.handle_state() == HandleState::Registered).then(|| self.handle());
        let Ok(record) = ProfileRecord::sign(
            ProfileContent {
                owner: self.inner.me,
                // HLC stamps only grow, across restarts too: a fine version number.
                version: self.inner.clock.stamp().0,
                handle,
                head_seq: head,
                updated_at: self.inner.clock.now_ms(),
            },
            &identity,
        ) else {
            return;
        };
        match net
            .put_record(profile_key(&self.inner.me), record.into_bytes())
            .await
        {
            Ok(()) => self
                .inner
                .published_head
                .store(head, std::sync::atomic::Ordering::SeqCst),
            Err(e) => tracing::debug!(error = %e, "profile not published yet"),
        }
    }

    // ---- follow ---------------------------------------------------------------------

    /// Parses a follow target: a key (`12D3KooW...`) or a handle (`alice`, `@alice`).
    async fn target(&self, target: &str) -> Result<(AuthorId, Option<String>), NodeError> {
        let t = target.trim();
        if let Ok(key) = t.parse::<AuthorId>() {
            return Ok((key, self.handle_of(&key)));
        }
        let handle = Handle::parse(t.trim_start_matches('@'))
            .map_err(|_| NodeError::BadTarget(t.to_string()))?;
        let key = self.resolve(&handle).await?;
        Ok((key, Some(handle.to_string())))
    }

    /// Follows a user by handle or key. Works while they are offline: the statement
    /// waits in the outbox, and we announce ourselves as a provider of their feed.
    pub async fn follow(&self, target: &str) -> Result<FollowView, NodeError> {
        let net = self.require_net()?;
        let (key, handle) = self.target(target).await?;
        if key == self.inner.me {
            return Err(NodeError::SelfFollow);
        }
        let statement = self.sign_follow(key, true)?;
        let since = statement.ts.millis();
        self.inner
            .store
            .put_following(statement, handle.clone(), self.inner.clock.now_ms())
            .await?;
        self.inner
            .following
            .write()
            .expect("following poisoned")
            .insert(key);
        net.subscribe(key).await?;
        self.inner.outbox_kick.notify_one();
        // Announce and catch up in the background: neither may block the user.
        let node = self.clone();
        self.spawn(async move {
            if let Some(net) = node.inner.net.clone()
                && let Err(e) = net.start_providing(feed_key(&key)).await
            {
                tracing::debug!(error = %e, "provider record not announced yet");
            }
            node.catch_up(key, None).await;
            if handle.is_none() {
                node.learn_handle(key).await;
            }
        });
        Ok(FollowView {
            peer_id: key,
            handle: self.handle_of(&key),
            fingerprint: key.fingerprint(),
            since_ms: since,
            pending: true,
        })
    }

    /// Unfollows: a signed unfollow statement (delivered like a follow), no more
    /// provider announcements, and their posts leave our store.
    pub async fn unfollow(&self, target: &str) -> Result<FollowView, NodeError> {
        let net = self.require_net()?;
        let t = target.trim();
        let key = match t.parse::<AuthorId>() {
            Ok(k) => k,
            Err(_) => {
                let handle = Handle::parse(t.trim_start_matches('@'))
                    .map_err(|_| NodeError::BadTarget(t.to_string()))?;
                // Our pin decides who "@handle" is for us; no lookup needed.
                self.inner
                    .store
                    .pinned_key(handle.to_string())
                    .await?
                    .ok_or_else(|| NodeError::NotFollowing(format!("@{handle}")))?
            }
        };
        if !self.is_following(&key) {
            return Err(NodeError::NotFollowing(
                self.handle_of(&key)
                    .map_or(key.to_string(), |h| format!("@{h}")),
            ));
        }
        let statement = self.sign_follow(key, false)?;
        let since = statement.ts.millis();
        self.inner
            .store
            .put_following(statement, None, self.inner.clock.now_ms())
            .await?;
        self.inner
            .following
            .write()
            .expect("following poisoned")
            .remove(&key);
        net.unsubscribe(key).await?;
        net.stop_providing(feed_key(&key)).await?;
        self.inner.store.delete_posts_of(key).await?;
        self.inner.outbox_kick.notify_one();
        Ok(FollowView {
            peer_id: key,
            handle: self.handle_of(&key),
            fingerprint: key.fingerprint(),
            since_ms: since,
            pending: true,
        })
    }

    fn sign_follow(
        &self,
        followee: AuthorId,
        following: bool,
    ) -> Result<FollowStatement, NodeError> {
        let identity = self
            .inner
            .profile
            .read()
            .expect("profile poisoned")
            .identity
            .clone();
        Ok(FollowStatement::sign(
            FollowContent {
                follower: self.inner.me,
                followee,
                following,
                ts: self.inner.clock.stamp(),
            },
            &identity,
        )?)
    }

    /// Whom we follow, newest first, with delivery state.
    pub async fn following_list(&self) -> Result<Vec<FollowView>, NodeError> {
        Ok(self
            .inner
            .store
            .following(true)
            .await?
            .into_iter()
            .map(|r| FollowView {
                peer_id: r.statement.followee,
                handle: self.handle_of(&r.statement.followee).or(r.handle),
                fingerprint: r.statement.followee.fingerprint(),
                since_ms: r.statement.ts.millis(),
                pending: r.delivered_at.is_none(),
            })
            .collect())
    }

    /// Who follows us, newest first.
    pub async fn followers_list(&self) -> Result<Vec<FollowView>, NodeError> {
        Ok(self
            .inner
            .store
            .followers(true)
            .await?
            .into_iter()
            .map(|r| FollowView {
                peer_id: r.statement.follower,
                handle: self.handle_of(&r.statement.follower),
                fingerprint: r.statement.follower.fingerprint(),
                since_ms: r.statement.ts.millis(),
                pending: false,
            })
            .collect())
    }

    /// Takes a follow statement about us (delivered, or fetched from a provider).
    /// Returns whether it was new.
    pub(crate) async fn accept_follower(&self, st: FollowStatement) -> Result<bool, String> {
        if st.followee != self.inner.me {
            return Err("this statement is not about me".into());
        }
        st.validate().map_err(|e| e.to_string())?;
        let new = self
            .inner
            .store
            .put_follower(st.clone(), self.inner.clock.now_ms())
            .await
            .map_err(|e| e.to_string())?;
        if new && st.following {
            let node = self.clone();
            let follower = st.follower;
            let since_ms = st.ts.millis();
            self.spawn(async move {
                let handle = node.learn_handle(follower).await;
                let _ = node.inner.events.send(NodeEvent::Follower(FollowView {
                    peer_id: follower,
                    handle,
                    fingerprint: follower.fingerprint(),
                    since_ms,
                    pending: false,
                }));
            });
        }
        Ok(new)
    }

    /// Answers `/starling/social/1` requests.
    pub(crate) async fn serve_social(
        &self,
        peer: PeerId,
        req: SocialRequest,
        channel: ResponseChannel<SocialResponse>,
    ) {
        let Some(net) = self.inner.net.clone() else {
            return;
        };
        let response = match req {
            SocialRequest::Follow { statement } => match FollowStatement::decode(&statement) {
                Err(e) => {
                    self.inner.metrics.reject("bad_follow");
                    SocialResponse::Refused {
                        reason: e.to_string(),
                    }
                }
                Ok(st) => match self.accept_follower(st).await {
                    Ok(_) => SocialResponse::Accepted,
                    Err(reason) => {
                        self.inner.metrics.reject("bad_follow");
                        tracing::info!(%peer, %reason, "refused a follow statement");
                        SocialResponse::Refused { reason }
                    }
                },
            },
            SocialRequest::GetFollow { followee } => match AuthorId::from_slice(&followee) {
                Err(_) => SocialResponse::Refused {
                    reason: "not a valid key".into(),
                },
                Ok(f) => {
                    let st = self.inner.store.following_of(f).await.ok().flatten();
                    SocialResponse::Statement {
                        statement: st.map(|r| serde_bytes::ByteBuf::from(r.statement.into_bytes())),
                    }
                }
            },
        };
        let _ = net.respond_social(channel, response).await;
    }

    /// Delivers due follow statements, with backoff, until cancelled.
    pub(crate) async fn run_outbox(&self) {
        loop {
            let due = self
                .inner
                .store
                .outbox_due(self.inner.clock.now_ms(), 64)
                .await
                .unwrap_or_default();
            for row in due {
                let followee = row.statement.followee;
                {
                    let mut d = self.inner.delivering.lock().expect("delivering poisoned");
                    if d.len() >= OUTBOX_PARALLEL || !d.insert(followee) {
                        continue;
                    }
                }
                let node = self.clone();
                self.spawn(async move {
                    node.deliver(row.statement, row.attempts).await;
                    node.inner
                        .delivering
                        .lock()
                        .expect("delivering poisoned")
                        .remove(&followee);
                    node.inner.outbox_kick.notify_one();
                });
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = self.inner.outbox_kick.notified() => {}
            }
        }
    }

    async fn deliver(&self, st: FollowStatement, attempts: u32) {
        let Some(net) = self.inner.net.clone() else {
            return;
        };
        let followee = st.followee;
        let ts = st.ts.0;
        let result = net
            .social(
                followee.peer_id(),
                SocialRequest::Follow {
                    statement: st.as_bytes().to_vec(),
                },
            )
            .await;
        let now = self.inner.clock.now_ms();
        match result {
            Ok(SocialResponse::Accepted) => {
                tracing::debug!(%followee, "follow statement acknowledged");
                let _ = self.inner.store.outbox_delivered(followee, ts, now).await;
            }
            other => {
                let error = match other {
                    Ok(SocialResponse::Refused { reason }) => format!("refused: {reason}"),
                    Ok(_) => "unexpected answer".to_string(),
                    Err(e) => e.to_string(),
                };
                let next = now + backoff(attempts).as_millis() as u64;
                tracing::debug!(%followee, %error, attempts, "follow statement not delivered; will retry");
                let _ = self
                    .inner
                    .store
                    .outbox_failed(followee, ts, next, error)
                    .await;
            }
        }
    }

    /// Asks the providers of our feed key for their follow statements: how we learn
    /// of followers who followed while we were offline.
    pub(crate) async fn discover_followers(&self) {
        let Some(net) = self.inner.net.clone() else {
            return;
        };
        let Ok(providers) = net.providers(feed_key(&self.inner.me)).await else {
            return;
        };
        let known: std::collections::HashSet<AuthorId> = self
            .inner
            .store
            .followers(false)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.statement.follower)
            .collect();
        for p in providers.into_iter().take(64) {
            let Ok(key) = AuthorId::from_peer_id(&p) else {
                continue;
            };
            if known.contains(&key) {
                continue;
            }
            let req = SocialRequest::GetFollow {
                followee: self.inner.me.as_bytes().to_vec(),
            };
            if let Ok(SocialResponse::Statement {
                statement: Some(raw),
            }) = net.social(p, req).await
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
