//! Posts: short signed texts with a lifetime.
//!
//! A post is `{author, seq, ts, expires_at, body, repost_of?}` in a [`Signed`]
//! envelope. `(author, seq)` identifies it; `seq` is the author's own counter. The
//! encoding is documented, with test vectors, in `docs/wire-format.md`.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::encoding::{DecodeError, Reader, Writer};
use crate::hlc::Timestamp;
use crate::identity::AuthorId;
use crate::limits::{Limits, MAX_BODY_BYTES, MAX_BODY_CHARS};
use crate::signed::{SIGNATURE_LEN, SignatureError, Signed, SignedContent};

/// A post as signed and sent.
pub type Post = Signed<PostContent>;

/// Names a post: its author and the author's sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PostRef {
    pub author: AuthorId,
    pub seq: u64,
}

/// The signed fields of a post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostContent {
    pub author: AuthorId,
    /// The author's counter, from 1, strictly increasing.
    pub seq: u64,
    /// HLC timestamp of creation.
    pub ts: Timestamp,
    /// Unix milliseconds after which nobody but the author keeps or serves the post.
    pub expires_at: u64,
    pub body: String,
    /// Set on a repost: the post it republishes.
    pub repost_of: Option<PostRef>,
}

const FLAG_REPOST: u8 = 0x01;

impl SignedContent for PostContent {
    const DOMAIN: &'static [u8] = b"starling/post";
    const VERSION: u8 = 1;
    // version, author, seq, ts, expires_at, flags, repost_of, body length, body, signature
    const MAX_LEN: usize = 1 + 32 + 8 + 8 + 8 + 1 + 40 + 2 + MAX_BODY_BYTES + SIGNATURE_LEN;

    fn encode(&self, w: &mut Writer) {
        w.bytes(self.author.as_bytes());
        w.u64(self.seq);
        w.u64(self.ts.0);
        w.u64(self.expires_at);
        w.u8(if self.repost_of.is_some() {
            FLAG_REPOST
        } else {
            0
        });
        if let Some(orig) = &self.repost_of {
            w.bytes(orig.author.as_bytes());
            w.u64(orig.seq);
        }
        w.str16(&self.body);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let author = author_field(r, "author")?;
        let seq = r.u64("seq")?;
        let ts = Timestamp(r.u64("ts")?);
        let expires_at = r.u64("expires_at")?;
        let flags = r.u8("flags")?;
        if flags & !FLAG_REPOST != 0 {
            return Err(DecodeError::Invalid {
                field: "flags",
                reason: "unknown flag bits set",
            });
        }
        let repost_of = if flags & FLAG_REPOST != 0 {
            Some(PostRef {
                author: author_field(r, "repost_of.author")?,
                seq: r.u64("repost_of.seq")?,
            })
        } else {
            None
        };
        let body = r.str16("body")?;
        if body.len() > MAX_BODY_BYTES {
            return Err(DecodeError::Invalid {
                field: "body",
                reason: "longer than 1120 bytes",
            });
        }
        Ok(Self {
            author,
            seq,
            ts,
            expires_at,
            body: body.to_string(),
            repost_of,
        })
    }

    fn signer(&self) -> &AuthorId {
        &self.author
    }
}

/// A key field. Its validity as a key is checked with the signature.
pub(crate) fn author_field(
    r: &mut Reader<'_>,
    field: &'static str,
) -> Result<AuthorId, DecodeError> {
    Ok(AuthorId::from_bytes_unchecked(r.array(field)?))
}

/// Why a post is refused. Messages are meant for people.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PostError {
    #[error("a post cannot be empty")]
    EmptyBody,
    #[error("a post can have at most {MAX_BODY_CHARS} characters; this one has {chars}")]
    BodyTooLong { chars: usize },
    #[error("a post cannot contain control characters (found U+{code:04X})")]
    ControlCharacter { code: u32 },
    #[error("sequence numbers start at 1")]
    ZeroSeq,
    #[error("a repost must name an original post with a sequence number from 1")]
    BadRepostRef,
    #[error("post expires at {expires_at} ms, not after its timestamp {ts_ms} ms")]
    ExpiresBeforeTimestamp { ts_ms: u64, expires_at: u64 },
    #[error("post lifetime of {lifetime_ms} ms is over the network's limit of {max_ms} ms")]
    LifetimeTooLong { lifetime_ms: u64, max_ms: u64 },
    #[error("post timestamp is {ahead_ms} ms in the future (at most {max_ms} ms allowed)")]
    FromFuture { ahead_ms: u64, max_ms: u64 },
    #[error("post expired {ago_ms} ms ago")]
    Expired { ago_ms: u64 },
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("equivocation: {author} signed two different posts with seq {seq}")]
    Equivocation { author: AuthorId, seq: u64 },
    #[error("malformed post: {0}")]
    Malformed(#[from] DecodeError),
}

impl PostError {
    /// A short, stable name for the error: counters, logs and the API use it.
    pub fn code(&self) -> &'static str {
        match self {
            PostError::EmptyBody => "empty_body",
            PostError::BodyTooLong { .. } => "body_too_long",
            PostError::ControlCharacter { .. } => "control_character",
            PostError::ZeroSeq => "bad_seq",
            PostError::BadRepostRef => "bad_repost",
            PostError::ExpiresBeforeTimestamp { .. } => "bad_expiry",
            PostError::LifetimeTooLong { .. } => "lifetime_too_long",
            PostError::FromFuture { .. } => "from_future",
            PostError::Expired { .. } => "expired",
            PostError::Signature(_) => "bad_signature",
            PostError::Equivocation { .. } => "equivocation",
            PostError::Malformed(_) => "malformed",
        }
    }
}

impl PostContent {
    /// The rules on what a post says, whoever wrote it: body length and characters,
    /// sequence number, lifetime.
    pub fn check(&self, limits: &Limits) -> Result<(), PostError> {
        check_body(&self.body)?;
        if self.seq == 0 {
            return Err(PostError::ZeroSeq);
        }
        if self.repost_of.is_some_and(|r| r.seq == 0) {
            return Err(PostError::BadRepostRef);
        }
        let ts_ms = self.ts.millis();
        if self.expires_at <= ts_ms {
            return Err(PostError::ExpiresBeforeTimestamp {
                ts_ms,
                expires_at: self.expires_at,
            });
        }
        let lifetime_ms = self.expires_at - ts_ms;
        if lifetime_ms > limits.max_post_lifetime_ms {
            return Err(PostError::LifetimeTooLong {
                lifetime_ms,
                max_ms: limits.max_post_lifetime_ms,
            });
        }
        Ok(())
    }

    pub fn id(&self) -> PostRef {
        PostRef {
            author: self.author,
            seq: self.seq,
        }
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at <= now_ms
    }
}

/// The body rules, usable before anything is signed (for clear errors to the user).
pub fn check_body(body: &str) -> Result<(), PostError> {
    if body.trim().is_empty() {
        return Err(PostError::EmptyBody);
    }
    let chars = body.chars().count();
    if chars > MAX_BODY_CHARS {
        return Err(PostError::BodyTooLong { chars });
    }
    // Newlines and tabs are text; other control characters could rewrite a terminal.
    if let Some(c) = body
        .chars()
        .find(|c| c.is_control() && *c != '\n' && *c != '\t')
    {
        return Err(PostError::ControlCharacter { code: c as u32 });
    }
    Ok(())
}

impl Post {
    /// Everything a node checks before storing or forwarding a post it received:
    /// content rules, time (not too far ahead, not expired), and the signature.
    pub fn validate(&self, now_ms: u64, limits: &Limits) -> Result<(), PostError> {
        self.validate_unsigned(now_ms, limits)?;
        self.verify()?;
        Ok(())
    }

    /// [`Post::validate`] without the signature check, for batched verification.
    pub fn validate_unsigned(&self, now_ms: u64, limits: &Limits) -> Result<(), PostError> {
        self.content().check(limits)?;
        let ts_ms = self.ts.millis();
        if ts_ms > now_ms.saturating_add(limits.max_future_skew_ms) {
            return Err(PostError::FromFuture {
                ahead_ms: ts_ms - now_ms,
                max_ms: limits.max_future_skew_ms,
            });
        }
        if self.is_expired(now_ms) {
            return Err(PostError::Expired {
                ago_ms: now_ms - self.expires_at,
            });
        }
        Ok(())
    }
}
