//! A `/starling/social/1` response as the codec decodes it (at most
//! `MAX_SOCIAL_BYTES`, CBOR), then the statement it may carry.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starling_core::FollowStatement;
use starling_fuzz::{assert_canonical, cbor_decode, cbor_round_trip};
use starling_net::protocol::{MAX_SOCIAL_BYTES, SocialResponse};

fuzz_target!(|data: &[u8]| {
    let Some(resp) = cbor_decode::<SocialResponse>(data, MAX_SOCIAL_BYTES) else {
        return;
    };
    cbor_round_trip(&resp);
    if let SocialResponse::Statement {
        statement: Some(bytes),
    } = &resp
        && let Ok(st) = FollowStatement::decode(bytes)
    {
        assert_canonical(&st, bytes);
        let _ = st.verify();
        let _ = st.validate();
    }
});
