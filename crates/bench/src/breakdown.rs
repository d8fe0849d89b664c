//! The latency breakdown of deliveries: from the stage stamps the nodes kept
//! (`starling_node::trace`, one monotonic clock for the whole machine), how long
//! each step from the author's API to a follower's live event took, and which step
//! dominates the slowest deliveries.

use std::collections::HashMap;

use serde::Serialize;
use starling_node::trace::{Stage, Stamp};

use crate::stats::{quantile, summarize};

/// The steps between consecutive stages, named by where they end.
pub const STEPS: [(Stage, Stage, &str); 7] = [
    (Stage::Api, Stage::Signed, "API received → signed"),
    (Stage::Signed, Stage::Committed, "signed → committed"),
    (Stage::Committed, Stage::Sent, "committed → sent"),
    (Stage::Sent, Stage::Received, "sent → received"),
    (Stage::Received, Stage::Verified, "received → verified"),
    (Stage::Verified, Stage::Stored, "verified → stored"),
    (Stage::Stored, Stage::Event, "stored → event"),
];

/// Stage times of one post at one node.
pub type Stages = HashMap<Stage, u64>;

/// Groups stamps by seq (of one author), keeping the first stamp of each stage.
pub fn by_seq(stamps: &[Stamp]) -> HashMap<u64, Stages> {
    let mut out: HashMap<u64, Stages> = HashMap::new();
    for s in stamps {
        out.entry(s.seq).or_default().entry(s.stage).or_insert(s.ns);
    }
    out
}

#[derive(Debug, Clone, Serialize)]
pub struct StepSummary {
    pub step: String,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Mean over the slowest 1% of deliveries.
    pub slowest_mean_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Breakdown {
    /// Deliveries with every stage stamped.
    pub deliveries: usize,
    pub steps: Vec<StepSummary>,
    /// The step that took longest in most of the slowest 1% of deliveries, and in
    /// how many of them.
    pub dominant: Option<(String, usize, usize)>,
}

/// `author` holds the author's stamps per seq; `followers` each follower's stamps
/// of the author's posts per seq. Deliveries missing a stage are left out.
pub fn compute(author: &HashMap<u64, Stages>, followers: &[HashMap<u64, Stages>]) -> Breakdown {
    // Per delivery: each step's duration (ms) and the total.
    let mut rows: Vec<([f64; 7], f64)> = Vec::new();
    for f in followers {
        for (seq, theirs) in f {
            let Some(ours) = author.get(seq) else {
                continue;
            };
            let at = |s: Stage| ours.get(&s).or_else(|| theirs.get(&s)).copied();
            let times: Option<Vec<u64>> = Stage::ALL.iter().map(|s| at(*s)).collect();
            let Some(t) = times else { continue };
            let mut d = [0.0; 7];
            for (k, w) in t.windows(2).enumerate() {
                // "Sent" is stamped when the network task answers the author's
                // node; the follower may have the post by then (0, not negative).
                d[k] = w[1].saturating_sub(w[0]) as f64 / 1e6;
            }
            let total = t[7].saturating_sub(t[0]) as f64 / 1e6;
            rows.push((d, total));
        }
    }
    rows.sort_by(|a, b| a.1.total_cmp(&b.1));
    let slow_from = rows.len() - rows.len().div_ceil(100);
    let slowest = &rows[slow_from..];
    let steps = STEPS
        .iter()
        .enumerate()
        .map(|(k, (_, _, name))| {
            let mut v: Vec<f64> = rows.iter().map(|r| r.0[k]).collect();
            v.sort_by(|a, b| a.total_cmp(b));
            StepSummary {
                step: name.to_string(),
                p50_ms: quantile(&v, 0.5),
                p99_ms: quantile(&v, 0.99),
                slowest_mean_ms: summarize(&slowest.iter().map(|r| r.0[k]).collect::<Vec<_>>())
                    .mean,
            }
        })
        .collect();
    let mut wins = [0usize; 7];
    for (d, _) in slowest {
        let k = (0..7).max_by(|&a, &b| d[a].total_cmp(&d[b])).unwrap_or(0);
        wins[k] += 1;
    }
    let dominant = (0..7)
        .max_by_key(|&k| wins[k])
        .filter(|_| !slowest.is_empty())
        .map(|k| (STEPS[k].2.to_string(), wins[k], slowest.len()));
    Breakdown {
        deliveries: rows.len(),
        steps,
        dominant,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_add_up_and_the_slowest_step_is_named() {
        let mk = |v: &[(Stage, u64)]| -> Stages { v.iter().copied().collect() };
        let ms = 1_000_000;
        let mut author = HashMap::new();
        let mut follower = HashMap::new();
        for seq in 1..=200u64 {
            author.insert(
                seq,
                mk(&[
                    (Stage::Api, 0),
                    (Stage::Signed, ms),
                    (Stage::Committed, 2 * ms),
                    (Stage::Sent, 3 * ms),
                ]),
            );
            // The slowest deliveries wait in "verified → stored".
            let slow = if seq > 198 { 50 * ms } else { 0 };
            follower.insert(
                seq,
                mk(&[
                    (Stage::Received, 4 * ms),
                    (Stage::Verified, 5 * ms),
                    (Stage::Stored, 6 * ms + slow),
                    (Stage::Event, 7 * ms + slow),
                ]),
            );
        }
        // A delivery missing a stage is left out.
        follower.get_mut(&7).unwrap().remove(&Stage::Verified);
        let b = compute(&author, &[follower]);
        assert_eq!(b.deliveries, 199);
        assert_eq!(b.steps.len(), 7);
        assert!((b.steps[0].p50_ms - 1.0).abs() < 1e-9);
        let (step, wins, of) = b.dominant.unwrap();
        assert_eq!(step, "verified → stored");
        assert_eq!((wins, of), (2, 2));
    }
}
