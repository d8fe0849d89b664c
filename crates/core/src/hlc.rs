//! The hybrid logical clock.
//!
//! A [`Timestamp`] packs wall-clock milliseconds (upper 48 bits) and a logical counter
//! (lower 16 bits) into one `u64`, so timestamps compare as plain integers and a
//! counter overflow simply carries into the millisecond. The clock never runs
//! backwards, whatever the physical clock does, and it moves past every timestamp it
//! has observed from others.

use serde::{Deserialize, Serialize};
use thiserror::Error;

const LOGICAL_BITS: u32 = 16;

/// A packed HLC timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn from_parts(millis: u64, counter: u16) -> Self {
        Self((millis << LOGICAL_BITS) | counter as u64)
    }
    /// Wall-clock milliseconds since the Unix epoch.
    pub fn millis(self) -> u64 {
        self.0 >> LOGICAL_BITS
    }
    pub fn counter(self) -> u16 {
        (self.0 & 0xffff) as u16
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClockError {
    #[error("timestamp is {ahead_ms} ms ahead of our clock (at most {max_ms} ms allowed)")]
    TooFarAhead { ahead_ms: u64, max_ms: u64 },
}

/// A hybrid logical clock. Physical time is always passed in, so the clock is pure.
#[derive(Debug, Clone, Default)]
pub struct Hlc {
    last: u64,
}

impl Hlc {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts after a timestamp issued before (e.g. the newest one in the store), so a
    /// restarted node never reissues an old timestamp even if its clock went back.
    pub fn starting_after(ts: Timestamp) -> Self {
        Self { last: ts.0 }
    }

    /// A new timestamp, strictly greater than every one issued or observed before.
    pub fn now(&mut self, physical_ms: u64) -> Timestamp {
        let physical = physical_ms.min(u64::MAX >> LOGICAL_BITS) << LOGICAL_BITS;
        self.last = if physical > self.last {
            physical
        } else {
            self.last.saturating_add(1)
        };
        Timestamp(self.last)
    }

    /// Takes a timestamp seen from another node into account, unless it lies more than
    /// `max_skew_ms` in our future (then it is refused and the clock is unchanged).
    pub fn observe(
        &mut self,
        remote: Timestamp,
        physical_ms: u64,
        max_skew_ms: u64,
    ) -> Result<(), ClockError> {
        let limit = physical_ms.saturating_add(max_skew_ms);
        if remote.millis() > limit {
            return Err(ClockError::TooFarAhead {
                ahead_ms: remote.millis() - physical_ms,
                max_ms: max_skew_ms,
            });
        }
        self.last = self.last.max(remote.0);
        Ok(())
    }

    pub fn last(&self) -> Timestamp {
        Timestamp(self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn packs_millis_and_counter() {
        let t = Timestamp::from_parts(1_700_000_000_123, 7);
        assert_eq!(t.millis(), 1_700_000_000_123);
        assert_eq!(t.counter(), 7);
    }

    #[test]
    fn clock_jump_backwards_keeps_order() {
        let mut c = Hlc::new();
        let a = c.now(10_000);
        let b = c.now(5_000); // the system clock was set back 5 s
        let d = c.now(5_001);
        assert!(a < b && b < d);
        assert_eq!(b.millis(), 10_000);
        let e = c.now(20_000);
        assert_eq!(e, Timestamp::from_parts(20_000, 0));
    }

    #[test]
    fn observe_moves_past_remote_and_refuses_far_future() {
        let mut c = Hlc::new();
        c.now(1_000);
        c.observe(Timestamp::from_parts(1_500, 3), 1_000, 1_000)
            .unwrap();
        assert!(c.now(1_000) > Timestamp::from_parts(1_500, 3));
        let before = c.last();
        assert_eq!(
            c.observe(Timestamp::from_parts(9_000, 0), 1_000, 1_000),
            Err(ClockError::TooFarAhead {
                ahead_ms: 8_000,
                max_ms: 1_000
            })
        );
        assert_eq!(c.last(), before);
    }

    proptest! {
        /// Whatever the physical clock does (jumps back, stalls, leaps), every
        /// timestamp is strictly greater than the one before, and never behind the
        /// physical clock.
        #[test]
        fn strictly_monotonic_under_any_physical_clock(
            steps in proptest::collection::vec((0u64..1u64 << 44, any::<bool>(), 0u64..1u64 << 44), 1..300)
        ) {
            let mut c = Hlc::new();
            let mut prev = Timestamp(0);
            for (physical, observe, remote) in steps {
                if observe {
                    let _ = c.observe(Timestamp(remote << 16), physical, 60_000);
                }
                let t = c.now(physical);
                prop_assert!(t > prev, "{t:?} <= {prev:?}");
                prop_assert!(t.millis() >= physical);
                prev = t;
            }
        }

        /// A burst of more than 65,536 stamps within one millisecond still increases.
        #[test]
        fn counter_overflow_carries(start in 0u64..1u64 << 40, n in 65_530usize..65_600) {
            let mut c = Hlc::new();
            let mut prev = c.now(start);
            for _ in 0..n {
                let t = c.now(start);
                prop_assert!(t > prev);
                prev = t;
            }
        }
    }
}
