//! Handles and the profile record.
//!
//! - [`Handles`] owns the state of our own handle's claim and the head seq last
//!   published in our profile record.
//! - A handle is a name claim in the DHT (`/starling/name/<handle>`). A node keeps
//!   the first claim for a handle it stores; who holds a handle is asked of several
//!   peers and needs agreeing answers ([`ClaimTally`]); resolving one pins its key
//!   (trust on first use).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use starling_core::records::{ClaimTally, MIN_VOICES, name_key, profile_key};
use starling_core::{AuthorId, Handle, NameClaim, NameClaimContent, ProfileContent, ProfileRecord};
use starling_net::GetMode;
use starling_net::records::CLAIM_RENEWAL;
use starling_store::Pin;
use tokio::sync::Notify;

use crate::node::NodeError;
use crate::online::Online;
use crate::view::HandleState;

pub(crate) struct Handles {
    state: Mutex<HandleState>,
    /// The head seq last published in our profile record.
    published_head: AtomicU64,
    /// Wakes the registration task (a peer connected).
    connected: Notify,
    /// Handle lookups of other users at once: a burst of new followers or
    /// followees must not start two DHT queries each all at the same time.
    lookups: tokio::sync::Semaphore,
}

/// Most handle lookups of other users running at once.
const LOOKUPS_PARALLEL: usize = 4;

impl Handles {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(HandleState::Pending {
                reason: "waiting for peers".into(),
            }),
            published_head: AtomicU64::new(u64::MAX),
            connected: Notify::new(),
            lookups: tokio::sync::Semaphore::new(LOOKUPS_PARALLEL),
        }
    }
    pub(crate) fn state(&self) -> HandleState {
        self.state.lock().expect("state poisoned").clone()
    }
    fn set_state(&self, s: HandleState) {
        *self.state.lock().expect("state poisoned") = s;
    }
    fn is_pending(&self) -> bool {
        matches!(self.state(), HandleState::Pending { .. })
    }
    /// Whether our profile record is behind our newest post.
    pub(crate) fn profile_behind(&self, head: u64) -> bool {
        self.published_head.load(Ordering::SeqCst) != head
    }
    /// A peer connected: a pending claim may go through now.
    pub(crate) fn peer_connected(&self) {
        self.connected.notify_waiters();
    }
}

/// The shortest wait before a pending claim is tried again because a peer connected.
const RETRY_ON_CONNECT: Duration = Duration::from_secs(2);

/// `Taken` when another key has at least [`MIN_VOICES`] answers and more than ours.
fn taken(tally: &ClaimTally, me: &AuthorId) -> Option<HandleState> {
    let (rival, n) = tally.strongest_rival(me)?;
    (n >= MIN_VOICES && n > tally.voices(me)).then_some(HandleState::Taken { by: rival })
}

/// Why the answers about a handle name no holder, for the user.
fn undecided(tally: &ClaimTally, me: Option<&AuthorId>) -> String {
    let ours = me.and_then(|me| Some((tally.strongest_rival(me)?.1, tally.voices(me))));
    match (tally.total(), ours) {
        (0, _) => "no peer holds a claim for it yet".into(),
        (1, _) => format!("only one answer found; a handle needs {MIN_VOICES} that agree"),
        (_, Some((rival, mine))) => {
            format!("peers disagree: {rival} answer(s) name another key, {mine} ours")
        }
        (total, None) => format!("peers disagree: {total} answers name different keys"),
    }
}

impl Online {
    /// Asks the network who holds `handle`: the valid claims held by each answering
    /// peer and by our own store, counted by owner.
    async fn poll_claims(&self, handle: &Handle) -> Result<ClaimTally, NodeError> {
        let answers = self.net.get_record(name_key(handle), GetMode::Poll).await?;
        let claims: Vec<NameClaim> = answers
            .iter()
            .filter_map(|a| NameClaim::decode(&a.value).ok())
            .filter(|c| c.handle == *handle)
            .collect();
        Ok(ClaimTally::count(&claims))
    }

    /// Resolves a handle through the DHT and pins its key (trust on first use). No
    /// single answer is believed (see [`ClaimTally`]); a key different from the pinned
    /// one is an error, never silently accepted.
    pub(crate) async fn resolve(&self, handle: &Handle) -> Result<AuthorId, NodeError> {
        let s = &self.shared;
        let tally = self.poll_claims(handle).await?;
        let owner = match tally.holder() {
            Some(owner) => owner,
            None if tally.total() == 0 => {
                return Err(NodeError::UnknownHandle(handle.to_string()));
            }
            // Undecided: a key we trusted before stands if some peer still names it.
            None => match s.store.pinned_key(handle.to_string()).await? {
                Some(pinned) if tally.voices(&pinned) > 0 => pinned,
                _ => {
                    s.metrics.inc("handle_unconfirmed");
                    return Err(NodeError::HandleUnconfirmed {
                        handle: handle.to_string(),
                        reason: undecided(&tally, None),
                    });
                }
            },
        };
        match s
            .store
            .pin(handle.to_string(), owner, s.clock.now_ms())
            .await?
        {
            Pin::New | Pin::Same => {
                s.remember_name(owner, handle.to_string());
                Ok(owner)
            }
            Pin::Conflict { pinned } => {
                tracing::warn!(%handle, %pinned, now = %owner, "handle changed key");
                s.metrics.inc("handle_key_changed");
                Err(NodeError::KeyChanged {
                    handle: handle.to_string(),
                    pinned,
                    now: owner,
                })
            }
        }
    }

    /// Finds and verifies the handle of a key: its profile names a handle that the
    /// network says the key holds. Pins it on success.
    pub(crate) async fn learn_handle(&self, key: AuthorId) -> Option<String> {
        let s = &self.shared;
        if let Some(h) = s.name_of(&key) {
            return Some(h);
        }
        let _turn = self.handles.lookups.acquire().await.ok()?;
        // Learned by another lookup while this one waited?
        if let Some(h) = s.name_of(&key) {
            return Some(h);
        }
        let profile = self
            .net
            .get_record(profile_key(&key), GetMode::First)
            .await
            .ok()?
            .iter()
            .find_map(|a| ProfileRecord::decode(&a.value).ok())?;
        let handle = profile.handle.clone()?;
        if self.poll_claims(&handle).await.ok()?.holder() != Some(key) {
            return None;
        }
        match s
            .store
            .pin(handle.to_string(), key, s.clock.now_ms())
            .await
            .ok()?
        {
            Pin::New | Pin::Same => {
                s.remember_name(key, handle.to_string());
                Some(handle.to_string())
            }
            Pin::Conflict { .. } => None,
        }
    }

    /// Claims our handle (or `new_handle`) in the DHT now. Taken handles are an
    /// error; a confirmed new handle becomes the profile's.
    pub(crate) async fn register(
        &self,
        new_handle: Option<&str>,
    ) -> Result<HandleState, NodeError> {
        let s = &self.shared;
        let handle = match new_handle {
            Some(h) => Handle::parse(h.strip_prefix('@').unwrap_or(h))?,
            None => s.handle(),
        };
        let state = self.try_claim(&handle).await;
        match &state {
            HandleState::Registered => {
                if handle != s.handle() {
                    s.set_handle(handle.clone())?;
                }
                self.handles.set_state(state.clone());
                self.publish_profile().await;
                Ok(state)
            }
            HandleState::Taken { by } => {
                if handle == s.handle() {
                    self.handles.set_state(state.clone());
                }
                Err(NodeError::HandleTaken {
                    handle: handle.to_string(),
                    by: *by,
                    fingerprint: by.fingerprint(),
                })
            }
            HandleState::Pending { reason } => Err(NodeError::ClaimPending {
                handle: handle.to_string(),
                reason: reason.clone(),
            }),
            HandleState::Offline => Err(NodeError::Offline),
        }
    }

    /// One claim attempt. The handle is taken when more peers name another key than
    /// ours (at least [`MIN_VOICES`]); otherwise we store our claim and ask again: it
    /// is registered once the peers holding it outnumber those naming any other key.
    /// The self-declared `claimed_at` of a rival decides nothing: a backdated claim
    /// served by one peer, even the claimant's own node, is one voice.
    async fn try_claim(&self, handle: &Handle) -> HandleState {
        let s = &self.shared;
        let pending = |reason: String| HandleState::Pending { reason };
        let before = match self.poll_claims(handle).await {
            Ok(t) => t,
            Err(e) => return pending(e.to_string()),
        };
        if let Some(state) = taken(&before, &s.me) {
            return state;
        }
        let claim = match NameClaim::sign(
            NameClaimContent {
                handle: handle.clone(),
                owner: s.me,
                claimed_at: s.clock.now_ms(),
            },
            &s.identity(),
        ) {
            Ok(c) => c,
            Err(e) => return pending(e.to_string()),
        };
        if let Err(e) = self
            .net
            .put_record(name_key(handle), claim.into_bytes())
            .await
        {
            return pending(format!("no peer stored the claim yet ({e})"));
        }
        let after = match self.poll_claims(handle).await {
            Ok(t) => t,
            Err(e) => return pending(e.to_string()),
        };
        if after.holder() == Some(s.me) {
            return HandleState::Registered;
        }
        taken(&after, &s.me).unwrap_or_else(|| pending(undecided(&after, Some(&s.me))))
    }

    /// Keeps trying to claim our handle until it is registered or found taken, then
    /// renews the claim every [`CLAIM_RENEWAL`] while the node runs.
    pub(crate) async fn run_registration(self: std::sync::Arc<Self>) {
        let s = &self.shared;
        let mut wait = Duration::from_millis(200);
        loop {
            match self.handles.state() {
                HandleState::Pending { .. } => {
                    let state = self.try_claim(&s.handle()).await;
                    if matches!(state, HandleState::Taken { .. }) {
                        tracing::warn!(handle = %s.handle(), %state, "handle is taken: choose another with `starling register <handle>`");
                    }
                    let registered = state == HandleState::Registered;
                    // A register call may have settled it meanwhile: keep a final state.
                    if self.handles.is_pending() {
                        self.handles.set_state(state);
                    }
                    if registered {
                        tracing::info!(handle = %s.handle(), "handle registered");
                        self.publish_profile().await;
                        continue;
                    }
                    // A new connection may bring the peers the claim lacked, but not
                    // more often than every couple of seconds: a node making many
                    // connections would otherwise claim again at each one.
                    let tried = tokio::time::Instant::now();
                    tokio::select! {
                        biased;
                        _ = self.handles.connected.notified() => {
                            tokio::time::sleep_until(tried + wait.min(RETRY_ON_CONNECT)).await;
                        }
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
                HandleState::Registered => {
                    tokio::time::sleep(CLAIM_RENEWAL).await;
                    // A renewal that cannot reach peers keeps the handle; one that
                    // finds it held by another key reports that.
                    match self.try_claim(&s.handle()).await {
                        HandleState::Registered => self.publish_profile().await,
                        taken @ HandleState::Taken { .. } => {
                            tracing::warn!(handle = %s.handle(), state = %taken, "handle lost at renewal");
                            self.handles.set_state(taken);
                        }
                        _ => {}
                    }
                }
                HandleState::Taken { .. } | HandleState::Offline => return,
            }
        }
    }

    /// Publishes our signed profile record (handle when registered, newest post).
    pub(crate) async fn publish_profile(&self) {
        let s = &self.shared;
        // A restored key's record must not announce head 0 over the real one.
        if !*s.head_known.borrow() {
            return;
        }
        let head = s.head_seq();
        let handle = (self.handles.state() == HandleState::Registered).then(|| s.handle());
        let Ok(record) = ProfileRecord::sign(
            ProfileContent {
                owner: s.me,
                // HLC stamps only grow, across restarts too: a fine version number.
                version: s.clock.stamp().0,
                handle,
                head_seq: head,
                updated_at: s.clock.now_ms(),
            },
            &s.identity(),
        ) else {
            return;
        };
        match self
            .net
            .put_record(profile_key(&s.me), record.into_bytes())
            .await
        {
            Ok(()) => {
                self.handles.published_head.store(head, Ordering::SeqCst);
                s.metrics.inc("profile.published");
            }
            Err(e) => tracing::debug!(error = %e, "profile not published yet"),
        }
    }
}
