//! The node's clock: the system clock, corrected by an offset measured with SNTP,
//! under a hybrid logical clock. Posting reads an atomic offset and never waits for
//! the network; the SNTP task updates the offset in the background and, when no
//! server answers, simply keeps the last one.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use starling_core::hlc::ClockError;
use starling_core::{Hlc, Timestamp};
use tokio_util::sync::CancellationToken;

use crate::sntp;

/// What the SNTP task last did, for `status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NtpStatus {
    pub servers: Vec<String>,
    /// The server of the last accepted measurement.
    pub server: Option<String>,
    /// Unix ms of the last accepted measurement.
    pub synced_at: Option<u64>,
    pub delay_ms: Option<f64>,
    /// Why the last round failed, if it did.
    pub last_error: Option<String>,
}

/// How far past the corrected time a post's timestamp may be (the HLC moves on
/// with timestamps seen from others up to 1 s ahead; followers refuse posts more
/// than 30 s ahead).
pub const POST_AHEAD_MAX_MS: u64 = 1_000;

#[derive(Debug, Default)]
pub struct Clock {
    source: Source,
    offset_us: AtomicI64,
    hlc: Mutex<Hlc>,
    ntp: Mutex<NtpStatus>,
}

/// The uncorrected system clock, in Unix ms.
pub fn system_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// Where the uncorrected time comes from.
#[derive(Debug, Default)]
enum Source {
    #[default]
    System,
    /// `base_ms` at `start`, moving with tokio's clock: virtual time when tokio's
    /// clock is paused (the simulator), so no test waits real seconds.
    Tokio {
        base_ms: u64,
        start: tokio::time::Instant,
    },
}

impl Clock {
    pub fn new() -> Self {
        Self::default()
    }

    /// A clock reading `base_ms` now and advancing with tokio's (possibly paused)
    /// clock instead of the system's.
    pub fn following_tokio(base_ms: u64) -> Self {
        Self {
            source: Source::Tokio {
                base_ms,
                start: tokio::time::Instant::now(),
            },
            ..Self::default()
        }
    }

    /// The uncorrected time, Unix ms.
    fn raw_ms(&self) -> u64 {
        match &self.source {
            Source::System => system_ms(),
            Source::Tokio { base_ms, start } => base_ms + start.elapsed().as_millis() as u64,
        }
    }

    /// Corrected wall-clock time, Unix ms.
    pub fn now_ms(&self) -> u64 {
        let offset_ms = self.offset_us.load(Ordering::Relaxed) / 1000;
        self.raw_ms().saturating_add_signed(offset_ms)
    }

    /// A fresh HLC timestamp, greater than any issued or observed before: for the
    /// records whose newest version wins (follow statements, profiles), which must
    /// never go back.
    pub fn stamp(&self) -> Timestamp {
        let now = self.now_ms();
        self.hlc.lock().expect("hlc poisoned").now(now)
    }

    /// The timestamp of a new post: the HLC's, unless that lies more than
    /// [`POST_AHEAD_MAX_MS`] past the corrected time, and then the corrected time.
    /// That happens after a clock that ran ahead was corrected (by SNTP, or by hand
    /// while the node was down): the HLC still remembers the future it was in, but
    /// followers would refuse posts stamped there, and once accepted they would sort
    /// among everyone else's at the wrong place. A post's place in its author's feed
    /// is its seq; its timestamp only has to be true.
    pub fn post_stamp(&self) -> Timestamp {
        let now = self.now_ms();
        let t = self.hlc.lock().expect("hlc poisoned").now(now);
        if t.millis() > now.saturating_add(POST_AHEAD_MAX_MS) {
            Timestamp::from_parts(now, 0)
        } else {
            t
        }
    }

    /// Moves the HLC past a timestamp received from someone else, unless it lies
    /// more than `max_skew_ms` ahead of us.
    pub fn observe(&self, ts: Timestamp, max_skew_ms: u64) -> Result<(), ClockError> {
        let now = self.now_ms();
        self.hlc
            .lock()
            .expect("hlc poisoned")
            .observe(ts, now, max_skew_ms)
    }

    /// Makes sure future stamps come after `ts` (our newest stored timestamp), even
    /// if the system clock went back while the node was down.
    pub fn start_after(&self, ts: Timestamp) {
        let mut hlc = self.hlc.lock().expect("hlc poisoned");
        if ts > hlc.last() {
            *hlc = Hlc::starting_after(ts);
        }
    }

    /// Server time minus system time, in ms.
    pub fn offset_ms(&self) -> f64 {
        self.offset_us.load(Ordering::Relaxed) as f64 / 1000.0
    }

    pub fn set_offset_ms(&self, offset_ms: f64) {
        self.offset_us
            .store((offset_ms * 1000.0) as i64, Ordering::Relaxed);
    }

    pub fn ntp_status(&self) -> NtpStatus {
        self.ntp.lock().expect("ntp status poisoned").clone()
    }

    /// One SNTP round: queries all servers in parallel and adopts an offset only
    /// from answers that agree (see [`sntp::query_all`]). Returns whether an offset
    /// was adopted.
    pub async fn sync_once(&self, servers: &[String], timeout: Duration) -> bool {
        let result = sntp::query_all(servers, timeout).await;
        let mut st = self.ntp.lock().expect("ntp status poisoned");
        st.servers = servers.to_vec();
        match result {
            Ok((server, sample)) => {
                self.set_offset_ms(sample.offset_ms);
                tracing::debug!(%server, offset_ms = sample.offset_ms, delay_ms = sample.delay_ms, "clock synchronised");
                st.server = Some(server);
                // In corrected time, like every other time the node reports.
                st.synced_at = Some(self.now_ms());
                st.delay_ms = Some(sample.delay_ms);
                st.last_error = None;
                true
            }
            Err(errors) => {
                let msg = errors
                    .iter()
                    .map(|(s, e)| format!("{s}: {e}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                tracing::debug!(error = %msg, "no SNTP server answered; keeping the last offset");
                st.last_error = Some(if msg.is_empty() {
                    "no servers configured".into()
                } else {
                    msg
                });
                false
            }
        }
    }

    /// Re-synchronises every `interval` until cancelled (first round at once). Does
    /// nothing when no server is configured.
    pub async fn run_sntp(
        &self,
        servers: Vec<String>,
        interval: Duration,
        cancel: CancellationToken,
    ) {
        if servers.is_empty() {
            return;
        }
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {
                    self.sync_once(&servers, Duration::from_secs(2)).await;
                }
            }
        }
    }
}
