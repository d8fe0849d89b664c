//! A post's wire bytes (gossip payloads and sync pages carry them): decode, and for
//! every accepted post the canonical round trip; signature and rules never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starling_core::{Limits, Post};
use starling_fuzz::assert_canonical;

fuzz_target!(|data: &[u8]| {
    let Ok(post) = Post::decode(data) else { return };
    assert_canonical(&post, data);
    let verified = post.verify().is_ok();
    assert_eq!(
        Post::verify_many(std::slice::from_ref(&post)),
        vec![verified]
    );
    let _ = post.check(&Limits::default());
    let _ = post.validate(post.ts.millis(), &Limits::default());
});
