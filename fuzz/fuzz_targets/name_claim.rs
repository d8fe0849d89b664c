//! A name claim found in the DHT: decode, canonical round trip, and `from_record`
//! under its own key (reaching the signature check) and under a wrong one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starling_core::records::{name_key, profile_key};
use starling_core::{NameClaim, RecordError};
use starling_fuzz::assert_canonical;

fuzz_target!(|data: &[u8]| {
    let Ok(claim) = NameClaim::decode(data) else {
        assert!(matches!(
            NameClaim::from_record(b"/starling/name/x", data),
            Err(RecordError::Malformed(_))
        ));
        return;
    };
    assert_canonical(&claim, data);
    let key = name_key(&claim.handle);
    let signed = claim.verify().is_ok();
    assert_eq!(NameClaim::from_record(&key, data).is_ok(), signed);
    assert_eq!(
        NameClaim::from_record(&profile_key(&claim.owner), data),
        Err(RecordError::WrongKey)
    );
    assert!(claim.replaces(&claim));
});
