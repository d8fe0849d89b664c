//! A `/starling/social/1` request as the codec decodes it (at most
//! `MAX_SOCIAL_BYTES`, CBOR), then what the receiving node reads of it: a follow
//! statement (decode, signature, validation), a key, or a clock notice (the post
//! it carries: decode, signature).
#![no_main]

use libfuzzer_sys::fuzz_target;
use starling_core::{AuthorId, FollowStatement, Post};
use starling_fuzz::{assert_canonical, cbor_decode, cbor_round_trip};
use starling_net::protocol::{MAX_SOCIAL_BYTES, SocialRequest};

fuzz_target!(|data: &[u8]| {
    let Some(req) = cbor_decode::<SocialRequest>(data, MAX_SOCIAL_BYTES) else {
        return;
    };
    cbor_round_trip(&req);
    match &req {
        SocialRequest::Follow { statement } => {
            if let Ok(st) = FollowStatement::decode(statement) {
                assert_canonical(&st, statement);
                let _ = st.verify();
                let _ = st.validate();
            }
        }
        SocialRequest::GetFollow { followee } => {
            let _ = AuthorId::from_slice(followee);
        }
        SocialRequest::ClockNotice { post, .. } => {
            if let Ok(p) = Post::decode(post) {
                let _ = p.verify();
            }
        }
    }
});
