//! Which DHT records this node stores for others, and which it believes: name claims
//! are first come, first served; profiles keep the highest valid version; nothing
//! else is stored.

use std::time::Duration;

use starling_core::records::DhtKey;
use starling_core::{NameClaim, ProfileRecord, Timestamp};

use crate::protocol::MAX_RECORD_BYTES;

/// How long a name claim is kept, here and by the peers we give it to: a handle
/// outlives its owner being offline for 30 days with room to spare. While online the
/// owner renews its claim every [`CLAIM_RENEWAL`].
pub const CLAIM_TTL: Duration = Duration::from_secs(45 * 24 * 3600);

/// How often an online owner renews its name claim.
pub const CLAIM_RENEWAL: Duration = Duration::from_secs(12 * 3600);

/// How long a profile record is kept: its owner republishes it whenever its head moves
/// and on every start.
pub const PROFILE_TTL: Duration = Duration::from_secs(36 * 3600);

/// How long a record stored under `key` lives (at most; a sender may ask for less).
pub fn ttl(key: &[u8]) -> Duration {
    match DhtKey::parse(key) {
        DhtKey::Name(_) => CLAIM_TTL,
        DhtKey::Profile(_) | DhtKey::Feed(_) | DhtKey::Other => PROFILE_TTL,
    }
}

/// What to do with a record someone asks us to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Store,
    /// Refused, with the reason (logged and counted).
    Refuse(&'static str),
}

/// Checks a record found under `key` (from a query or a PUT): valid and signed.
pub fn is_valid(key: &[u8], value: &[u8]) -> bool {
    if value.len() > MAX_RECORD_BYTES {
        return false;
    }
    match DhtKey::parse(key) {
        DhtKey::Name(_) => NameClaim::from_record(key, value).is_ok(),
        DhtKey::Profile(_) => ProfileRecord::from_record(key, value).is_ok(),
        DhtKey::Feed(_) | DhtKey::Other => false,
    }
}

/// How far ahead of our clock a profile's version (an HLC stamp) may be: a version
/// far in the future would shut out every later genuine one, and a stream of ever
/// higher versions could otherwise be accepted without end.
pub const MAX_PROFILE_AHEAD_MS: u64 = 10 * 60 * 1000;

/// Decides on an inbound PUT, given what we already hold under the key and the time
/// (Unix ms). A handle held by one key is never handed to another here, whatever the
/// claims' times say: the holder keeps it, and only its own refresh replaces its
/// claim. A profile must be newer than the one held and not from the future.
pub fn judge_put(key: &[u8], value: &[u8], existing: Option<&[u8]>, now_ms: u64) -> Verdict {
    if value.len() > MAX_RECORD_BYTES {
        return Verdict::Refuse("record too large");
    }
    match DhtKey::parse(key) {
        DhtKey::Name(_) => {
            let Ok(claim) = NameClaim::from_record(key, value) else {
                return Verdict::Refuse("invalid name claim");
            };
            match existing.and_then(|e| NameClaim::from_record(key, e).ok()) {
                Some(held) if held.owner != claim.owner => {
                    Verdict::Refuse("handle held by another key")
                }
                Some(held) if !claim.replaces(&held) => Verdict::Refuse("older claim"),
                _ => Verdict::Store,
            }
        }
        DhtKey::Profile(_) => {
            let Ok(profile) = ProfileRecord::from_record(key, value) else {
                return Verdict::Refuse("invalid profile");
            };
            if Timestamp(profile.version).millis() > now_ms.saturating_add(MAX_PROFILE_AHEAD_MS) {
                return Verdict::Refuse("profile version in the future");
            }
            match existing.and_then(|e| ProfileRecord::from_record(key, e).ok()) {
                Some(held) if held.version > profile.version => {
                    Verdict::Refuse("older profile version")
                }
                _ => Verdict::Store,
            }
        }
        DhtKey::Feed(_) | DhtKey::Other => Verdict::Refuse("unknown record kind"),
    }
}

/// Whether we keep provider records announced for `key`: only feed keys.
pub fn is_provided_key(key: &[u8]) -> bool {
    matches!(DhtKey::parse(key), DhtKey::Feed(_))
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_core::records::{FEED_PREFIX, feed_key, name_key, profile_key};
    use starling_core::{Handle, Identity, NameClaimContent, ProfileContent};

    fn claim(id: &Identity, handle: &str, at: u64) -> NameClaim {
        NameClaim::sign(
            NameClaimContent {
                handle: Handle::parse(handle).unwrap(),
                owner: id.author(),
                claimed_at: at,
            },
            id,
        )
        .unwrap()
    }

    #[test]
    fn first_claim_wins_and_owner_may_refresh() {
        let (a, b) = (
            Identity::from_secret_bytes([1; 32]),
            Identity::from_secret_bytes([2; 32]),
        );
        let key = name_key(&Handle::parse("alice").unwrap());
        let first = claim(&a, "alice", 10);
        assert_eq!(judge_put(&key, first.as_bytes(), None, 0), Verdict::Store);
        let rival = claim(&b, "alice", 5);
        assert_eq!(
            judge_put(&key, rival.as_bytes(), Some(first.as_bytes()), 0),
            Verdict::Refuse("handle held by another key")
        );
        let refresh = claim(&a, "alice", 20);
        assert_eq!(
            judge_put(&key, refresh.as_bytes(), Some(first.as_bytes()), 0),
            Verdict::Store
        );
        assert_eq!(
            judge_put(&key, first.as_bytes(), Some(refresh.as_bytes()), 0),
            Verdict::Refuse("older claim")
        );
        assert_eq!(
            judge_put(&key, first.as_bytes(), Some(first.as_bytes()), 0),
            Verdict::Store
        );
        // Under the wrong key, or forged: refused.
        let other_key = name_key(&Handle::parse("bob").unwrap());
        assert_eq!(
            judge_put(&other_key, first.as_bytes(), None, 0),
            Verdict::Refuse("invalid name claim")
        );
        let mut forged = first.as_bytes().to_vec();
        let n = forged.len();
        forged[n - 1] ^= 1;
        assert!(!is_valid(&key, &forged));
        assert!(is_valid(&key, first.as_bytes()));
    }

    #[test]
    fn profiles_keep_the_highest_version() {
        let a = Identity::from_secret_bytes([1; 32]);
        let p = |v| {
            ProfileRecord::sign(
                ProfileContent {
                    owner: a.author(),
                    version: v,
                    handle: None,
                    head_seq: v,
                    updated_at: v,
                },
                &a,
            )
            .unwrap()
        };
        let key = profile_key(&a.author());
        assert_eq!(
            judge_put(&key, p(1).as_bytes(), Some(p(2).as_bytes()), 0),
            Verdict::Refuse("older profile version")
        );
        assert_eq!(
            judge_put(&key, p(3).as_bytes(), Some(p(2).as_bytes()), 0),
            Verdict::Store
        );
        assert_eq!(
            judge_put(b"/other", p(3).as_bytes(), None, 0),
            Verdict::Refuse("unknown record kind")
        );
        // Versions are HLC stamps: at most ten minutes ahead of our clock.
        let now = 1_800_000_000_000;
        let at = |ms| p(Timestamp::from_parts(ms, 0).0);
        assert_eq!(
            judge_put(&key, at(now + 60_000).as_bytes(), None, now),
            Verdict::Store
        );
        assert_eq!(
            judge_put(
                &key,
                at(now + MAX_PROFILE_AHEAD_MS + 1).as_bytes(),
                None,
                now
            ),
            Verdict::Refuse("profile version in the future")
        );
    }

    #[test]
    fn only_feed_keys_are_provided() {
        let a = Identity::from_secret_bytes([1; 32]).author();
        assert!(is_provided_key(&feed_key(&a)));
        assert!(!is_provided_key(&profile_key(&a)));
        assert!(!is_provided_key(FEED_PREFIX.as_bytes()));
        assert!(!is_valid(&feed_key(&a), b"anything"));
    }
}
