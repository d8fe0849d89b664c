//! Network-wide limits. Every node applies the same numbers when it validates what it
//! receives; a node's own settings (post lifetime, say) must stay within them.

use std::time::Duration;

/// Most characters (Unicode scalar values) in a post body.
pub const MAX_BODY_CHARS: usize = 280;
/// Most bytes of a post body: 280 scalar values of at most 4 bytes each.
pub const MAX_BODY_BYTES: usize = MAX_BODY_CHARS * 4;
/// Default lifetime of a post.
pub const DEFAULT_POST_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Limits a node applies to records it did not create itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How far into the future (milliseconds, by our clock) a timestamp may be.
    pub max_future_skew_ms: u64,
    /// The longest lifetime (`expires_at - ts`) a post may claim, in milliseconds.
    pub max_post_lifetime_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_future_skew_ms: 30_000,
            max_post_lifetime_ms: 7 * 24 * 60 * 60 * 1000,
        }
    }
}
