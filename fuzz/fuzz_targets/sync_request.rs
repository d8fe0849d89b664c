//! A `/starling/sync/1` request as the codec decodes it (at most
//! `MAX_SYNC_REQUEST_BYTES`, CBOR), then what the serving node reads of it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starling_core::AuthorId;
use starling_fuzz::{cbor_decode, cbor_round_trip};
use starling_net::protocol::{MAX_SYNC_PAGE, MAX_SYNC_REQUEST_BYTES, SyncRequest};

fuzz_target!(|data: &[u8]| {
    let Some(req) = cbor_decode::<SyncRequest>(data, MAX_SYNC_REQUEST_BYTES) else {
        return;
    };
    cbor_round_trip(&req);
    if let Ok(author) = AuthorId::from_slice(&req.author) {
        assert_eq!(author.as_bytes().as_slice(), req.author.as_slice());
    }
    let limit = req.limit.clamp(1, MAX_SYNC_PAGE);
    assert!((1..=MAX_SYNC_PAGE).contains(&limit));
});
