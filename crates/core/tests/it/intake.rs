//! The one intake: one check per kind of refusal, each with its code and whether
//! it is held against the sender, and equivocation against holdings and within a
//! batch.

use std::collections::{HashMap, HashSet};

use starling_core::*;

const NOW: u64 = 1_767_225_600_000;
const DAY: u64 = 24 * 60 * 60 * 1000;

fn id(n: u8) -> Identity {
    Identity::from_secret_bytes([n; 32])
}

fn post(who: &Identity, seq: u64, body: &str, ts: u64) -> Post {
    Post::sign(
        PostContent {
            author: who.author(),
            seq,
            ts: Timestamp::from_parts(ts, 0),
            expires_at: ts + DAY,
            body: body.to_string(),
            repost_of: None,
        },
        who,
    )
    .unwrap()
}

#[derive(Default)]
struct Held {
    takes: HashSet<AuthorId>,
    posts: HashMap<PostRef, Vec<u8>>,
}

impl Holdings for Held {
    fn takes(&self, author: &AuthorId) -> bool {
        self.takes.contains(author)
    }
    fn held(&self, id: &PostRef) -> Option<&[u8]> {
        self.posts.get(id).map(|v| v.as_slice())
    }
}

fn refusal(v: &Verdict) -> (&'static str, bool) {
    match v {
        Verdict::Refused(r) => (r.code(), r.blame() == Blame::Sender),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn each_refusal_has_its_code_and_fault() {
    let (alice, bob) = (id(1), id(2));
    let mut held = Held::default();
    held.takes.insert(alice.author());
    let a = alice.author();
    let good = post(&alice, 1, "hi", NOW);
    let mut forged = good.as_bytes().to_vec();
    let last = forged.len() - 1; // the signature's last byte
    forged[last] ^= 1;
    let cases: Vec<(Vec<u8>, Channel, &str, bool)> = vec![
        (vec![1, 2, 3], Channel::Topic(a), "malformed", true),
        (
            good.as_bytes().to_vec(),
            Channel::Topic(bob.author()),
            "wrong_topic",
            true,
        ),
        (
            good.as_bytes().to_vec(),
            Channel::Sync(bob.author()),
            "wrong_author",
            true,
        ),
        (
            post(&bob, 1, "x", NOW).into_bytes(),
            Channel::Topic(bob.author()),
            "not_followed",
            false,
        ),
        (
            post(&alice, 2, "old", NOW - 2 * DAY).into_bytes(),
            Channel::Sync(a),
            "expired",
            false,
        ),
        // A clock an hour ahead, or a minute: a broken clock, not an attack (ignored,
        // fetched again later; the node tells the author).
        (
            post(&alice, 3, "soon", NOW + 3_600_000).into_bytes(),
            Channel::Topic(a),
            "from_future",
            false,
        ),
        (
            post(&alice, 5, "early", NOW + 60_000).into_bytes(),
            Channel::Topic(a),
            "from_future",
            false,
        ),
        (
            post(&alice, 4, "\u{7}", NOW).into_bytes(),
            Channel::Topic(a),
            "control_character",
            true,
        ),
        (forged, Channel::Topic(a), "bad_signature", true),
    ];
    let verdicts = Intake::default().check(
        cases.iter().map(|(b, c, _, _)| (b.as_slice(), *c)),
        &held,
        NOW,
    );
    for ((_, _, code, fault), v) in cases.iter().zip(&verdicts) {
        assert_eq!(refusal(v), (*code, *fault), "{v:?}");
    }
}

#[test]
fn fresh_duplicate_and_equivocation() {
    let alice = id(1);
    let a = alice.author();
    let mut held = Held::default();
    held.takes.insert(a);
    let one = post(&alice, 1, "one", NOW);
    held.posts.insert(one.id(), one.as_bytes().to_vec());
    let one_again = post(&alice, 1, "one, other text", NOW);
    let two = post(&alice, 2, "two", NOW);
    let two_other = post(&alice, 2, "two, other text", NOW);
    let batch = [&one, &one_again, &two, &two, &two_other];
    let v = Intake::default().check(
        batch.iter().map(|p| (p.as_bytes(), Channel::Topic(a))),
        &held,
        NOW,
    );
    assert_eq!(v[0], Verdict::Duplicate(one.id()));
    assert_eq!(refusal(&v[1]).0, "equivocation");
    assert!(matches!(&v[1], Verdict::Refused(r) if r.blame() == Blame::Author));
    assert_eq!(v[2], Verdict::Fresh(two.clone()));
    assert_eq!(
        v[3],
        Verdict::Duplicate(two.id()),
        "same bytes twice in a batch"
    );
    assert_eq!(
        refusal(&v[4]).0,
        "equivocation",
        "two versions in one batch"
    );
    assert!(matches!(&v[4], Verdict::Refused(r) if r.blame() == Blame::Author));
    let msg = match &v[4] {
        Verdict::Refused(r) => r.to_string(),
        _ => unreachable!(),
    };
    assert!(msg.starts_with("equivocation: 12D3KooW"), "{msg}");
}

#[test]
fn screen_then_settle_equals_check() {
    let alice = id(1);
    let a = alice.author();
    let mut held = Held::default();
    held.takes.insert(a);
    let posts: Vec<Post> = (1..=5).map(|s| post(&alice, s, "p", NOW)).collect();
    let intake = Intake::default();
    let screened: Vec<Post> = posts
        .iter()
        .map(|p| {
            intake
                .screen(p.as_bytes(), Channel::Sync(a), true, NOW)
                .unwrap()
        })
        .collect();
    let settled = intake.settle(screened, |id| held.held(id));
    let checked = intake.check(
        posts.iter().map(|p| (p.as_bytes(), Channel::Sync(a))),
        &held,
        NOW,
    );
    assert_eq!(settled, checked);
    assert!(checked.iter().all(|v| matches!(v, Verdict::Fresh(_))));
}
