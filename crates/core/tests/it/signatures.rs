//! One signature rule for every node, whatever the batch: a record checked alone
//! (`verify`) and the same record inside any batch (`verify_many`, the intake) get
//! the same answer. The attacker here holds a secret key and crafts signatures
//! whose math is valid but whose `R` or key carries a small-order component, or
//! whose encodings are not canonical: the cases where cofactorless batch and strict
//! single checks used to disagree.

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::scalar::Scalar;
use proptest::prelude::*;
use sha2::{Digest, Sha512};

use starling_core::*;

const NOW: u64 = 1_767_225_600_000;
const DAY: u64 = 24 * 60 * 60 * 1000;

/// How a post is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An ordinary signature.
    Valid,
    /// `R = [r]B + T` for the small-order point `EIGHT_TORSION[t]` (t in 1..8; 4 is
    /// the order-2 point (0, -1)), `s` computed over those `R` bytes.
    TorsionInR(usize),
    /// The key is `[a]B + T` (a key of mixed order), `R` ordinary.
    TorsionInKey(usize),
    /// `R` is the small-order point itself (`r = 0`), `s = k·a`: the equation holds.
    SmallOrderR(usize),
    /// `R` is the identity, encoded with `y = p + 1` instead of `y = 1`.
    NonCanonicalR,
    /// `R` is the order-2 point (0, -1) encoded with the sign bit set (x = -0).
    NegativeZeroR,
    /// A valid signature with `s + l` instead of `s`.
    NonCanonicalS,
    /// A valid signature with one bit of `s` flipped.
    Forged,
}

use Kind::*;

impl Kind {
    /// What every node answers under the documented rule (docs/wire-format.md).
    fn valid(self) -> bool {
        matches!(self, Valid | TorsionInR(_) | TorsionInKey(_))
    }
}

/// The group order l, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

fn sha512(parts: &[&[u8]]) -> [u8; 64] {
    let mut h = Sha512::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// An author's secret as the attacker uses it: the seed and the signing scalar.
struct Author {
    seed: [u8; 32],
    a: Scalar,
}

impl Author {
    fn new(n: u64) -> Self {
        let mut seed = [9u8; 32];
        seed[..8].copy_from_slice(&n.to_be_bytes());
        let h = sha512(&[&seed]);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&h[..32]);
        bytes[0] &= 248;
        bytes[31] &= 127;
        bytes[31] |= 64;
        let a = Scalar::from_bytes_mod_order(bytes);
        let me = Self { seed, a };
        assert_eq!(
            (ED25519_BASEPOINT_POINT * a).compress().to_bytes(),
            *me.identity().author().as_bytes(),
            "the attacker's scalar is the key's"
        );
        me
    }
    fn identity(&self) -> Identity {
        Identity::from_secret_bytes(self.seed)
    }
}

/// A post by `author` with seq `seq`, signed the way `kind` says.
fn post(author: &Author, seq: u64, kind: Kind) -> Post {
    let honest = Post::sign(
        PostContent {
            author: author.identity().author(),
            seq,
            ts: Timestamp::from_parts(NOW - 1000, 0),
            expires_at: NOW + DAY,
            body: format!("post {seq}, {kind:?}"),
            repost_of: None,
        },
        &author.identity(),
    )
    .unwrap();
    let wire = honest.as_bytes();
    let mut unsigned = wire[..wire.len() - 64].to_vec();
    let nonce = Scalar::from_bytes_mod_order_wide(&sha512(&[b"nonce", &unsigned]));
    let (key, r_point, r_bytes) = match kind {
        Valid => return honest,
        Forged => {
            let mut v = wire.to_vec();
            let n = v.len();
            v[n - 2] ^= 0x40;
            return Post::decode(&v).unwrap();
        }
        NonCanonicalS => {
            let mut v = wire.to_vec();
            let n = v.len();
            let mut carry = 0u16;
            for (i, l) in L.iter().enumerate() {
                let sum = v[n - 32 + i] as u16 + *l as u16 + carry;
                v[n - 32 + i] = sum as u8;
                carry = sum >> 8;
            }
            assert_eq!(carry, 0);
            return Post::decode(&v).unwrap();
        }
        TorsionInR(t) => {
            let r = ED25519_BASEPOINT_POINT * nonce + EIGHT_TORSION[t];
            (
                ED25519_BASEPOINT_POINT * author.a,
                nonce,
                r.compress().to_bytes(),
            )
        }
        TorsionInKey(t) => {
            let key = ED25519_BASEPOINT_POINT * author.a + EIGHT_TORSION[t];
            let r = ED25519_BASEPOINT_POINT * nonce;
            (key, nonce, r.compress().to_bytes())
        }
        SmallOrderR(t) => (
            ED25519_BASEPOINT_POINT * author.a,
            Scalar::ZERO,
            EIGHT_TORSION[t].compress().to_bytes(),
        ),
        NonCanonicalR => {
            // y = p + 1 = 2^255 - 18: ee ff .. ff 7f.
            let mut r = [0xff; 32];
            r[0] = 0xee;
            r[31] = 0x7f;
            (ED25519_BASEPOINT_POINT * author.a, Scalar::ZERO, r)
        }
        NegativeZeroR => {
            let mut r = EIGHT_TORSION[4].compress().to_bytes();
            r[31] |= 0x80;
            (ED25519_BASEPOINT_POINT * author.a, Scalar::ZERO, r)
        }
    };
    let key = key.compress().to_bytes();
    unsigned[1..33].copy_from_slice(&key); // the author field
    let input = Post::decode(&[unsigned.as_slice(), &[0u8; 64]].concat())
        .unwrap()
        .signing_input();
    let k = Scalar::from_bytes_mod_order_wide(&sha512(&[&r_bytes, &key, &input]));
    let s = r_point + k * author.a;
    Post::decode(&[unsigned.as_slice(), &r_bytes, s.as_bytes()].concat()).unwrap()
}

fn crafted() -> Vec<Kind> {
    let mut v = vec![NonCanonicalR, NegativeZeroR, NonCanonicalS, Forged];
    v.extend((1..8).map(TorsionInR));
    v.extend((1..8).map(TorsionInKey));
    v.extend((0..8).map(SmallOrderR));
    v
}

/// 256 valid posts by 16 authors.
fn valid_posts() -> Vec<Post> {
    let authors: Vec<Author> = (0..16).map(Author::new).collect();
    (0..256)
        .map(|i| post(&authors[i % 16], 1 + i as u64 / 16, Valid))
        .collect()
}

fn shuffle<T>(v: &mut [T], rng: &mut fastrand::Rng) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.usize(..=i));
    }
}

#[test]
fn each_crafted_post_alone() {
    let mallory = Author::new(1000);
    for kind in crafted().into_iter().chain([Valid]) {
        let p = post(&mallory, 1, kind);
        assert_eq!(p.verify().is_ok(), kind.valid(), "verify: {kind:?}");
        assert_eq!(
            Post::verify_many(std::slice::from_ref(&p)),
            vec![kind.valid()],
            "verify_many alone: {kind:?}"
        );
        // The honest verifier of the Ed25519 library agrees on the ordinary ones.
        if kind == Valid {
            let key = p.author.verifying_key().unwrap();
            let sig = ed25519_dalek::Signature::from_bytes(p.signature());
            key.verify_strict(&p.signing_input(), &sig).unwrap();
        }
    }
}

/// Small-order components in `R` (the order-2 point (0, -1) among them): the same
/// answer alone and in batches of every size from 2 to 256 at a random position in a
/// random order of the others (each crafted kind in batches of a few sizes), and at
/// every position of a full batch.
#[test]
fn crafted_posts_in_batches_of_every_size_and_position() {
    let valid = valid_posts();
    let mallory = Author::new(1000);
    let mut rng = fastrand::Rng::with_seed(11);
    let main = [TorsionInR(4), SmallOrderR(4), Forged];
    for kind in crafted() {
        let bad = post(&mallory, 1, kind);
        let sizes: Vec<usize> = if main.contains(&kind) {
            (2..=256).collect()
        } else {
            vec![2, 3, 16, 255, 256]
        };
        for n in sizes {
            let mut batch: Vec<Post> = valid[..n - 1].to_vec();
            shuffle(&mut batch, &mut rng);
            let at = rng.usize(..n);
            batch.insert(at, bad.clone());
            let got = Post::verify_many(&batch);
            for (i, ok) in got.iter().enumerate() {
                assert_eq!(
                    *ok,
                    i != at || kind.valid(),
                    "{kind:?} at {at} of {n}: post {i}"
                );
            }
        }
    }
    for kind in [TorsionInR(4), TorsionInKey(4)] {
        let bad = post(&mallory, 1, kind);
        for at in 0..256 {
            let mut batch: Vec<Post> = valid[..255].to_vec();
            shuffle(&mut batch, &mut rng);
            batch.insert(at, bad.clone());
            let got = Post::verify_many(&batch);
            assert_eq!(got[at], kind.valid(), "{kind:?} at {at}");
            let accepted = got.iter().filter(|ok| **ok).count();
            assert_eq!(
                accepted,
                255 + usize::from(kind.valid()),
                "{kind:?} at {at}"
            );
        }
    }
}

/// Several crafted posts in one batch whose small-order components could cancel
/// each other in a cofactorless sum (two order-2 components; an order-4 one and
/// its inverse): still exactly the single answers, in many random orders.
#[test]
fn torsion_that_would_cancel_in_a_sum_is_judged_per_post() {
    let valid = valid_posts();
    let mallory = Author::new(1000);
    let crafted = [
        post(&mallory, 1, TorsionInR(4)),
        post(&mallory, 2, TorsionInR(4)),
        post(&mallory, 3, TorsionInR(2)),
        post(&mallory, 4, TorsionInR(6)),
        post(&mallory, 5, SmallOrderR(4)),
        post(&mallory, 6, SmallOrderR(4)),
        post(&mallory, 7, NonCanonicalR),
        post(&mallory, 8, TorsionInKey(4)),
    ];
    let alone: Vec<bool> = crafted.iter().map(|p| p.verify().is_ok()).collect();
    assert_eq!(
        alone,
        [true, true, true, true, false, false, false, true],
        "the rule"
    );
    let mut rng = fastrand::Rng::with_seed(12);
    for _ in 0..200 {
        let n = rng.usize(0..=248);
        let mut batch: Vec<Post> = valid[..n].iter().cloned().chain(crafted.clone()).collect();
        shuffle(&mut batch, &mut rng);
        let want: Vec<bool> = batch.iter().map(|p| p.verify().is_ok()).collect();
        assert_eq!(Post::verify_many(&batch), want);
    }
}

/// The node's intake (core's `Intake::check`, which the node runs on every gossip
/// batch and sync page) refuses the crafted post with a small-order `R` in a full
/// batch and takes the rest, wherever it sits.
#[test]
fn the_intake_judges_crafted_posts_as_alone() {
    struct TakesAll;
    impl Holdings for TakesAll {
        fn takes(&self, _: &AuthorId) -> bool {
            true
        }
        fn held(&self, _: &PostRef) -> Option<&[u8]> {
            None
        }
    }
    let valid = valid_posts();
    let mallory = Author::new(1000);
    for kind in [SmallOrderR(4), NonCanonicalR, TorsionInR(4)] {
        let bad = post(&mallory, 1, kind);
        for at in [0, 77, 255] {
            let mut batch: Vec<&Post> = valid[..255].iter().collect();
            batch.insert(at, &bad);
            let verdicts = Intake::default().check(
                batch
                    .iter()
                    .map(|p| (p.as_bytes(), Channel::Topic(p.author))),
                &TakesAll,
                NOW,
            );
            for (i, v) in verdicts.iter().enumerate() {
                if i == at && !kind.valid() {
                    assert!(
                        matches!(v, Verdict::Refused(r) if r.code() == "bad_signature"),
                        "{kind:?} at {at}: {v:?}"
                    );
                } else {
                    assert!(
                        matches!(v, Verdict::Fresh(_)),
                        "{kind:?} at {at}, {i}: {v:?}"
                    );
                }
            }
        }
    }
}

fn any_kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        4 => Just(Valid),
        1 => (0usize..8).prop_map(TorsionInR),
        1 => (0usize..8).prop_map(TorsionInKey),
        1 => (0usize..8).prop_map(SmallOrderR),
        1 => Just(NonCanonicalR),
        1 => Just(NegativeZeroR),
        1 => Just(NonCanonicalS),
        1 => Just(Forged),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// For batches mixing valid, invalid, small-order-R, torsion-in-R, mixed-order
    /// keys and non-canonical signatures: `verify_many(batch)[i] == verify(batch[i])`,
    /// and both are the documented rule.
    #[test]
    fn verify_many_is_verify_for_each(kinds in proptest::collection::vec((any_kind(), 0u64..4), 1..80)) {
        let authors: Vec<Author> = (0..4).map(|n| Author::new(2000 + n)).collect();
        let batch: Vec<Post> = kinds
            .iter()
            .enumerate()
            .map(|(i, (kind, who))| post(&authors[*who as usize], 1 + i as u64, *kind))
            .collect();
        let many = Post::verify_many(&batch);
        for (i, ((kind, _), p)) in kinds.iter().zip(&batch).enumerate() {
            prop_assert_eq!(many[i], p.verify().is_ok(), "post {} ({:?})", i, kind);
            prop_assert_eq!(many[i], kind.valid(), "post {} ({:?})", i, kind);
        }
    }
}
