//! Every post validation error, and encoding round-trips as property tests.

use proptest::prelude::*;
use starling_core::*;

const NOW: u64 = 1_767_225_600_000;
const DAY: u64 = 24 * 60 * 60 * 1000;

fn alice() -> Identity {
    Identity::from_secret_bytes([1; 32])
}

fn content(body: &str) -> PostContent {
    PostContent {
        author: alice().author(),
        seq: 1,
        ts: Timestamp::from_parts(NOW, 0),
        expires_at: NOW + DAY,
        body: body.to_string(),
        repost_of: None,
    }
}

fn signed(c: PostContent) -> Post {
    Post::sign(c, &alice()).unwrap()
}

fn validate(p: &Post) -> Result<(), PostError> {
    p.validate(NOW, &Limits::default())
}

#[test]
fn a_good_post_passes() {
    validate(&signed(content("hi"))).unwrap();
    validate(&signed(content(&"é".repeat(280)))).unwrap();
    validate(&signed(content("line one\n\tline two"))).unwrap();
}

#[test]
fn empty_body() {
    assert_eq!(validate(&signed(content(""))), Err(PostError::EmptyBody));
    assert_eq!(
        validate(&signed(content(" \n\t "))),
        Err(PostError::EmptyBody)
    );
    assert_eq!(PostError::EmptyBody.to_string(), "a post cannot be empty");
}

#[test]
fn body_of_281_characters() {
    let err = validate(&signed(content(&"a".repeat(281)))).unwrap_err();
    assert_eq!(err, PostError::BodyTooLong { chars: 281 });
    assert_eq!(
        err.to_string(),
        "a post can have at most 280 characters; this one has 281"
    );
    // Characters, not bytes: 281 four-byte scalars.
    assert_eq!(
        validate(&signed(content(&"😀".repeat(281)))),
        Err(PostError::BodyTooLong { chars: 281 })
    );
}

#[test]
fn control_characters() {
    assert_eq!(
        validate(&signed(content("evil \u{1b}[2J"))),
        Err(PostError::ControlCharacter { code: 0x1b })
    );
}

#[test]
fn bad_signature() {
    let p = signed(content("hello"));
    let mut bytes = p.as_bytes().to_vec();
    let n = bytes.len();
    bytes[n - 1] ^= 0x01;
    let forged = Post::decode(&bytes).unwrap();
    assert!(matches!(
        validate(&forged),
        Err(PostError::Signature(SignatureError::BadSignature { .. }))
    ));
}

#[test]
fn altered_body() {
    let p = signed(content("hello"));
    let mut bytes = p.as_bytes().to_vec();
    let at = bytes.len() - 64 - 1;
    bytes[at] = b'O'; // "hellO"
    let altered = Post::decode(&bytes).unwrap();
    assert_eq!(altered.body, "hellO");
    assert!(matches!(validate(&altered), Err(PostError::Signature(_))));
}

#[test]
fn signed_by_someone_else() {
    let mallory = Identity::from_secret_bytes([9; 32]);
    assert!(matches!(
        Post::sign(content("hi"), &mallory),
        Err(SignatureError::WrongKey { .. })
    ));
}

#[test]
fn expiry_before_timestamp() {
    let mut c = content("hi");
    c.expires_at = NOW - 1;
    assert_eq!(
        validate(&signed(c.clone())),
        Err(PostError::ExpiresBeforeTimestamp {
            ts_ms: NOW,
            expires_at: NOW - 1
        })
    );
    c.expires_at = NOW;
    assert!(matches!(
        validate(&signed(c)),
        Err(PostError::ExpiresBeforeTimestamp { .. })
    ));
}

#[test]
fn lifetime_over_the_limit() {
    let mut c = content("hi");
    c.expires_at = NOW + 8 * DAY;
    assert_eq!(
        validate(&signed(c)),
        Err(PostError::LifetimeTooLong {
            lifetime_ms: 8 * DAY,
            max_ms: 7 * DAY
        })
    );
}

#[test]
fn timestamp_too_far_in_the_future() {
    let mut c = content("hi");
    c.ts = Timestamp::from_parts(NOW + 60_000, 0);
    c.expires_at = NOW + DAY;
    assert_eq!(
        validate(&signed(c.clone())),
        Err(PostError::FromFuture {
            ahead_ms: 60_000,
            max_ms: 30_000
        })
    );
    // Within the allowed skew it is fine.
    c.ts = Timestamp::from_parts(NOW + 29_000, 0);
    validate(&signed(c)).unwrap();
}

#[test]
fn expired() {
    let mut c = content("hi");
    c.ts = Timestamp::from_parts(NOW - 2 * DAY, 0);
    c.expires_at = NOW - DAY;
    assert_eq!(
        validate(&signed(c)),
        Err(PostError::Expired { ago_ms: DAY })
    );
}

#[test]
fn zero_seq() {
    let mut c = content("hi");
    c.seq = 0;
    assert_eq!(validate(&signed(c)), Err(PostError::ZeroSeq));
}

#[test]
fn malformed_bytes() {
    let p = signed(content("hello"));
    let bytes = p.as_bytes();
    assert!(matches!(
        Post::decode(&bytes[..10]),
        Err(DecodeError::Truncated { .. })
    ));
    let mut v = bytes.to_vec();
    v[0] = 2;
    assert_eq!(
        Post::decode(&v),
        Err(DecodeError::UnknownVersion {
            found: 2,
            expected: 1
        })
    );
    let mut v = bytes.to_vec();
    v.insert(v.len() - 64, 0); // an extra byte after the body
    assert_eq!(Post::decode(&v), Err(DecodeError::TrailingBytes(1)));
    let mut v = bytes.to_vec();
    v[1 + 32 + 24] = 0x80; // unknown flag
    assert!(matches!(
        Post::decode(&v),
        Err(DecodeError::Invalid { field: "flags", .. })
    ));
    assert!(matches!(
        Post::decode(&vec![1u8; 5000]),
        Err(DecodeError::TooLarge { len: 5000, .. })
    ));
    let mut v = bytes.to_vec();
    let body_at = v.len() - 64 - 5;
    v[body_at] = 0xff; // invalid UTF-8
    assert_eq!(
        Post::decode(&v),
        Err(DecodeError::BadUtf8 { field: "body" })
    );
}

#[test]
fn batch_verification_names_the_bad_one() {
    let mut posts: Vec<Post> = (1..=8)
        .map(|seq| {
            let mut c = content(&format!("post {seq}"));
            c.seq = seq;
            signed(c)
        })
        .collect();
    assert!(Post::verify_many(&posts).iter().all(|ok| *ok));
    let mut bytes = posts[5].as_bytes().to_vec();
    let n = bytes.len();
    bytes[n - 2] ^= 0x40;
    posts[5] = Post::decode(&bytes).unwrap();
    let results = Post::verify_many(&posts);
    assert_eq!(results.iter().filter(|ok| !**ok).count(), 1);
    assert!(!results[5]);
}

proptest! {
    #[test]
    fn post_round_trip(
        seed in any::<[u8; 32]>(),
        seq in 1u64..u64::MAX,
        ms in 0u64..1u64 << 47,
        counter in any::<u16>(),
        life in 1u64..7 * DAY,
        body in "\\PC{1,280}",
        repost in proptest::option::of(1u64..1000),
    ) {
        let id = Identity::from_secret_bytes(seed);
        let c = PostContent {
            author: id.author(),
            seq,
            ts: Timestamp::from_parts(ms, counter),
            expires_at: ms + life,
            body,
            repost_of: repost.map(|seq| PostRef { author: id.author(), seq }),
        };
        let p = Post::sign(c.clone(), &id).unwrap();
        let back = Post::decode(p.as_bytes()).unwrap();
        prop_assert_eq!(back.content(), &c);
        prop_assert_eq!(back.as_bytes(), p.as_bytes());
        back.verify().unwrap();
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1400)) {
        let _ = Post::decode(&bytes);
        let _ = FollowStatement::decode(&bytes);
        let _ = NameClaim::decode(&bytes);
        let _ = ProfileRecord::decode(&bytes);
    }

    #[test]
    fn follow_round_trip(a in any::<[u8; 32]>(), b in any::<[u8; 32]>(), following: bool, ts: u64) {
        let (x, y) = (Identity::from_secret_bytes(a), Identity::from_secret_bytes(b));
        let c = FollowContent { follower: x.author(), followee: y.author(), following, ts: Timestamp(ts) };
        let f = FollowStatement::sign(c.clone(), &x).unwrap();
        let back = FollowStatement::decode(f.as_bytes()).unwrap();
        prop_assert_eq!(back.content(), &c);
        back.verify().unwrap();
    }
}
