//! A gossipsub message as the node takes it: the topic names the feed's author
//! (`protocol::topic_author`), the payload is a post that must be that author's, and
//! goes through the one intake.
//!
//! Input: `now` (u64), a u8-prefixed topic, then the payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starling_core::{AuthorId, Channel, Holdings, Intake, PostRef, Verdict};
use starling_fuzz::take_u64;
use starling_net::protocol::{MAX_GOSSIP_BYTES, feed_topic, topic_author};

struct FollowsAll;

impl Holdings for FollowsAll {
    fn takes(&self, _: &AuthorId) -> bool {
        true
    }
    fn held(&self, _: &PostRef) -> Option<&[u8]> {
        None
    }
}

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let Some(now) = take_u64(&mut rest) else {
        return;
    };
    let Some((&len, r)) = rest.split_first() else {
        return;
    };
    let Some(topic) = r.get(..len as usize) else {
        return;
    };
    let payload = &r[len as usize..];
    if payload.len() > MAX_GOSSIP_BYTES {
        return;
    }
    let Ok(topic) = std::str::from_utf8(topic) else {
        return;
    };
    let Some(author) = topic_author(topic) else {
        return;
    };
    assert_eq!(
        feed_topic(&author).hash().as_str(),
        topic,
        "topic round trip"
    );
    let verdicts = Intake::default().check([(payload, Channel::Topic(author))], &FollowsAll, now);
    assert_eq!(verdicts.len(), 1);
    if let Verdict::Fresh(post) = &verdicts[0] {
        assert_eq!(post.author, author);
        assert_eq!(post.as_bytes(), payload);
    }
});
