//! A profile record found in the DHT: decode, canonical round trip, and
//! `from_record` under its own key (reaching the signature check) and a wrong one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starling_core::records::{feed_key, profile_key};
use starling_core::{ProfileRecord, RecordError};
use starling_fuzz::assert_canonical;

fuzz_target!(|data: &[u8]| {
    let Ok(profile) = ProfileRecord::decode(data) else {
        assert!(matches!(
            ProfileRecord::from_record(b"/starling/profile/x", data),
            Err(RecordError::Malformed(_))
        ));
        return;
    };
    assert_canonical(&profile, data);
    let signed = profile.verify().is_ok();
    assert_eq!(
        ProfileRecord::from_record(&profile_key(&profile.owner), data).is_ok(),
        signed
    );
    assert_eq!(
        ProfileRecord::from_record(&feed_key(&profile.owner), data),
        Err(RecordError::WrongKey)
    );
});
