//! The one intake for received posts: every transport (gossip push, sync pull, any
//! push path added later) hands its posts to these checks and gets a typed
//! [`Verdict`] back. Pure: the caller passes the bytes, what it holds about the
//! author, and the time.
//!
//! The checks run in two steps so a node can look up what it holds only for the
//! posts that need it:
//! 1. [`Intake::screen`], per post: decode, the channel's author, whether we take
//!    this author's posts, content rules, time (not from the future, not expired).
//! 2. [`Intake::settle`], per batch: signatures (one batch verification) and
//!    equivocation (a second, different post with a seq we hold, or seen earlier in
//!    the same batch).
//!
//! [`Intake::check`] runs both for callers whose holdings are at hand.
//! [`Refusal::blame`] says who a refusal is held against.

use std::collections::HashMap;

use thiserror::Error;

use crate::encoding::DecodeError;
use crate::identity::AuthorId;
use crate::limits::Limits;
use crate::post::{Post, PostError, PostRef};

/// The channel a post arrived on, and so the author it must be by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Pushed on this author's feed topic.
    Topic(AuthorId),
    /// Served in answer to our sync request for this author's feed.
    Sync(AuthorId),
}

impl Channel {
    pub fn author(&self) -> AuthorId {
        match self {
            Channel::Topic(a) | Channel::Sync(a) => *a,
        }
    }
}

/// Why a received input was refused. [`Refusal::code`] is its stable name: the
/// counters (`rejected.<code>`, `ignored.<code>`), the logs and the API use it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    #[error(transparent)]
    Post(#[from] PostError),
    #[error("a post by {found} arrived on the feed topic of {expected}")]
    WrongTopic { expected: AuthorId, found: AuthorId },
    #[error("a post by {found} was served for the feed of {expected}")]
    WrongAuthor { expected: AuthorId, found: AuthorId },
    #[error("posts of {0} are not taken here (not followed)")]
    NotFollowed(AuthorId),
    #[error("bad sync request: {0}")]
    BadSyncRequest(&'static str),
    #[error("bad follow statement: {0}")]
    BadFollow(crate::follow::FollowError),
    #[error("a follow statement must come from its follower")]
    NotFromFollower,
    #[error("too many requests from one peer")]
    Throttled,
}

impl From<DecodeError> for Refusal {
    fn from(e: DecodeError) -> Self {
        Refusal::Post(PostError::Malformed(e))
    }
}

impl Refusal {
    /// The stable, machine-readable name of the refusal.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Post(e) => e.code(),
            Refusal::WrongTopic { .. } => "wrong_topic",
            Refusal::WrongAuthor { .. } => "wrong_author",
            Refusal::NotFollowed(_) => "not_followed",
            Refusal::BadSyncRequest(_) => "bad_sync_request",
            Refusal::BadFollow(_) | Refusal::NotFromFollower => "bad_follow",
            Refusal::Throttled => "throttled",
        }
    }

    /// Who is to blame for what was refused.
    pub fn blame(&self) -> Blame {
        match self {
            // Honest peers send these: a post that expired in flight, a post of an
            // author just unfollowed, a post from a clock a little ahead of ours
            // (fetched again once our clock has caught up).
            // A busy honest peer can ask too often too (a long catch-up): refused and
            // counted, not struck.
            // A post from the future is its author's clock running ahead: a broken
            // clock, not an attack (the node checks the signature of such a post,
            // so a forgery is struck as one, and tells the author).
            Refusal::Post(PostError::Expired { .. })
            | Refusal::NotFollowed(_)
            | Refusal::Throttled
            | Refusal::Post(PostError::FromFuture { .. }) => Blame::Nobody,
            // Both versions are validly signed by the author: whoever forwarded the
            // one we did not see first did nothing wrong.
            Refusal::Post(PostError::Equivocation { .. }) => Blame::Author,
            _ => Blame::Sender,
        }
    }
}

/// Who a refusal is held against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The peer that sent it (a strike; gossip: Reject).
    Sender,
    /// The post's author, who signed two versions of one seq (gossip: Ignore, the
    /// forwarder is innocent).
    Author,
    /// Nobody: it happens between honest peers (gossip: Ignore).
    Nobody,
}

/// The intake's answer for one post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Valid and not held yet: store it.
    Fresh(Post),
    /// Valid and byte-identical to one held (or earlier in the batch): nothing to do.
    Duplicate(PostRef),
    Refused(Refusal),
}

impl Verdict {
    pub fn is_accepted(&self) -> bool {
        !matches!(self, Verdict::Refused(_))
    }
}

/// What the receiving node holds about posts' authors.
pub trait Holdings {
    /// Whether we take this author's posts at all (someone we follow, not ourselves).
    fn takes(&self, author: &AuthorId) -> bool;
    /// The exact bytes held of this post, if any.
    fn held(&self, id: &PostRef) -> Option<&[u8]>;
}

/// The checks on received posts, with the network's limits.
#[derive(Debug, Clone, Copy, Default)]
pub struct Intake {
    pub limits: Limits,
}

impl Intake {
    pub fn new(limits: Limits) -> Self {
        Self { limits }
    }

    /// Step 1: everything that needs nothing held but whether the author is taken.
    pub fn screen(
        &self,
        bytes: &[u8],
        channel: Channel,
        takes: bool,
        now_ms: u64,
    ) -> Result<Post, Refusal> {
        let post = Post::decode(bytes)?;
        let expected = channel.author();
        if post.author != expected {
            let found = post.author;
            return Err(match channel {
                Channel::Topic(_) => Refusal::WrongTopic { expected, found },
                Channel::Sync(_) => Refusal::WrongAuthor { expected, found },
            });
        }
        if !takes {
            return Err(Refusal::NotFollowed(post.author));
        }
        post.validate_unsigned(now_ms, &self.limits)?;
        Ok(post)
    }

    /// Step 2, for screened posts: signatures, in one batch, then equivocation
    /// against what is held (`held`) and against earlier posts of the batch. One
    /// verdict per post, in order.
    pub fn settle<'h>(
        &self,
        posts: Vec<Post>,
        held: impl Fn(&PostRef) -> Option<&'h [u8]>,
    ) -> Vec<Verdict> {
        let signatures = Post::verify_many(&posts);
        let mut in_batch: HashMap<PostRef, usize> = HashMap::new();
        let mut out: Vec<Verdict> = Vec::with_capacity(posts.len());
        for (post, signed) in posts.into_iter().zip(signatures) {
            let id = post.id();
            if !signed {
                out.push(Verdict::Refused(
                    PostError::Signature(crate::SignatureError::BadSignature {
                        signer: post.author,
                    })
                    .into(),
                ));
                continue;
            }
            let known: Option<&[u8]> = match in_batch.get(&id) {
                Some(&i) => match &out[i] {
                    Verdict::Fresh(p) => Some(p.as_bytes()),
                    _ => held(&id),
                },
                None => held(&id),
            };
            out.push(match known {
                Some(raw) if raw != post.as_bytes() => Verdict::Refused(
                    PostError::Equivocation {
                        author: post.author,
                        seq: post.seq,
                    }
                    .into(),
                ),
                Some(_) => Verdict::Duplicate(id),
                None => {
                    in_batch.insert(id, out.len());
                    Verdict::Fresh(post)
                }
            });
        }
        out
    }

    /// Both steps over a batch, with the holdings at hand. One verdict per input.
    pub fn check<'a>(
        &self,
        batch: impl IntoIterator<Item = (&'a [u8], Channel)>,
        holdings: &impl Holdings,
        now_ms: u64,
    ) -> Vec<Verdict> {
        let mut verdicts: Vec<Option<Verdict>> = Vec::new();
        let mut screened = Vec::new();
        for (bytes, channel) in batch {
            let takes = holdings.takes(&channel.author());
            match self.screen(bytes, channel, takes, now_ms) {
                Ok(post) => {
                    screened.push(post);
                    verdicts.push(None);
                }
                Err(r) => verdicts.push(Some(Verdict::Refused(r))),
            }
        }
        let mut settled = self.settle(screened, |id| holdings.held(id)).into_iter();
        verdicts
            .into_iter()
            .map(|v| v.unwrap_or_else(|| settled.next().expect("one verdict per screened post")))
            .collect()
    }
}
