//! The API's JSON request bodies, decoded as its `ApiJson` extractor does (axum's
//! `Json::from_bytes`), then what the handler parses of them: a post's body
//! (`check_body`), a follow target (key or handle), a batch of follow targets, a
//! handle to register.
//!
//! Input: a selector byte (which body), then the JSON. The structs have the fields of
//! `crates/cli/src/api.rs`'s `NewPost`, `Target`, `Targets` and `RegisterRequest`.
//! Invariant: every accepted body survives its own serialisation unchanged.
#![no_main]

use axum::Json;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use starling_core::post::check_body;
use starling_core::{AuthorId, Handle};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct NewPost {
    body: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Target {
    target: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Targets {
    targets: Vec<String>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct RegisterRequest {
    handle: Option<String>,
}

fn decode<T>(json: &[u8]) -> Option<T>
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let Json(v) = Json::<T>::from_bytes(json).ok()?;
    let again = serde_json::to_vec(&v).expect("serialises");
    let Json(w) = Json::<T>::from_bytes(&again).expect("decodes its own serialisation");
    assert_eq!(v, w);
    Some(v)
}

/// The node's follow-target parser: a key, else a handle (`@` optional).
fn follow_target(t: &str) {
    let t = t.trim();
    if t.parse::<AuthorId>().is_err()
        && let Ok(h) = Handle::parse(t.trim_start_matches('@'))
    {
        assert_eq!(Handle::parse(h.as_str()).as_ref(), Ok(&h));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, json)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            if let Some(p) = decode::<NewPost>(json) {
                let _ = check_body(&p.body);
            }
        }
        1 => {
            if let Some(t) = decode::<Target>(json) {
                follow_target(&t.target);
            }
        }
        3 => {
            if let Some(t) = decode::<Targets>(json) {
                for target in &t.targets {
                    follow_target(target);
                }
            }
        }
        _ => {
            if let Some(RegisterRequest { handle: Some(h) }) = decode::<RegisterRequest>(json) {
                let _ = Handle::parse(&h);
            }
        }
    }
});
