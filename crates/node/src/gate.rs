//! The gate for inbound requests (`/starling/sync/1`, `/starling/social/1`): each
//! peer gets a token bucket (a burst, then a steady rate) and a few requests in
//! flight at once. What is over is answered at once with a refusal and counted, so
//! a flooding peer costs a map entry and a short answer, never a queue, a task or a
//! database read. The map of peers is bounded: the longest idle is forgotten first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use starling_net::PeerId;
use tokio::time::Instant;

/// Requests a peer may make at once after being quiet.
pub(crate) const BURST: f64 = 64.0;
/// Requests per second a peer may keep making.
pub(crate) const RATE_PER_SEC: f64 = 32.0;
/// Requests of one peer being answered at once.
pub(crate) const IN_FLIGHT: u32 = 8;
/// Peers remembered.
const MAX_PEERS: usize = 4096;

struct Bucket {
    tokens: f64,
    at: Instant,
    in_flight: u32,
}

#[derive(Default)]
pub(crate) struct Gate {
    peers: Mutex<HashMap<PeerId, Bucket>>,
}

/// A request being answered; dropping it frees its slot.
pub(crate) struct Permit {
    gate: Arc<Gate>,
    peer: PeerId,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(b) = self
            .gate
            .peers
            .lock()
            .expect("gate poisoned")
            .get_mut(&self.peer)
        {
            b.in_flight = b.in_flight.saturating_sub(1);
        }
    }
}

impl Gate {
    /// A permit to answer one request of `peer`, or `None` when it asks too much.
    pub(crate) fn admit(self: &Arc<Self>, peer: PeerId) -> Option<Permit> {
        let now = Instant::now();
        let mut peers = self.peers.lock().expect("gate poisoned");
        if peers.len() >= MAX_PEERS && !peers.contains_key(&peer) {
            let idle = peers
                .iter()
                .filter(|(_, b)| b.in_flight == 0)
                .min_by_key(|(_, b)| b.at)
                .map(|(p, _)| *p);
            match idle {
                Some(p) => {
                    peers.remove(&p);
                }
                None => return None,
            }
        }
        let b = peers.entry(peer).or_insert(Bucket {
            tokens: BURST,
            at: now,
            in_flight: 0,
        });
        let refill = now.duration_since(b.at).as_secs_f64() * RATE_PER_SEC;
        b.tokens = (b.tokens + refill).min(BURST);
        b.at = now;
        if b.tokens < 1.0 || b.in_flight >= IN_FLIGHT {
            return None;
        }
        b.tokens -= 1.0;
        b.in_flight += 1;
        Some(Permit {
            gate: self.clone(),
            peer,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_a_steady_rate_and_a_few_at_once() {
        let gate = Arc::new(Gate::default());
        let (p, q) = (PeerId::random(), PeerId::random());
        let mut held = Vec::new();
        for _ in 0..IN_FLIGHT {
            held.push(gate.admit(p).expect("within the limits"));
        }
        assert!(gate.admit(p).is_none(), "no more at once");
        assert!(gate.admit(q).is_some(), "another peer is not affected");
        held.clear();
        let mut admitted = IN_FLIGHT as usize;
        while gate.admit(p).is_some() {
            admitted += 1;
        }
        assert_eq!(admitted, BURST as usize, "the burst, then nothing");
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        let mut more = 0;
        while gate.admit(p).is_some() {
            more += 1;
        }
        assert_eq!(more, RATE_PER_SEC as usize, "a second's worth");
    }
}
