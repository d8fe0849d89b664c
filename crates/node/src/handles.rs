//! Handles and the profile record.
//!
//! - [`Handles`] owns the state of our own handle's claim and the head seq last
//!   published in our profile record.
//! - A handle is a name claim in the DHT (`/starling/name/<handle>`), first come
//!   first served; resolving one pins its key (trust on first use).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use starling_core::records::{first_claim, name_key, profile_key};
use starling_core::{AuthorId, Handle, NameClaim, NameClaimContent, ProfileContent, ProfileRecord};
use starling_net::GetMode;
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
}

impl Handles {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(HandleState::Pending {
                reason: "waiting for peers".into(),
            }),
            published_head: AtomicU64::new(u64::MAX),
            connected: Notify::new(),
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

impl Online {
    /// Resolves a handle through the DHT and pins its key (trust on first use). A key
    /// different from the pinned one is an error, never silently accepted.
    pub(crate) async fn resolve(&self, handle: &Handle) -> Result<AuthorId, NodeError> {
        let s = &self.shared;
        let records = self
            .net
            .get_record(name_key(handle), GetMode::First)
            .await?;
        let claim = records
            .iter()
            .find_map(|v| NameClaim::decode(v).ok())
            .ok_or_else(|| NodeError::UnknownHandle(handle.to_string()))?;
        match s
            .store
            .pin(handle.to_string(), claim.owner, s.clock.now_ms())
            .await?
        {
            Pin::New | Pin::Same => {
                s.remember_name(claim.owner, handle.to_string());
                Ok(claim.owner)
            }
            Pin::Conflict { pinned } => {
                tracing::warn!(%handle, %pinned, now = %claim.owner, "handle changed key");
                s.metrics.inc("handle_key_changed");
                Err(NodeError::KeyChanged {
                    handle: handle.to_string(),
                    pinned,
                    now: claim.owner,
                })
            }
        }
    }

    /// Finds and verifies the handle of a key: its profile names a handle whose claim
    /// points back to the key. Pins it on success.
    pub(crate) async fn learn_handle(&self, key: AuthorId) -> Option<String> {
        let s = &self.shared;
        if let Some(h) = s.name_of(&key) {
            return Some(h);
        }
        let profile = self
            .net
            .get_record(profile_key(&key), GetMode::First)
            .await
            .ok()?
            .iter()
            .find_map(|v| ProfileRecord::decode(v).ok())?;
        let handle = profile.handle.clone()?;
        let claims = self
            .net
            .get_record(name_key(&handle), GetMode::First)
            .await
            .ok()?;
        let owner = claims.iter().find_map(|v| NameClaim::decode(v).ok())?.owner;
        if owner != key {
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
            Some(h) => Handle::parse(h.trim_start_matches('@'))?,
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

    /// One claim attempt: is the handle held by another key? If not, store our claim.
    async fn try_claim(&self, handle: &Handle) -> HandleState {
        let s = &self.shared;
        let key = name_key(handle);
        let held = match self.net.get_record(key.clone(), GetMode::AllRemote).await {
            Ok(h) => h,
            Err(e) => {
                return HandleState::Pending {
                    reason: e.to_string(),
                };
            }
        };
        // The earliest claim by another key wins (first come, first served).
        let rivals: Vec<NameClaim> = held
            .iter()
            .filter_map(|v| NameClaim::decode(v).ok())
            .filter(|c| c.owner != s.me)
            .collect();
        if let Some(c) = first_claim(&rivals) {
            return HandleState::Taken { by: c.owner };
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
            Err(e) => {
                return HandleState::Pending {
                    reason: e.to_string(),
                };
            }
        };
        match self.net.put_record(key, claim.into_bytes()).await {
            Ok(()) => HandleState::Registered,
            Err(e) => HandleState::Pending {
                reason: format!("no peer stored the claim yet ({e})"),
            },
        }
    }

    /// Keeps trying to claim our handle until it is registered or found taken.
    pub(crate) async fn run_registration(self: std::sync::Arc<Self>) {
        let s = &self.shared;
        let mut wait = Duration::from_millis(200);
        loop {
            if self.handles.is_pending() {
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
                }
            }
            if !self.handles.is_pending() {
                return;
            }
            tokio::select! {
                biased;
                _ = self.handles.connected.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }

    /// Publishes our signed profile record (handle when registered, newest post).
    pub(crate) async fn publish_profile(&self) {
        let s = &self.shared;
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
            Ok(()) => self.handles.published_head.store(head, Ordering::SeqCst),
            Err(e) => tracing::debug!(error = %e, "profile not published yet"),
        }
    }
}
