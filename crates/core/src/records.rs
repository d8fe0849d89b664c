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

/// The DHT key of a handle's claim.
pub fn name_key(handle: &Handle) -> Vec<u8> {
    format!("/starling/name/{handle}").into_bytes()
}

/// The DHT key of a user's profile record.
pub fn profile_key(owner: &AuthorId) -> Vec<u8> {
    format!("/starling/profile/{owner}").into_bytes()
}

/// The DHT key followers provide to announce they follow (and hold) a feed.
pub fn feed_key(author: &AuthorId) -> Vec<u8> {
    format!("/starling/feed/{author}").into_bytes()
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
