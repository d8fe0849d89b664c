//! Counters shown by `status`: what was rejected from the network and why, what was
//! ignored, and what went through; and the strikes that get a peer banned.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use starling_core::{AuthorId, Blame, Refusal};
use starling_net::PeerId;
use tokio::time::Instant;

/// Rejections from one peer within [`STRIKE_WINDOW`] that get it banned.
pub const STRIKES_TO_BAN: u32 = 20;
pub const STRIKE_WINDOW: Duration = Duration::from_secs(60);
pub const BAN_TIME: Duration = Duration::from_secs(600);
/// Peers with strikes remembered at once; the oldest window is forgotten first.
const MAX_STRIKE_PEERS: usize = 4096;

#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<&'static str, u64>>,
    /// Rejections per peer in the current window, for bans.
    strikes: Mutex<HashMap<PeerId, (u32, Instant)>>,
}

impl Metrics {
    pub fn add(&self, key: &'static str, n: u64) {
        if n > 0 {
            *self
                .counters
                .lock()
                .expect("metrics poisoned")
                .entry(key)
                .or_default() += n;
        }
    }

    pub fn inc(&self, key: &'static str) {
        self.add(key, 1);
    }

    /// Counts a refused input under `rejected.<code>` (someone is to blame) or
    /// `ignored.<code>`, and strikes whoever is to blame: the peer that sent it
    /// (`sender`, when known) or, for an equivocation, the post's author. Returns
    /// the peer that has now earned a ban, if any.
    pub fn refused(
        &self,
        why: &Refusal,
        sender: Option<PeerId>,
        author: Option<AuthorId>,
    ) -> Option<PeerId> {
        let to_strike = match why.blame() {
            Blame::Nobody => {
                self.add_keyed("ignored.", why.code());
                return None;
            }
            Blame::Sender => sender,
            Blame::Author => author.map(|a| a.peer_id()),
        };
        self.add_keyed("rejected.", why.code());
        let peer = to_strike?;
        tracing::info!(%peer, reason = why.code(), error = %why, "refused an input");
        self.strike(peer).then_some(peer)
    }

    fn add_keyed(&self, prefix: &'static str, code: &'static str) {
        // Codes are few and static; their prefixed names are interned once.
        static NAMES: Mutex<BTreeMap<(&str, &str), &'static str>> = Mutex::new(BTreeMap::new());
        let key = *NAMES
            .lock()
            .expect("names poisoned")
            .entry((prefix, code))
            .or_insert_with(|| Box::leak(format!("{prefix}{code}").into_boxed_str()));
        self.inc(key);
    }

    /// Counts a strike against `peer`; true when it has earned a ban.
    fn strike(&self, peer: PeerId) -> bool {
        let mut strikes = self.strikes.lock().expect("metrics poisoned");
        let now = Instant::now();
        // Full: forget windows that have ended, and if none has, the oldest. Only
        // then: a refusal costs a map lookup, not a sweep.
        if strikes.len() >= MAX_STRIKE_PEERS && !strikes.contains_key(&peer) {
            strikes.retain(|_, (_, since)| now.duration_since(*since) <= STRIKE_WINDOW);
            if strikes.len() >= MAX_STRIKE_PEERS
                && let Some(oldest) = strikes.iter().min_by_key(|(_, (_, t))| *t).map(|(p, _)| *p)
            {
                strikes.remove(&oldest);
            }
        }
        let e = strikes.entry(peer).or_insert((0, now));
        if now.duration_since(e.1) > STRIKE_WINDOW {
            *e = (0, now); // a new window
        }
        e.0 += 1;
        if e.0 >= STRIKES_TO_BAN {
            strikes.remove(&peer);
            return true;
        }
        false
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counters
            .lock()
            .expect("metrics poisoned")
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect()
    }

    /// Only the `rejected.*` counters, without the prefix.
    pub fn rejected(&self) -> BTreeMap<String, u64> {
        self.snapshot()
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix("rejected.").map(|r| (r.to_string(), v)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn strikes_ban_within_a_window_only() {
        let m = Metrics::default();
        let (p, q) = (PeerId::random(), PeerId::random());
        for _ in 1..STRIKES_TO_BAN {
            assert!(!m.strike(p));
        }
        // The window ends: the count starts again.
        tokio::time::advance(STRIKE_WINDOW + Duration::from_secs(1)).await;
        for _ in 1..STRIKES_TO_BAN {
            assert!(!m.strike(p));
            assert!(!m.strike(q));
        }
        assert!(m.strike(p), "the 20th strike within a minute bans");
        assert!(m.strike(q));
    }
}
