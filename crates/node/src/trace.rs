//! Where a post's time goes: stamps of each stage a post passes through, on the
//! monotonic clock ([`starling_net::mono_ns`], one clock for every process of a
//! machine), so the benchmark can break a delivery's latency into stages across
//! the author's and the followers' nodes.
//!
//! Off unless the node is started with it (`starling up --trace-latency`); when
//! off, a stage costs one branch. When on, the newest [`KEPT`] stamps are kept
//! (the oldest dropped first) until someone takes them.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use starling_core::AuthorId;
pub use starling_net::mono_ns;

/// Stamps kept at most; beyond it the oldest go.
pub const KEPT: usize = 1 << 18;

/// The stages of a post's way from its author's API to a follower's live event.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The author's API took the request (stamped by the API).
    Api,
    /// The author's node signed it.
    Signed,
    /// The author's store committed it (on disk).
    Committed,
    /// Handed to the network for the followers.
    Sent,
    /// A follower's network took it in.
    Received,
    /// A follower's intake verified it (with its batch).
    Verified,
    /// A follower's store holds it.
    Stored,
    /// A follower's live event announced it.
    Event,
}

impl Stage {
    pub const ALL: [Stage; 8] = [
        Stage::Api,
        Stage::Signed,
        Stage::Committed,
        Stage::Sent,
        Stage::Received,
        Stage::Verified,
        Stage::Stored,
        Stage::Event,
    ];
}

/// One stamp: a post (author, seq) reached `stage` at `ns` on the monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Stamp {
    #[schema(value_type = String)]
    pub author: AuthorId,
    pub seq: u64,
    pub stage: Stage,
    pub ns: u64,
}

#[derive(Default)]
pub(crate) struct Trace {
    /// `None`: tracing is off.
    kept: Option<Mutex<VecDeque<Stamp>>>,
}

impl Trace {
    pub(crate) fn new(on: bool) -> Self {
        Self {
            kept: on.then(|| Mutex::new(VecDeque::new())),
        }
    }

    pub(crate) fn on(&self) -> bool {
        self.kept.is_some()
    }

    /// Records that `(author, seq)` reached `stage` at `ns` (0: unknown, skipped).
    pub(crate) fn stamp(&self, author: AuthorId, seq: u64, stage: Stage, ns: u64) {
        let Some(kept) = &self.kept else { return };
        if ns == 0 {
            return;
        }
        let mut k = kept.lock().expect("trace poisoned");
        if k.len() >= KEPT {
            k.pop_front();
        }
        k.push_back(Stamp {
            author,
            seq,
            stage,
            ns,
        });
    }

    /// Takes every stamp kept so far (empty when tracing is off).
    pub(crate) fn take(&self) -> Vec<Stamp> {
        match &self.kept {
            Some(k) => k.lock().expect("trace poisoned").drain(..).collect(),
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_keeps_nothing_and_on_keeps_the_newest() {
        let a = starling_core::Identity::generate().author();
        let off = Trace::new(false);
        off.stamp(a, 1, Stage::Api, 5);
        assert!(off.take().is_empty());

        let on = Trace::new(true);
        for i in 0..(KEPT as u64 + 3) {
            on.stamp(a, i, Stage::Sent, i + 1);
        }
        on.stamp(a, 9, Stage::Event, 0);
        let got = on.take();
        assert_eq!(got.len(), KEPT);
        assert_eq!(got[0].seq, 3, "the oldest went first");
        assert!(on.take().is_empty(), "taken once");
    }
}
