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
    /// Whether this claim replaces `held`, a claim held under the same handle: only a
    /// claim by the same owner does, the newer (or an equal) refresh replacing the
    /// older. Between two keys the self-declared `claimed_at` decides nothing (anyone
    /// can backdate their own claim): the claim a node stored first stays there, and
    /// who holds a handle is asked of several peers (see [`ClaimTally`]).
    pub fn replaces(&self, held: &NameClaim) -> bool {
        self.owner == held.owner && self.claimed_at >= held.claimed_at
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

/// Answers a handle's holder needs, at least, before anyone believes it holds it.
pub const MIN_VOICES: usize = 2;

/// The claims found for one handle, counted by owner: one voice per answering peer
/// (and one for our own record store). No single answer is trusted: a key holds the
/// handle when at least [`MIN_VOICES`] answers name it and more name it than any
/// other key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimTally {
    /// Voices per owner, most first (ties by key, for a stable order).
    voices: Vec<(AuthorId, usize)>,
}

impl ClaimTally {
    /// Counts claims, one per answer.
    pub fn count<'a>(claims: impl IntoIterator<Item = &'a NameClaim>) -> Self {
        let mut voices: Vec<(AuthorId, usize)> = Vec::new();
        for c in claims {
            match voices.iter_mut().find(|(o, _)| *o == c.owner) {
                Some((_, n)) => *n += 1,
                None => voices.push((c.owner, 1)),
            }
        }
        voices.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        Self { voices }
    }

    /// Voices naming `owner`.
    pub fn voices(&self, owner: &AuthorId) -> usize {
        self.voices
            .iter()
            .find(|(o, _)| o == owner)
            .map_or(0, |(_, n)| *n)
    }

    /// All answers counted.
    pub fn total(&self) -> usize {
        self.voices.iter().map(|(_, n)| n).sum()
    }

    /// The key holding the handle, if the answers agree enough to say.
    pub fn holder(&self) -> Option<AuthorId> {
        match self.voices.as_slice() {
            [(o, n), rest @ ..] if *n >= MIN_VOICES && rest.first().is_none_or(|r| r.1 < *n) => {
                Some(*o)
            }
            _ => None,
        }
    }

    /// The key other than `me` with the most voices, and its voices.
    pub fn strongest_rival(&self, me: &AuthorId) -> Option<(AuthorId, usize)> {
        self.voices.iter().find(|(o, _)| o != me).copied()
    }
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
    fn only_the_owner_replaces_its_claim_whatever_the_times() {
        let (a, b) = ordered_pair();
        // A backdated claim by another key replaces nothing, nor does a later one.
        assert!(!claim(&b, 5).replaces(&claim(&a, 10)));
        assert!(!claim(&a, 5).replaces(&claim(&b, 10)));
        assert!(!claim(&b, 50).replaces(&claim(&a, 10)));
        // The owner's refresh does; its older claim does not.
        assert!(claim(&a, 20).replaces(&claim(&a, 10)));
        assert!(!claim(&a, 10).replaces(&claim(&a, 20)));
        assert!(claim(&a, 10).replaces(&claim(&a, 10)));
    }

    #[test]
    fn a_holder_needs_two_voices_and_more_than_any_other_key() {
        let (a, b) = ordered_pair();
        let c = id(3);
        let tally = |cs: &[NameClaim]| ClaimTally::count(cs);
        assert_eq!(tally(&[]).holder(), None);
        // A single answer is never enough, whatever it claims.
        assert_eq!(tally(&[claim(&b, 0)]).holder(), None);
        assert_eq!(
            tally(&[claim(&a, 1), claim(&a, 2)]).holder(),
            Some(a.author())
        );
        // A tie decides nothing; a backdated rival is one voice among many.
        assert_eq!(
            tally(&[claim(&a, 9), claim(&a, 9), claim(&b, 0), claim(&b, 0)]).holder(),
            None
        );
        let t = tally(&[
            claim(&a, 9),
            claim(&b, 0),
            claim(&a, 9),
            claim(&c, 1),
            claim(&a, 9),
        ]);
        assert_eq!(t.holder(), Some(a.author()));
        assert_eq!(
            (t.voices(&a.author()), t.voices(&b.author()), t.total()),
            (3, 1, 5)
        );
        assert_eq!(t.strongest_rival(&a.author()).map(|r| r.1), Some(1));
        assert_eq!(t.strongest_rival(&c.author()), Some((a.author(), 3)));
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
