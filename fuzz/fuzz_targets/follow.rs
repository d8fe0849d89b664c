//! A follow statement's wire bytes (`/starling/social/1`): decode, canonical round
//! trip, signature and validation never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starling_core::FollowStatement;
use starling_fuzz::assert_canonical;

fuzz_target!(|data: &[u8]| {
    let Ok(st) = FollowStatement::decode(data) else {
        return;
    };
    assert_canonical(&st, data);
    let _ = st.verify();
    let _ = st.validate();
    let _ = st.supersedes(&st);
});
