//! Counters shown by `status`: what was rejected from the network and why, what was
//! ignored, and what went through.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use starling_core::PostError;
use starling_net::PeerId;

#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<String, u64>>,
    /// Rejections per peer in the current window, for bans.
    strikes: Mutex<HashMap<PeerId, (u32, Instant)>>,
}

/// Rejections from one peer within [`STRIKE_WINDOW`] that get it banned.
pub const STRIKES_TO_BAN: u32 = 20;
pub const STRIKE_WINDOW: Duration = Duration::from_secs(60);
pub const BAN_TIME: Duration = Duration::from_secs(600);

impl Metrics {
    pub fn add(&self, key: &str, n: u64) {
        if n > 0 {
            *self
                .counters
                .lock()
                .expect("metrics poisoned")
                .entry(key.to_string())
                .or_default() += n;
        }
    }

    pub fn inc(&self, key: &str) {
        self.add(key, 1);
    }

    /// Counts a rejected input, by reason.
    pub fn reject(&self, reason: &str) {
        self.inc(&format!("rejected.{reason}"));
    }

    /// Counts a strike against `peer`; true when it has earned a ban.
    pub fn strike(&self, peer: PeerId) -> bool {
        let mut strikes = self.strikes.lock().expect("metrics poisoned");
        let now = Instant::now();
        let e = strikes.entry(peer).or_insert((0, now));
        if now.duration_since(e.1) > STRIKE_WINDOW {
            *e = (0, now);
        }
        e.0 += 1;
        if e.0 >= STRIKES_TO_BAN {
            strikes.remove(&peer);
            return true;
        }
        false
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counters.lock().expect("metrics poisoned").clone()
    }

    /// Only the `rejected.*` counters, without the prefix.
    pub fn rejected(&self) -> BTreeMap<String, u64> {
        self.snapshot()
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix("rejected.").map(|r| (r.to_string(), v)))
            .collect()
    }
}

/// A short, stable name for why a post was refused.
pub fn reason(e: &PostError) -> &'static str {
    match e {
        PostError::EmptyBody => "empty_body",
        PostError::BodyTooLong { .. } => "body_too_long",
        PostError::ControlCharacter { .. } => "control_character",
        PostError::ZeroSeq => "bad_seq",
        PostError::BadRepostRef => "bad_repost",
        PostError::ExpiresBeforeTimestamp { .. } => "bad_expiry",
        PostError::LifetimeTooLong { .. } => "lifetime_too_long",
        PostError::FromFuture { .. } => "from_future",
        PostError::Expired { .. } => "expired",
        PostError::Signature(_) => "bad_signature",
        PostError::Equivocation { .. } => "equivocation",
        PostError::Malformed(_) => "malformed",
    }
}
