//! DHT records: name claims (`/starling/name/<handle>`) and profiles
//! (`/starling/profile/<peer_id>`), each signed by its owner. Both stay far below
//! Kademlia's 16 KiB packet limit.

use thiserror::Error;

use crate::encoding::{DecodeError, Reader, Writer};
use crate::handle::Handle;
use crate::identity::AuthorId;
use crate::post::author_field;
use crate::signed::{SIGNATURE_LEN, SignatureError, Signed, SignedContent};

pub type NameClaim = Signed<NameClaimContent>;
pub type ProfileRecord = Signed<ProfileContent>;

/// Prefix of the DHT keys of name claims: `/starling/name/<handle>`.
pub const NAME_PREFIX: &str = "/starling/name/";
/// Prefix of the DHT keys of profile records: `/starling/profile/<peer id>`.
pub const PROFILE_PREFIX: &str = "/starling/profile/";
/// Prefix of the DHT keys followers provide: `/starling/feed/<peer id>`.
pub const FEED_PREFIX: &str = "/starling/feed/";

/// The DHT key of a handle's claim.
pub fn name_key(handle: &Handle) -> Vec<u8> {
    format!("{NAME_PREFIX}{handle}").into_bytes()
}

/// The DHT key of a user's profile record.
pub fn profile_key(owner: &AuthorId) -> Vec<u8> {
    format!("{PROFILE_PREFIX}{owner}").into_bytes()
}

/// The DHT key followers provide to announce they follow (and hold) a feed.
pub fn feed_key(author: &AuthorId) -> Vec<u8> {
    format!("{FEED_PREFIX}{author}").into_bytes()
}

/// What a DHT key names. A key is classified only when it is exactly the key
/// [`name_key`], [`profile_key`] or [`feed_key`] builds for what it carries; anything
/// else (another prefix, or one of ours followed by something that does not parse)
/// is [`DhtKey::Other`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhtKey {
    /// `/starling/name/<handle>`: a name claim.
    Name(Handle),
    /// `/starling/profile/<peer id>`: a profile record.
    Profile(AuthorId),
    /// `/starling/feed/<peer id>`: provided by the followers of that author.
    Feed(AuthorId),
    Other,
}

impl DhtKey {
    pub fn parse(key: &[u8]) -> Self {
        fn suffix<'k>(key: &'k [u8], prefix: &str) -> Option<&'k str> {
            std::str::from_utf8(key.strip_prefix(prefix.as_bytes())?).ok()
        }
        // An author id parses leniently (surrounding spaces); only its canonical
        // spelling is its key.
        let author = |s: &str| {
            s.parse::<AuthorId>()
                .ok()
                .filter(|a| a.to_string().as_str() == s)
        };
        if let Some(s) = suffix(key, NAME_PREFIX) {
            Handle::parse(s).map_or(Self::Other, Self::Name)
        } else if let Some(s) = suffix(key, PROFILE_PREFIX) {
            author(s).map_or(Self::Other, Self::Profile)
        } else if let Some(s) = suffix(key, FEED_PREFIX) {
            author(s).map_or(Self::Other, Self::Feed)
        } else {
            Self::Other
        }
    }
}

/// "The key `owner` holds the handle `handle`", claimed at `claimed_at` (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameClaimContent {
    pub handle: Handle,
    pub owner: AuthorId,
    pub claimed_at: u64,
}

impl SignedContent for NameClaimContent {
    const DOMAIN: &'static [u8] = b"starling/name";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 1 + 1 + 40 + 32 + 8 + SIGNATURE_LEN;

    fn encode(&self, w: &mut Writer) {
        w.str8(self.handle.as_str());
        w.bytes(self.owner.as_bytes());
        w.u64(self.claimed_at);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let handle = Handle::parse(r.str8("handle")?).map_err(|_| DecodeError::Invalid {
            field: "handle",
            reason: "not a valid handle",
        })?;
        Ok(Self {
            handle,
            owner: author_field(r, "owner")?,
            claimed_at: r.u64("claimed_at")?,
        })
    }

    fn signer(&self) -> &AuthorId {
        &self.owner
    }
}

/// A user's profile: handle and newest post, versioned; readers keep the highest
/// valid version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileContent {
    pub owner: AuthorId,
    pub version: u64,
    pub handle: Option<Handle>,
    /// The owner's newest post sequence number (0: none yet).
    pub head_seq: u64,
    pub updated_at: u64,
}

impl SignedContent for ProfileContent {
    const DOMAIN: &'static [u8] = b"starling/profile";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 1 + 32 + 8 + 1 + 40 + 8 + 8 + SIGNATURE_LEN;

    fn encode(&self, w: &mut Writer) {
        w.bytes(self.owner.as_bytes());
        w.u64(self.version);
        w.str8(self.handle.as_ref().map_or("", |h| h.as_str()));
        w.u64(self.head_seq);
        w.u64(self.updated_at);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let owner = author_field(r, "owner")?;
        let version = r.u64("version")?;
        let handle = match r.str8("handle")? {
            "" => None,
            h => Some(Handle::parse(h).map_err(|_| DecodeError::Invalid {
                field: "handle",
                reason: "not a valid handle",
            })?),
        };
        Ok(Self {
            owner,
            version,
            handle,
            head_seq: r.u64("head_seq")?,
            updated_at: r.u64("updated_at")?,
        })
    }

    fn signer(&self) -> &AuthorId {
        &self.owner
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    #[error("malformed record: {0}")]
    Malformed(#[from] DecodeError),
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("record is stored under the wrong key")]
    WrongKey,
}

impl NameClaim {
    /// Whether this claim takes the place of `other`, a claim for the same handle.
    /// Between two keys the earlier claim wins (smaller `claimed_at`), a tie going to
    /// the smaller owner key; a key's own claims replace each other, the newer (or an
    /// equal) refresh replacing the older.
    pub fn wins_over(&self, other: &NameClaim) -> bool {
        if self.owner == other.owner {
            self.claimed_at >= other.claimed_at
        } else {
            (self.claimed_at, self.owner) < (other.claimed_at, other.owner)
        }
    }

    /// Decodes and checks a claim found under `key`.
    pub fn from_record(key: &[u8], value: &[u8]) -> Result<Self, RecordError> {
        let claim = Self::decode(value)?;
        if key != name_key(&claim.handle).as_slice() {
            return Err(RecordError::WrongKey);
        }
        claim.verify()?;
        Ok(claim)
    }
}

/// The first claim among claims for one handle: the earliest `claimed_at`, a tie going
/// to the smaller owner key. Its owner holds the handle (see [`NameClaim::wins_over`]).
pub fn first_claim<'a>(claims: impl IntoIterator<Item = &'a NameClaim>) -> Option<&'a NameClaim> {
    claims.into_iter().min_by_key(|c| (c.claimed_at, c.owner))
}

impl ProfileRecord {
    /// Decodes and checks a profile found under `key`.
    pub fn from_record(key: &[u8], value: &[u8]) -> Result<Self, RecordError> {
        let profile = Self::decode(value)?;
        if key != profile_key(&profile.owner).as_slice() {
            return Err(RecordError::WrongKey);
        }
        profile.verify()?;
        Ok(profile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn id(seed: u8) -> Identity {
        Identity::from_secret_bytes([seed; 32])
    }

    fn claim(owner: &Identity, at: u64) -> NameClaim {
        NameClaim::sign(
            NameClaimContent {
                handle: Handle::parse("alice").unwrap(),
                owner: owner.author(),
                claimed_at: at,
            },
            owner,
        )
        .unwrap()
    }

    /// Two identities, the first with the smaller key.
    fn ordered_pair() -> (Identity, Identity) {
        let (a, b) = (id(1), id(2));
        if a.author() < b.author() {
            (a, b)
        } else {
            (b, a)
        }
    }

    #[test]
    fn the_earlier_claim_wins_between_keys() {
        let (a, b) = ordered_pair();
        // Whichever key is smaller, the earlier claim wins.
        assert!(claim(&b, 5).wins_over(&claim(&a, 10)));
        assert!(!claim(&a, 10).wins_over(&claim(&b, 5)));
        assert!(claim(&a, 5).wins_over(&claim(&b, 10)));
        assert!(!claim(&b, 10).wins_over(&claim(&a, 5)));
    }

    #[test]
    fn a_tie_goes_to_the_smaller_owner_key() {
        let (a, b) = ordered_pair();
        assert!(a.author().as_bytes() < b.author().as_bytes());
        assert!(claim(&a, 7).wins_over(&claim(&b, 7)));
        assert!(!claim(&b, 7).wins_over(&claim(&a, 7)));
    }

    #[test]
    fn an_owner_refreshes_its_own_claim() {
        let a = id(1);
        assert!(claim(&a, 20).wins_over(&claim(&a, 10)));
        assert!(!claim(&a, 10).wins_over(&claim(&a, 20)));
        assert!(claim(&a, 10).wins_over(&claim(&a, 10)));
    }

    #[test]
    fn first_claim_is_the_earliest_then_the_smaller_key_in_any_order() {
        assert!(first_claim(&[]).is_none());
        let (a, b) = ordered_pair();
        let c = id(3);
        let claims = [claim(&c, 30), claim(&b, 10), claim(&a, 10), claim(&b, 40)];
        for rotation in 0..claims.len() {
            let mut order: Vec<&NameClaim> = claims.iter().collect();
            order.rotate_left(rotation);
            let first = first_claim(order.iter().copied()).unwrap();
            assert_eq!((first.owner, first.claimed_at), (a.author(), 10));
            order.reverse();
            assert_eq!(first_claim(order).unwrap().owner, a.author());
        }
        // The first claim wins over every claim by another key.
        let first = first_claim(&claims).unwrap();
        for other in claims.iter().filter(|c| c.owner != first.owner) {
            assert!(first.wins_over(other));
            assert!(!other.wins_over(first));
        }
        // A key's later refresh does not move the first claim to it.
        let refreshed = [claim(&b, 10), claim(&b, 50), claim(&c, 20)];
        let first = first_claim(&refreshed).unwrap();
        assert_eq!((first.owner, first.claimed_at), (b.author(), 10));
    }

    #[test]
    fn keys_carry_their_prefixes() {
        let (handle, author) = (Handle::parse("alice").unwrap(), id(1).author());
        assert_eq!(name_key(&handle), b"/starling/name/alice");
        assert_eq!(
            profile_key(&author),
            format!("/starling/profile/{author}").as_bytes()
        );
        assert_eq!(
            feed_key(&author),
            format!("/starling/feed/{author}").as_bytes()
        );
    }

    #[test]
    fn keys_parse_back_to_what_they_name() {
        let (handle, author) = (Handle::parse("bob_42").unwrap(), id(1).author());
        assert_eq!(DhtKey::parse(&name_key(&handle)), DhtKey::Name(handle));
        assert_eq!(
            DhtKey::parse(&profile_key(&author)),
            DhtKey::Profile(author)
        );
        assert_eq!(DhtKey::parse(&feed_key(&author)), DhtKey::Feed(author));
    }

    #[test]
    fn malformed_and_foreign_keys_are_other() {
        let author = id(1).author().to_string();
        let non_ed25519 = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N";
        for key in [
            String::new(),
            "/other/key".into(),
            "/starling/name/".into(),
            "/starling/name/Alice".into(),
            "/starling/name/a".into(),
            format!("/starling/name/{}", "x".repeat(41)),
            "/starling/profile/".into(),
            "/starling/profile/alice".into(),
            format!("/starling/profile/{non_ed25519}"),
            "/starling/feed/".into(),
            "/starling/feed/not-a-peer-id".into(),
            format!("/starling/feed/{non_ed25519}"),
            // Lenient spellings of an id are not its key.
            format!("/starling/feed/ {author}"),
            format!("/starling/feed/{author} "),
            format!("/starling/feed/{author}/"),
            // A prefix without its leading slash, or the gossip topic.
            format!("starling/feed/{author}"),
            format!("/starling/feeds/{author}"),
        ] {
            assert_eq!(DhtKey::parse(key.as_bytes()), DhtKey::Other, "{key:?}");
        }
        assert_eq!(DhtKey::parse(b"/starling/name/al\xffce"), DhtKey::Other);
        assert_eq!(DhtKey::parse(b"/starling/feed/\xff"), DhtKey::Other);
    }
}
