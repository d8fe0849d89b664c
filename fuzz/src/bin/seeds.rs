//! Writes the seed corpora (`fuzz/corpus/<target>/`): a handful of valid encodings
//! per target, made with the real encoders and fixed keys, plus a few near misses.
//! Run from `fuzz/`: `cargo fuzz build && target/x86_64-unknown-linux-gnu/release/seeds`.

use std::fs;
use std::path::Path;

use starling_core::records::{feed_key, name_key, profile_key};
use starling_core::{
    FollowContent, FollowStatement, Handle, NameClaim, NameClaimContent, Post, PostContent,
    PostRef, ProfileContent, ProfileRecord, Timestamp,
};
use starling_fuzz::{identity, put16};
use starling_net::protocol::{
    SocialRequest, SocialResponse, SyncRequest, SyncResponse, feed_topic,
};

const NOW: u64 = 1_000_000;
const DAY: u64 = 24 * 60 * 60 * 1000;

fn post(n: u8, seq: u64, body: &str, repost: bool) -> Post {
    let id = identity(n);
    Post::sign(
        PostContent {
            author: id.author(),
            seq,
            ts: Timestamp::from_parts(NOW - 10 * seq, 0),
            expires_at: NOW - 10 * seq + DAY,
            body: body.into(),
            repost_of: repost.then(|| PostRef {
                author: id.author(),
                seq: 1,
            }),
        },
        &id,
    )
    .unwrap()
}

fn follow(n: u8, following: bool) -> FollowStatement {
    let id = identity(n);
    FollowStatement::sign(
        FollowContent {
            follower: id.author(),
            followee: identity(n + 1).author(),
            following,
            ts: Timestamp::from_parts(NOW, 3),
        },
        &id,
    )
    .unwrap()
}

fn claim(n: u8, handle: &str, at: u64) -> NameClaim {
    let id = identity(n);
    NameClaim::sign(
        NameClaimContent {
            handle: Handle::parse(handle).unwrap(),
            owner: id.author(),
            claimed_at: at,
        },
        &id,
    )
    .unwrap()
}

fn profile(n: u8, handle: Option<&str>, version: u64) -> ProfileRecord {
    let id = identity(n);
    ProfileRecord::sign(
        ProfileContent {
            owner: id.author(),
            version,
            handle: handle.map(|h| Handle::parse(h).unwrap()),
            head_seq: 7,
            updated_at: NOW,
        },
        &id,
    )
    .unwrap()
}

fn cbor<T: serde::Serialize>(v: &T) -> Vec<u8> {
    cbor4ii::serde::to_vec(Vec::new(), v).unwrap()
}

fn tampered(bytes: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let last = b.len() - 1;
    b[last] ^= 1;
    b
}

fn main() {
    let root = Path::new("corpus");
    let write = |target: &str, seeds: Vec<Vec<u8>>| {
        let dir = root.join(target);
        fs::create_dir_all(&dir).unwrap();
        for (i, s) in seeds.iter().enumerate() {
            fs::write(dir.join(format!("seed-{i:02}")), s).unwrap();
        }
    };
    let posts = [
        post(1, 1, "hello, world", false),
        post(1, 2, "über\ttabs\nand lines 🐦", false),
        post(1, 3, "a repost", true),
        post(2, 1, &"x".repeat(280), false),
    ];
    let p = |i: usize| posts[i].as_bytes().to_vec();

    write("post", vec![p(0), p(1), p(2), p(3), tampered(&p(0))]);

    let entry = |flags: u8, bytes: &[u8]| {
        let mut e = vec![flags];
        put16(&mut e, bytes);
        e
    };
    let with_now = |entries: Vec<Vec<u8>>| {
        let mut v = NOW.to_be_bytes().to_vec();
        v.extend(entries.concat());
        v
    };
    let equivocation = post(1, 1, "not what was said", false);
    write(
        "intake",
        vec![
            with_now(vec![entry(0, &p(0)), entry(2, &p(1)), entry(0, &p(2))]),
            with_now(vec![
                entry(1, &p(0)),
                entry(0, &p(0)),
                entry(0, equivocation.as_bytes()),
            ]),
            with_now(vec![
                entry(0, &p(3)),
                entry(4, &p(0)),
                entry(0, &tampered(&p(1))),
            ]),
            with_now(vec![entry(0, &p(0)), entry(0, &p(0))]),
        ],
    );

    let gossip = |topic_of: u8, payload: &[u8]| {
        let topic = feed_topic(&identity(topic_of).author())
            .hash()
            .into_string();
        let mut v = NOW.to_be_bytes().to_vec();
        v.push(topic.len() as u8);
        v.extend_from_slice(topic.as_bytes());
        v.extend_from_slice(payload);
        v
    };
    write(
        "gossip",
        vec![
            gossip(1, &p(0)),
            gossip(1, &p(2)),
            gossip(2, &p(0)),
            gossip(2, &p(3)),
        ],
    );

    let f = [follow(1, true), follow(2, false)];
    write(
        "follow",
        vec![
            f[0].as_bytes().to_vec(),
            f[1].as_bytes().to_vec(),
            tampered(f[0].as_bytes()),
        ],
    );

    let c = [
        claim(1, "alice", NOW),
        claim(2, "bob_2", NOW + 1),
        claim(3, "alice", NOW - 1),
    ];
    write(
        "name_claim",
        c.iter()
            .map(|c| c.as_bytes().to_vec())
            .chain([tampered(c[0].as_bytes())])
            .collect(),
    );

    let pr = [
        profile(1, Some("alice"), 5),
        profile(2, None, 1),
        profile(1, Some("alice"), 4),
    ];
    write(
        "profile_record",
        pr.iter()
            .map(|p| p.as_bytes().to_vec())
            .chain([tampered(pr[0].as_bytes())])
            .collect(),
    );

    let put = |existing: Option<&[u8]>, key: &[u8], value: &[u8]| {
        let mut v = vec![existing.is_some() as u8];
        v.extend_from_slice(&NOW.to_be_bytes());
        put16(&mut v, key);
        put16(&mut v, value);
        v.extend_from_slice(existing.unwrap_or_default());
        v
    };
    let alice = name_key(&Handle::parse("alice").unwrap());
    let prof1 = profile_key(&identity(1).author());
    write(
        "dht_put",
        vec![
            put(None, &alice, c[0].as_bytes()),
            put(Some(c[0].as_bytes()), &alice, c[2].as_bytes()),
            put(Some(c[2].as_bytes()), &alice, c[0].as_bytes()),
            put(None, &prof1, pr[0].as_bytes()),
            put(Some(pr[0].as_bytes()), &prof1, pr[2].as_bytes()),
            put(None, &feed_key(&identity(1).author()), b"provider"),
        ],
    );

    let req = |author: &[u8], after_seq, limit| {
        cbor(&SyncRequest {
            author: author.to_vec(),
            after_seq,
            limit,
        })
    };
    let a1 = identity(1).author();
    write(
        "sync_request",
        vec![
            req(a1.as_bytes(), 0, 256),
            req(a1.as_bytes(), 41, 0),
            req(&[7; 31], u64::MAX, 9),
        ],
    );
    let page = |posts: &[Vec<u8>], more| {
        cbor(&SyncResponse::Posts {
            posts: posts
                .iter()
                .cloned()
                .map(serde_bytes::ByteBuf::from)
                .collect(),
            more,
        })
    };
    write(
        "sync_response",
        vec![
            page(&[p(0), p(1), p(2)], true),
            page(&[p(0), p(0), equivocation.as_bytes().to_vec()], false),
            page(&[], false),
            cbor(&SyncResponse::Error {
                message: "busy".into(),
            }),
        ],
    );
    write(
        "social_request",
        vec![
            cbor(&SocialRequest::Follow {
                statement: f[0].as_bytes().to_vec(),
            }),
            cbor(&SocialRequest::Follow {
                statement: f[1].as_bytes().to_vec(),
            }),
            cbor(&SocialRequest::GetFollow {
                followee: a1.as_bytes().to_vec(),
            }),
            cbor(&SocialRequest::ClockNotice {
                post: p(0),
                now_ms: 1_700_000_000_000,
            }),
        ],
    );
    write(
        "social_response",
        vec![
            cbor(&SocialResponse::Accepted),
            cbor(&SocialResponse::Refused {
                reason: "this statement is not about me".into(),
            }),
            cbor(&SocialResponse::Statement {
                statement: Some(serde_bytes::ByteBuf::from(f[0].as_bytes().to_vec())),
            }),
            cbor(&SocialResponse::Statement { statement: None }),
        ],
    );

    let json = |which: u8, s: &str| [&[which][..], s.as_bytes()].concat();
    write(
        "api_json",
        vec![
            json(0, r#"{"body":"hello, world"}"#),
            json(0, r#"{"body":"caf\u00e9 \ud83d\udc26\n"}"#),
            json(1, r#"{"target":"@alice"}"#),
            json(1, &format!(r#"{{"target":" {a1} "}}"#)),
            json(2, r#"{"handle":"alice"}"#),
            json(2, r#"{}"#),
            json(2, r#"{"handle":null,"extra":[1,2,{"a":true}]}"#),
        ],
    );
}
