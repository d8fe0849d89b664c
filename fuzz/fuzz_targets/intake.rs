//! The one intake (`core::Intake::check`: decode, channel, followed, rules, time,
//! batch signatures, equivocation) on an arbitrary batch, as a sync page or gossip
//! batch reaches it, against arbitrary holdings.
//!
//! Input: `now` (u64), then entries of flags (u8) and u16-prefixed bytes. Flags:
//! bit 0: a post already held instead of an arrival; bit 1: arrived on a gossip topic
//! (else a sync page); bit 2: the channel names another author than the post's.
//! The node follows everyone but `starling_fuzz::unfollowed()`.
//!
//! Invariants: one verdict per arrival; a fresh post is the arrival's exact bytes,
//! decodes, is signed, is of the channel's author and is neither held nor fresh
//! earlier in the batch; a duplicate is byte-identical to what is held or fresh.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use starling_core::{AuthorId, Channel, Holdings, Intake, Post, PostRef, Verdict};
use starling_fuzz::{take_u64, take16, unfollowed};

struct Held(HashMap<PostRef, Vec<u8>>);

impl Holdings for Held {
    fn takes(&self, author: &AuthorId) -> bool {
        *author != unfollowed()
    }
    fn held(&self, id: &PostRef) -> Option<&[u8]> {
        self.0.get(id).map(Vec::as_slice)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let Some(now) = take_u64(&mut rest) else {
        return;
    };
    let mut held = HashMap::new();
    let mut batch: Vec<(&[u8], Channel)> = Vec::new();
    while let Some((&flags, r)) = rest.split_first() {
        rest = r;
        let Some(bytes) = take16(&mut rest) else {
            break;
        };
        let decoded = Post::decode(bytes).ok();
        if flags & 1 == 1 {
            if let Some(p) = decoded {
                held.insert(p.id(), bytes.to_vec());
            }
            continue;
        }
        let author = match (&decoded, flags & 4 == 4) {
            (Some(p), false) => p.author,
            _ => unfollowed(),
        };
        let channel = if flags & 2 == 2 {
            Channel::Topic(author)
        } else {
            Channel::Sync(author)
        };
        batch.push((bytes, channel));
    }
    let holdings = Held(held);
    let verdicts = Intake::default().check(batch.iter().copied(), &holdings, now);
    assert_eq!(verdicts.len(), batch.len(), "one verdict per arrival");
    let mut fresh: HashMap<PostRef, &[u8]> = HashMap::new();
    for ((bytes, channel), verdict) in batch.iter().zip(&verdicts) {
        match verdict {
            Verdict::Fresh(post) => {
                assert_eq!(post.as_bytes(), *bytes);
                assert!(post.verify().is_ok(), "fresh but not signed");
                assert_eq!(post.author, channel.author());
                assert!(holdings.takes(&post.author));
                assert!(holdings.held(&post.id()).is_none(), "fresh but held");
                assert!(fresh.insert(post.id(), bytes).is_none(), "fresh twice");
            }
            Verdict::Duplicate(id) => {
                let known = holdings.held(id).or_else(|| fresh.get(id).copied());
                assert_eq!(known, Some(*bytes), "duplicate of nothing known");
            }
            Verdict::Refused(r) => {
                let _ = (r.code(), r.to_string());
            }
        }
    }
});
