//! Starling's pure domain: everything two nodes must agree on, with no I/O.
//!
//! Layout:
//! - [`encoding`]: the canonical binary reader/writer every signed record uses.
//! - [`identity`]: Ed25519 identities ([`Identity`]) and author ids ([`AuthorId`], a PeerId).
//! - [`handle`]: user handles (`a-z0-9_`, 2-40 characters).
//! - [`signed`]: the generic signed envelope ([`Signed`]) shared by every record.
//! - [`post`]: posts, their validation and exact errors.
//! - [`intake`]: the one set of checks every received post goes through, with typed
//!   verdicts and refusals.
//! - [`follow`]: follow / unfollow statements.
//! - [`records`]: DHT records: name claims and profiles.
//! - [`hlc`]: the hybrid logical clock and packed timestamps.
//! - [`limits`]: network-wide limits.
//!
//! Invariant: nothing here touches the file system, the network or the system clock;
//! the current time is always an argument.

pub mod encoding;
pub mod follow;
pub mod handle;
pub mod hlc;
pub mod identity;
pub mod intake;
pub mod limits;
pub mod post;
pub mod records;
pub mod signed;

pub use encoding::DecodeError;
pub use follow::{FollowContent, FollowError, FollowStatement};
pub use handle::{Handle, HandleError};
pub use hlc::{Hlc, Timestamp};
pub use identity::{AuthorId, Identity, KeyError};
pub use intake::{Blame, Channel, Holdings, Intake, Refusal, Verdict};
pub use limits::Limits;
pub use post::{Post, PostContent, PostError, PostRef};
pub use records::{NameClaim, NameClaimContent, ProfileContent, ProfileRecord, RecordError};
pub use signed::{SignatureError, Signed, SignedContent};
