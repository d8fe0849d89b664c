//! The signed envelope every Starling record shares.
//!
//! Wire form: `version (u8) || content || signature (64 bytes)`.
//! Signature input: `domain || version || content`, where the domain
//! (e.g. `starling/post`) keeps a signature for one kind of record from ever being
//! valid for another. The wire bytes are kept, so records are forwarded unchanged.
//!
//! The validity rule (`docs/wire-format.md`, "Signature validity") is Ed25519 with
//! the cofactored equation, canonical encodings and no small-order key or `R`. One
//! record checked alone and the same record checked inside any batch always get the
//! same answer: every node accepts exactly the same set of records.

use std::collections::HashMap;
use std::ops::Deref;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use sha2::{Digest, Sha512};
use thiserror::Error;

use crate::encoding::{DecodeError, Reader, Writer};
use crate::identity::{AuthorId, Identity};

pub const SIGNATURE_LEN: usize = 64;

/// The content of a signed record: how it encodes, and who must sign it.
pub trait SignedContent: Sized + Clone {
    /// Domain separation prefix of the signature input.
    const DOMAIN: &'static [u8];
    /// The format version this node writes and reads.
    const VERSION: u8;
    /// Most bytes of the full wire form (version, content and signature).
    const MAX_LEN: usize;
    fn encode(&self, w: &mut Writer);
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
    fn signer(&self) -> &AuthorId;
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignatureError {
    #[error("bad signature: not signed by {signer}")]
    BadSignature { signer: AuthorId },
    #[error("cannot sign for {signer} with the key of {key}")]
    WrongKey { signer: AuthorId, key: AuthorId },
}

/// A record with its author's signature, and its exact wire bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed<T> {
    content: T,
    signature: [u8; SIGNATURE_LEN],
    wire: Vec<u8>,
}

impl<T: SignedContent> Signed<T> {
    /// Encodes and signs `content`; the identity must be the content's signer.
    pub fn sign(content: T, identity: &Identity) -> Result<Self, SignatureError> {
        if *content.signer() != identity.author() {
            return Err(SignatureError::WrongKey {
                signer: *content.signer(),
                key: identity.author(),
            });
        }
        let mut w = Writer::with_capacity(128);
        w.u8(T::VERSION);
        content.encode(&mut w);
        let unsigned = w.into_vec();
        let signature = identity.sign(&signing_input::<T>(&unsigned));
        let mut wire = unsigned;
        wire.extend_from_slice(&signature);
        Ok(Self {
            content,
            signature,
            wire,
        })
    }

    /// Parses the wire form. This checks structure only; call [`Signed::verify`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > T::MAX_LEN {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                max: T::MAX_LEN,
            });
        }
        if bytes.len() < 1 + SIGNATURE_LEN {
            return Err(DecodeError::Truncated {
                field: "record",
                needed: 1 + SIGNATURE_LEN - bytes.len(),
            });
        }
        let (unsigned, sig) = bytes.split_at(bytes.len() - SIGNATURE_LEN);
        let mut r = Reader::new(unsigned);
        let version = r.u8("version")?;
        if version != T::VERSION {
            return Err(DecodeError::UnknownVersion {
                found: version,
                expected: T::VERSION,
            });
        }
        let content = T::decode(&mut r)?;
        r.finish()?;
        let mut signature = [0u8; SIGNATURE_LEN];
        signature.copy_from_slice(sig);
        Ok(Self {
            content,
            signature,
            wire: bytes.to_vec(),
        })
    }

    /// Checks the signature under Starling's one rule ([`check_one`]): the same
    /// answer [`Signed::verify_many`] gives for this record in any batch.
    pub fn verify(&self) -> Result<(), SignatureError> {
        if check_one(
            self.content.signer().as_bytes(),
            &self.signature,
            &self.signing_input(),
        ) {
            Ok(())
        } else {
            Err(SignatureError::BadSignature {
                signer: *self.content.signer(),
            })
        }
    }

    /// Verifies many signatures at once (about three times as fast as one by one
    /// for a batch of 256). One result per record, in order, always exactly what
    /// [`Signed::verify`] answers for that record: the batch equation is the
    /// cofactored one, so no small-order component can pass in a batch and fail
    /// alone (or the reverse). Records whose encodings fail the rule are refused
    /// before the batch; when the batch of the others fails, each is checked alone so
    /// the bad ones are named.
    pub fn verify_many(records: &[Self]) -> Vec<bool> {
        // Keys repeat within a batch: each is decoded once.
        let mut keys: HashMap<[u8; 32], Option<EdwardsPoint>> = HashMap::new();
        let parts: Vec<Option<Parts>> = records
            .iter()
            .map(|r| {
                let key = r.content.signer().as_bytes();
                let a = (*keys.entry(*key).or_insert_with(|| point(key)))?;
                Parts::with_key(key, a, &r.signature, &r.signing_input())
            })
            .collect();
        let decoded: Vec<&Parts> = parts.iter().flatten().collect();
        if batch_holds(&decoded) {
            return parts.iter().map(Option::is_some).collect();
        }
        parts
            .iter()
            .map(|p| p.as_ref().is_some_and(Parts::holds))
            .collect()
    }

    pub fn content(&self) -> &T {
        &self.content
    }
    pub fn signature(&self) -> &[u8; SIGNATURE_LEN] {
        &self.signature
    }
    /// The exact wire bytes, as signed and as received.
    pub fn as_bytes(&self) -> &[u8] {
        &self.wire
    }
    pub fn into_bytes(self) -> Vec<u8> {
        self.wire
    }
    pub fn signing_input(&self) -> Vec<u8> {
        signing_input::<T>(&self.wire[..self.wire.len() - SIGNATURE_LEN])
    }
}

impl<T> Deref for Signed<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.content
    }
}

fn signing_input<T: SignedContent>(unsigned: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(T::DOMAIN.len() + unsigned.len());
    v.extend_from_slice(T::DOMAIN);
    v.extend_from_slice(unsigned);
    v
}

/// A signature's decoded parts: everything checked but the equation.
struct Parts {
    /// The signer's key `A`.
    a: EdwardsPoint,
    /// The key's 32 bytes (keys repeat within a batch: one point per key).
    a_bytes: [u8; 32],
    r: EdwardsPoint,
    r_bytes: [u8; 32],
    s: Scalar,
    /// `k = SHA-512(R || A || input) mod l`.
    k: Scalar,
}

impl Parts {
    /// `None` when the key or `R` is not the canonical encoding of a point, or is
    /// of small order, or `s` is not below the group order `l`.
    fn new(key: &[u8; 32], signature: &[u8; SIGNATURE_LEN], input: &[u8]) -> Option<Self> {
        Self::with_key(key, point(key)?, signature, input)
    }

    /// [`Parts::new`] with the key already decoded by [`point`].
    fn with_key(
        key: &[u8; 32],
        a: EdwardsPoint,
        signature: &[u8; SIGNATURE_LEN],
        input: &[u8],
    ) -> Option<Self> {
        let (r_bytes, s_bytes) = signature.split_at(32);
        let s = Option::from(Scalar::from_canonical_bytes(
            s_bytes.try_into().expect("32 bytes"),
        ))?;
        let r_bytes: [u8; 32] = r_bytes.try_into().expect("32 bytes");
        let r = point(&r_bytes)?;
        let mut h = Sha512::new();
        h.update(r_bytes);
        h.update(key);
        h.update(input);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        Some(Self {
            a,
            a_bytes: *key,
            r,
            r_bytes,
            s,
            k,
        })
    }

    /// The cofactored equation `[8]([s]B - R - [k]A) = 0`.
    fn holds(&self) -> bool {
        let sb_minus_ka =
            EdwardsPoint::vartime_double_scalar_mul_basepoint(&self.k, &-self.a, &self.s);
        (sb_minus_ka - self.r).mul_by_cofactor().is_identity()
    }
}

/// The point a key or `R` encodes, if the encoding is canonical (`y < p`) and the
/// point is not of small order. (The other non-canonical form, `x = 0` with the sign
/// bit set, is only possible for `y = ±1`: both small-order points.)
fn point(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    // p = 2^255 - 19: y >= p exactly when y's bytes (little-endian, top bit cleared)
    // are ed ff .. ff 7f or above.
    let y_at_least_p =
        bytes[0] >= 0xed && bytes[1..31].iter().all(|b| *b == 0xff) && bytes[31] & 0x7f == 0x7f;
    if y_at_least_p {
        return None;
    }
    let p = CompressedEdwardsY(*bytes).decompress()?;
    (!p.is_small_order()).then_some(p)
}

/// Starling's signature rule for one signature (see the module docs).
fn check_one(key: &[u8; 32], signature: &[u8; SIGNATURE_LEN], input: &[u8]) -> bool {
    Parts::new(key, signature, input).is_some_and(|p| p.holds())
}

/// Whether all of `parts` satisfy their equations, checked as one random linear
/// combination: `[8](sum z_i ([s_i]B - R_i - [k_i]A_i)) = 0`. The weights `z_i` (128
/// bits) are derived from a hash of the whole batch, so the answer is deterministic
/// and a batch with a false equation passes only with probability about 2^-128. The
/// factor 8 removes every small-order component, so this is exactly the
/// conjunction of [`Parts::holds`] (up to that probability), never more or less.
fn batch_holds(parts: &[&Parts]) -> bool {
    match parts {
        [] => return true,
        [one] => return one.holds(),
        _ => {}
    }
    let mut transcript = Sha512::new();
    transcript.update(b"starling/batch-verify");
    for p in parts {
        transcript.update(p.r_bytes);
        transcript.update(p.a_bytes);
        transcript.update(p.k.as_bytes());
        transcript.update(p.s.as_bytes());
    }
    let seed = transcript.finalize();
    let mut b_coefficient = Scalar::ZERO;
    let mut scalars: Vec<Scalar> = Vec::with_capacity(2 * parts.len() + 1);
    let mut points: Vec<EdwardsPoint> = Vec::with_capacity(2 * parts.len() + 1);
    // One term per distinct key: its weights add up (the sum does not depend on
    // the order of the terms).
    let mut key_terms: HashMap<[u8; 32], (EdwardsPoint, Scalar)> = HashMap::new();
    for (i, p) in parts.iter().enumerate() {
        let z = weight(&seed, i);
        b_coefficient += z * p.s;
        scalars.push(-z);
        points.push(p.r);
        key_terms.entry(p.a_bytes).or_insert((p.a, Scalar::ZERO)).1 -= z * p.k;
    }
    for (a, sum) in key_terms.into_values() {
        scalars.push(sum);
        points.push(a);
    }
    scalars.push(b_coefficient);
    points.push(ED25519_BASEPOINT_POINT);
    EdwardsPoint::vartime_multiscalar_mul(scalars, points)
        .mul_by_cofactor()
        .is_identity()
}

/// The `i`-th 128-bit weight of a batch.
fn weight(seed: &[u8], i: usize) -> Scalar {
    let mut h = Sha512::new();
    h.update(seed);
    h.update((i as u64).to_be_bytes());
    let out = h.finalize();
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(&out[..16]);
    Scalar::from_bytes_mod_order(bytes)
}
