//! What the interfaces show: plain serialisable views of the node's state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use starling_core::{AuthorId, Post};
use starling_store::Cursor;
use utoipa::ToSchema;

use crate::clock::NtpStatus;

/// A post as shown to people.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct PostView {
    #[schema(value_type = String, example = "12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5")]
    pub author: AuthorId,
    /// The author's handle, when known.
    pub handle: Option<String>,
    pub fingerprint: String,
    pub seq: u64,
    /// Creation time, Unix ms.
    pub ts_ms: u64,
    /// The full HLC timestamp (orders posts made in the same millisecond).
    pub hlc: u64,
    /// Unix ms after which the post leaves timelines.
    pub expires_at: u64,
    pub body: String,
    /// Set on reposts: the original post.
    pub repost_of: Option<PostRefView>,
    /// Whether this node's user wrote it.
    pub mine: bool,
    /// Pass as `before` to get the posts after this one.
    pub cursor: String,
}

impl PostView {
    pub fn new(post: &Post, handle: Option<String>, mine: bool) -> Self {
        Self {
            author: post.author,
            handle,
            fingerprint: post.author.fingerprint(),
            seq: post.seq,
            ts_ms: post.ts.millis(),
            hlc: post.ts.0,
            expires_at: post.expires_at,
            body: post.body.clone(),
            repost_of: post.repost_of.map(|r| PostRefView {
                author: r.author,
                seq: r.seq,
            }),
            mine,
            cursor: Cursor::of(post).to_string(),
        }
    }
}

/// Names a post: its author and the author's sequence number.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct PostRefView {
    #[schema(value_type = String)]
    pub author: AuthorId,
    pub seq: u64,
}

/// One page of the timeline or the archive.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TimelinePage {
    pub posts: Vec<PostView>,
    /// Present when there may be more: pass it as `before`.
    pub next_cursor: Option<String>,
}

/// Whether this user's handle is theirs in the network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum HandleState {
    /// Not confirmed yet (no peers, or the claim is under way).
    Pending { reason: String },
    /// Claimed in the DHT by this key.
    Registered,
    /// Another key holds it: pick another handle with `starling register`.
    Taken {
        #[schema(value_type = String)]
        by: AuthorId,
    },
    /// The network is off: nothing to claim.
    Offline,
}

impl std::fmt::Display for HandleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandleState::Pending { reason } => write!(f, "pending ({reason})"),
            HandleState::Registered => write!(f, "registered"),
            HandleState::Taken { by } => write!(f, "taken by {by} ({})", by.fingerprint()),
            HandleState::Offline => write!(f, "not claimed (network off)"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    #[schema(value_type = String)]
    pub peer_id: AuthorId,
    pub handle: String,
    pub handle_state: HandleState,
    pub fingerprint: String,
    pub data_dir: String,
}

/// A user in a followers or following list.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct FollowView {
    #[schema(value_type = String)]
    pub peer_id: AuthorId,
    /// Their handle, when known and verified.
    pub handle: Option<String>,
    pub fingerprint: String,
    /// Unix ms of the follow statement.
    pub since_ms: u64,
    /// In `following`: the followee has not acknowledged the statement yet (the
    /// outbox keeps retrying).
    pub pending: bool,
}

impl FollowView {
    pub fn new(peer_id: AuthorId, handle: Option<String>, since_ms: u64, pending: bool) -> Self {
        Self {
            fingerprint: peer_id.fingerprint(),
            peer_id,
            handle,
            since_ms,
            pending,
        }
    }
}

/// A user as their page shows them: who they are, and how they and this node's
/// user stand.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct UserView {
    #[schema(value_type = String, example = "12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5")]
    pub peer_id: AuthorId,
    /// Their handle, when known and verified (absent: known only by key so far).
    pub handle: Option<String>,
    /// A short form of the key, to compare with what they say theirs is.
    #[schema(example = "ab12:cd34:ef56:7890")]
    pub fingerprint: String,
    /// This is the node's own user.
    pub me: bool,
    /// You follow them.
    pub following: bool,
    /// You follow them and they have not acknowledged it yet (the outbox keeps
    /// retrying, e.g. while they are offline).
    pub pending: bool,
    /// When you followed them, Unix ms.
    pub following_since_ms: Option<u64>,
    /// They follow you.
    pub follows_me: bool,
    /// When they followed you, Unix ms.
    pub follows_me_since_ms: Option<u64>,
}

/// The network part of `status`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NetworkStatus {
    /// Addresses others can bootstrap from (relayed ones included).
    pub listen_addrs: Vec<String>,
    /// Addresses confirmed to reach this node from outside.
    pub external_addrs: Vec<String>,
    /// `public`, `private` (behind NAT or a firewall: reached through relays) or
    /// `unknown` (not tested yet).
    pub reachability: String,
    /// Relays holding a reservation for this node.
    pub relays: Vec<String>,
    pub connected_peers: usize,
    pub peers: Vec<String>,
    /// Connected peers reached only through a relay.
    pub relayed_peers: Vec<String>,
    pub routing_table_size: usize,
    pub subscribed_topics: usize,
    /// DHT queries in flight (lookups, announcements, bootstrap).
    pub dht_queries: usize,
    pub counters: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClockStatus {
    /// SNTP-measured correction applied to the system clock, ms.
    pub offset_ms: f64,
    pub ntp: NtpStatus,
    /// Set while followers refuse our posts as dated in the future (this machine's
    /// clock runs ahead): until an SNTP synchronisation, or 10 minutes without a
    /// new notice.
    pub future_refusals: Option<crate::skew::FutureRefusals>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Status {
    #[schema(value_type = String)]
    pub peer_id: AuthorId,
    pub handle: String,
    pub version: String,
    pub uptime_secs: u64,
    /// Posts held, all and unexpired.
    pub posts_stored: u64,
    pub posts_live: u64,
    /// This user's newest post.
    pub head_seq: u64,
    pub post_ttl_secs: f64,
    pub clock: ClockStatus,
    pub handle_state: HandleState,
    pub following: u64,
    pub followers: u64,
    /// Follow statements not yet acknowledged by their followee.
    pub outbox_pending: u64,
    pub store: StoreStatus,
    /// Inputs refused, by reason (bad_signature, equivocation, from_future, ...).
    pub rejected: BTreeMap<String, u64>,
    /// Other counted events (posts received by gossip and sync, ignored messages, ...).
    pub counters: BTreeMap<String, u64>,
    /// Followed authors caught signing two different posts with one seq (the proofs
    /// are kept); their first version stays, the other is refused.
    pub flagged: Vec<FlaggedAuthor>,
    /// `None` when the node runs without network.
    pub network: Option<NetworkStatus>,
}

/// The store on disk and the limits on what it keeps of others.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct StoreStatus {
    /// The database and its write-ahead log, in bytes.
    pub disk_bytes: u64,
    /// Posts kept per followed author at most (their newest).
    pub quota_per_author: u64,
    /// Posts of others kept in all at most.
    pub quota_total: u64,
}

/// An author with proof of equivocation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct FlaggedAuthor {
    #[schema(value_type = String)]
    pub peer_id: AuthorId,
    pub handle: Option<String>,
    /// Seqs proven signed twice (proofs kept, at most a few).
    pub proofs: u64,
    /// The lowest such seq.
    pub first_seq: u64,
}
