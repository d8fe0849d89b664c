//! Follow statements: a follower's own signed "I follow / no longer follow X".
//! The latest statement (by timestamp) between two users wins; nobody but the
//! follower can write one.

use thiserror::Error;

use crate::encoding::{DecodeError, Reader, Writer};
use crate::hlc::Timestamp;
use crate::identity::AuthorId;
use crate::post::author_field;
use crate::signed::{SIGNATURE_LEN, SignatureError, Signed, SignedContent};

pub type FollowStatement = Signed<FollowContent>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowContent {
    pub follower: AuthorId,
    pub followee: AuthorId,
    /// `true` for follow, `false` for unfollow.
    pub following: bool,
    pub ts: Timestamp,
}

impl SignedContent for FollowContent {
    const DOMAIN: &'static [u8] = b"starling/follow";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 1 + 32 + 32 + 1 + 8 + SIGNATURE_LEN;

    fn encode(&self, w: &mut Writer) {
        w.bytes(self.follower.as_bytes());
        w.bytes(self.followee.as_bytes());
        w.u8(self.following as u8);
        w.u64(self.ts.0);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let follower = author_field(r, "follower")?;
        let followee = author_field(r, "followee")?;
        let following = match r.u8("following")? {
            0 => false,
            1 => true,
            _ => {
                return Err(DecodeError::Invalid {
                    field: "following",
                    reason: "must be 0 or 1",
                });
            }
        };
        let ts = Timestamp(r.u64("ts")?);
        Ok(Self {
            follower,
            followee,
            following,
            ts,
        })
    }

    fn signer(&self) -> &AuthorId {
        &self.follower
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FollowError {
    #[error("a user cannot follow themselves")]
    SelfFollow,
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("malformed follow statement: {0}")]
    Malformed(#[from] DecodeError),
}

impl FollowStatement {
    pub fn validate(&self) -> Result<(), FollowError> {
        if self.follower == self.followee {
            return Err(FollowError::SelfFollow);
        }
        self.verify()?;
        Ok(())
    }

    /// Whether this statement supersedes `other` (same pair, later timestamp).
    pub fn supersedes(&self, other: &FollowStatement) -> bool {
        (self.ts, self.signature()) > (other.ts, other.signature())
    }
}
