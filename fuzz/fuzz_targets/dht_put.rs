//! An inbound DHT PUT as Kademlia hands it to `judge_put`: arbitrary key, value and
//! record already held, any time. Input: flags (bit 0: something is held), the time
//! (u64), u16-prefixed key, u16-prefixed value, then the held record.
//! Invariant: whatever is stored is a record `is_valid` accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starling_fuzz::{take_u64, take16};
use starling_net::records::{Verdict, is_provided_key, is_valid, judge_put};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let Some(now) = take_u64(&mut rest) else {
        return;
    };
    let Some(key) = take16(&mut rest) else { return };
    let Some(value) = take16(&mut rest) else {
        return;
    };
    let existing = (flags & 1 == 1).then_some(rest);
    let verdict = judge_put(key, value, existing, now);
    if verdict == Verdict::Store {
        assert!(is_valid(key, value), "stored a record is_valid refuses");
        assert!(!is_provided_key(key));
    }
    let _ = is_valid(key, value);
});
