//! The test vectors in `docs/wire-format.md`, checked byte for byte.

use starling_core::signed::SignedContent;
use starling_core::*;

const DOC: &str = include_str!("../../../../docs/wire-format.md");

struct Vector {
    name: String,
    secret: [u8; 32],
    wire: Vec<u8>,
}

fn vectors() -> Vec<Vector> {
    let mut out = Vec::new();
    let mut lines = DOC.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.strip_prefix("```vector ") else {
            continue;
        };
        let mut secret = None;
        let mut wire = None;
        for l in lines.by_ref() {
            if l.starts_with("```") {
                break;
            }
            match l.split_once(' ') {
                Some(("secret", v)) => secret = Some(hex::decode(v).unwrap()),
                Some(("wire", v)) => wire = Some(hex::decode(v).unwrap()),
                _ => panic!("unexpected line in vector {name}: {l}"),
            }
        }
        out.push(Vector {
            name: name.to_string(),
            secret: secret.unwrap().try_into().unwrap(),
            wire: wire.unwrap(),
        });
    }
    out
}

fn vector(name: &str) -> Vector {
    vectors()
        .into_iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("vector {name} missing from docs/wire-format.md"))
}

/// Decodes, verifies, re-signs: the bytes must come out identical.
fn check_resign<T: SignedContent + std::fmt::Debug + PartialEq>(v: &Vector) -> Signed<T> {
    let rec = Signed::<T>::decode(&v.wire).unwrap_or_else(|e| panic!("{}: {e}", v.name));
    rec.verify().unwrap();
    let id = Identity::from_secret_bytes(v.secret);
    let again = Signed::sign(rec.content().clone(), &id).unwrap();
    assert_eq!(
        hex::encode(again.as_bytes()),
        hex::encode(&v.wire),
        "{}",
        v.name
    );
    rec
}

#[test]
fn the_document_holds_all_vectors() {
    let names: Vec<String> = vectors().into_iter().map(|v| v.name).collect();
    assert_eq!(
        names,
        ["post-1", "post-7-repost", "follow", "name", "profile"]
    );
}

#[test]
fn post_vectors() {
    let alice = Identity::from_secret_bytes([1; 32]).author();
    assert_eq!(
        alice.to_string(),
        "12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5"
    );
    assert_eq!(alice.fingerprint(), "8a88:e3dd:7409:f195");

    let p: Post = check_resign(&vector("post-1"));
    assert_eq!(p.author, alice);
    assert_eq!(p.seq, 1);
    assert_eq!(p.ts, Timestamp::from_parts(1_767_225_600_000, 0));
    assert_eq!(p.expires_at, 1_767_312_000_000);
    assert_eq!(p.body, "hello, starling");
    assert_eq!(p.repost_of, None);

    let r: Post = check_resign(&vector("post-7-repost"));
    assert_eq!(r.seq, 7);
    assert_eq!(r.ts, Timestamp::from_parts(1_767_312_000_500, 3));
    assert_eq!(r.body, "été ☀️ again");
    assert_eq!(r.body.chars().count(), 12);
    assert_eq!(
        r.repost_of,
        Some(PostRef {
            author: alice,
            seq: 1
        })
    );
}

#[test]
fn follow_name_and_profile_vectors() {
    let alice = Identity::from_secret_bytes([1; 32]).author();
    let bob = Identity::from_secret_bytes([2; 32]).author();

    let f: FollowStatement = check_resign(&vector("follow"));
    assert_eq!((f.follower, f.followee, f.following), (bob, alice, true));
    assert_eq!(f.ts, Timestamp::from_parts(1_767_225_600_000, 1));
    f.validate().unwrap();

    let n: NameClaim = check_resign(&vector("name"));
    assert_eq!(n.handle.as_str(), "alice");
    assert_eq!(n.owner, alice);
    assert_eq!(n.claimed_at, 1_767_225_600_000);
    NameClaim::from_record(b"/starling/name/alice", &vector("name").wire).unwrap();
    assert_eq!(
        NameClaim::from_record(b"/starling/name/bob", &vector("name").wire),
        Err(RecordError::WrongKey)
    );

    let p: ProfileRecord = check_resign(&vector("profile"));
    assert_eq!(p.version, 2);
    assert_eq!(p.head_seq, 7);
    assert_eq!(p.handle.as_ref().unwrap().as_str(), "alice");
}

#[test]
fn a_signature_for_one_kind_is_not_valid_for_another() {
    // Same signer; splice the post's signature onto the claim: refused.
    let post = vector("post-1").wire;
    let mut claim = vector("name").wire;
    let n = claim.len();
    claim[n - 64..].copy_from_slice(&post[post.len() - 64..]);
    let c = NameClaim::decode(&claim).unwrap();
    assert!(matches!(
        c.verify(),
        Err(SignatureError::BadSignature { .. })
    ));
}
