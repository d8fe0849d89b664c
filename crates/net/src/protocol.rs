//! Protocol names, topics, DHT keys and the request/response messages, with the size
//! limit of each. Signed records travel as their exact wire bytes
//! (`docs/wire-format.md`); these messages only frame them.

use libp2p::StreamProtocol;
use libp2p::gossipsub::IdentTopic;
use serde::{Deserialize, Serialize};
use starling_core::AuthorId;

/// Kademlia, under a Starling-specific name so we never join another DHT.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/starling/kad/1");
/// Catch-up: "posts of author A with seq > n".
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/starling/sync/1");
/// Follow statements: delivery and queries.
pub const SOCIAL_PROTOCOL: StreamProtocol = StreamProtocol::new("/starling/social/1");
/// The version string we announce in identify (informational: peers are admitted by
/// the protocols they speak, see [`STARLING_PROTOCOLS`]).
pub const IDENTIFY_VERSION: &str = "/starling/1";
/// The protocols that make a peer a Starling peer: it must speak at least one
/// (identify's protocol list says which). Gossip topics ride on
/// `/starling/meshsub/...`, which every full node speaks along with these.
pub const STARLING_PROTOCOLS: [StreamProtocol; 3] = [KAD_PROTOCOL, SYNC_PROTOCOL, SOCIAL_PROTOCOL];
/// Prefix of gossipsub's protocol ids.
pub const GOSSIP_PREFIX: &str = "/starling/meshsub";

/// Largest gossipsub frame. A post is at most 1,284 bytes (checked by the node), but
/// gossipsub may pack several messages and control data into one frame, and a frame
/// over the limit is dropped whole, losing the honest messages in it.
pub const MAX_GOSSIP_BYTES: usize = 64 * 1024;
pub const MAX_SYNC_REQUEST_BYTES: u64 = 1024;
/// Largest sync page: [`MAX_SYNC_PAGE`] posts of at most 1,284 bytes, and framing.
pub const MAX_SYNC_RESPONSE_BYTES: u64 = 512 * 1024;
pub const MAX_SOCIAL_BYTES: u64 = 4 * 1024;
/// Most posts in one sync response.
pub const MAX_SYNC_PAGE: u32 = 256;
/// Kademlia records (name claims, profiles) are a few hundred bytes; anything larger
/// is refused well before Kademlia's 16 KiB packet limit.
pub const MAX_RECORD_BYTES: usize = 1024;

/// The gossipsub topic of an author's feed.
pub fn feed_topic(author: &AuthorId) -> IdentTopic {
    IdentTopic::new(format!("starling/feed/{author}"))
}

/// The author whose feed a topic carries, if it is a feed topic (spelled exactly as
/// [`feed_topic`] spells it: one topic per author).
pub fn topic_author(topic: &str) -> Option<AuthorId> {
    let key = topic.strip_prefix("starling/feed/")?;
    let author: AuthorId = key.parse().ok()?;
    (author.to_string() == key).then_some(author)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    /// The author's 32-byte key.
    #[serde(with = "serde_bytes")]
    pub author: Vec<u8>,
    pub after_seq: u64,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncResponse {
    /// Posts in seq order; `more` when the page was cut at the limit.
    Posts {
        posts: Vec<serde_bytes::ByteBuf>,
        more: bool,
    },
    Error {
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SocialRequest {
    /// Delivers a signed follow/unfollow statement to its followee.
    Follow {
        #[serde(with = "serde_bytes")]
        statement: Vec<u8>,
    },
    /// "Do you follow me?": asks for the peer's latest statement about `followee`.
    GetFollow {
        #[serde(with = "serde_bytes")]
        followee: Vec<u8>,
    },
    /// "I refused this post of yours: it is from the future by my clock": the post
    /// and the sender's time (Unix ms), so the author can check both.
    ClockNotice {
        #[serde(with = "serde_bytes")]
        post: Vec<u8>,
        now_ms: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SocialResponse {
    Accepted,
    Refused {
        reason: String,
    },
    Statement {
        statement: Option<serde_bytes::ByteBuf>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_core::Identity;

    #[test]
    fn a_feed_topic_has_one_spelling() {
        let author = Identity::from_secret_bytes([3; 32]).author();
        let topic = feed_topic(&author).hash().into_string();
        assert_eq!(topic_author(&topic), Some(author));
        // Found by fuzzing: a key with whitespace around it parsed to the same author.
        for other in [format!("{topic} "), format!("{topic}\n")] {
            assert_eq!(topic_author(&other), None, "{other:?}");
        }
        let spaced = format!("starling/feed/ {author}");
        assert_eq!(topic_author(&spaced), None);
        assert_eq!(topic_author("starling/feed/"), None);
        assert_eq!(topic_author(&format!("starling/other/{author}")), None);
    }
}
