//! A `/starling/sync/1` response as the codec decodes it (at most
//! `MAX_SYNC_RESPONSE_BYTES`, CBOR), then its posts through the intake as a sync page
//! of the author asked for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starling_core::{AuthorId, Channel, Holdings, Intake, PostRef, Verdict};
use starling_fuzz::{cbor_decode, cbor_round_trip, identity};
use starling_net::protocol::{MAX_SYNC_RESPONSE_BYTES, SyncResponse};

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
    let Some(resp) = cbor_decode::<SyncResponse>(data, MAX_SYNC_RESPONSE_BYTES) else {
        return;
    };
    cbor_round_trip(&resp);
    let SyncResponse::Posts { posts, more: _ } = resp else {
        return;
    };
    // The seeds' posts are by identity(1), written at t = 1,000,000 ms.
    let author = identity(1).author();
    let page = posts.iter().map(|p| (p.as_slice(), Channel::Sync(author)));
    let verdicts = Intake::default().check(page, &FollowsAll, 1_000_000);
    assert_eq!(verdicts.len(), posts.len());
    for (p, v) in posts.iter().zip(&verdicts) {
        if let Verdict::Fresh(post) = v {
            assert_eq!(post.as_bytes(), p.as_slice());
            assert_eq!(post.author, author);
        }
    }
});
