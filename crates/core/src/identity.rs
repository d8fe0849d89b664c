//! Identities: an Ed25519 key pair ([`Identity`]) and the public half that names a
//! user everywhere ([`AuthorId`]). A user's id is their libp2p PeerId; on the wire and
//! in signed records the 32-byte public key is used, and the two convert losslessly.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use libp2p_identity::PeerId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    #[error("not a valid Ed25519 public key")]
    BadPublicKey,
    #[error("not a valid key id: {0}")]
    BadPeerId(String),
    #[error("key id is not an Ed25519 key")]
    NotEd25519,
    #[error("key file is not a valid Ed25519 identity")]
    BadKeyFile,
}

/// A user's signing identity. The secret never leaves this type except through
/// [`Identity::to_keyfile`] (for the key file), [`Identity::to_libp2p`] and
/// [`Identity::secret_bytes`] (for a backup, encrypted or as words).
#[derive(Clone)]
pub struct Identity {
    signing: SigningKey,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.author())
    }
}

impl Identity {
    /// A fresh random identity (from the operating system's random source).
    pub fn generate() -> Self {
        let secret = libp2p_identity::ed25519::SecretKey::generate();
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(secret.as_ref());
        Self::from_secret_bytes(bytes)
    }

    /// An identity from its 32-byte secret seed (deterministic; for tests and key files).
    pub fn from_secret_bytes(bytes: [u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(&bytes),
        }
    }

    /// The 32-byte secret seed ([`Identity::from_secret_bytes`] takes it back): what
    /// a backup must hold. The caller wipes it when done.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    pub fn author(&self) -> AuthorId {
        AuthorId(self.signing.verifying_key().to_bytes())
    }

    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.signing.sign(msg).to_bytes()
    }

    /// The libp2p key pair, the same key, for the network layer.
    pub fn to_libp2p(&self) -> libp2p_identity::Keypair {
        let secret = libp2p_identity::ed25519::SecretKey::try_from_bytes(self.signing.to_bytes())
            .expect("a 32-byte seed is always a valid secret key");
        libp2p_identity::Keypair::from(libp2p_identity::ed25519::Keypair::from(secret))
    }

    /// The key file's contents: libp2p's protobuf key encoding, readable by other tools.
    pub fn to_keyfile(&self) -> Vec<u8> {
        self.to_libp2p()
            .to_protobuf_encoding()
            .expect("ed25519 keys always encode")
    }

    pub fn from_keyfile(bytes: &[u8]) -> Result<Self, KeyError> {
        let kp = libp2p_identity::Keypair::from_protobuf_encoding(bytes)
            .map_err(|_| KeyError::BadKeyFile)?;
        let ed = kp.try_into_ed25519().map_err(|_| KeyError::BadKeyFile)?;
        let mut seed = [0u8; 32];
        seed.copy_from_slice(ed.secret().as_ref());
        Ok(Self::from_secret_bytes(seed))
    }
}

/// A user's public identity: an Ed25519 public key. Displayed and parsed as the
/// user's PeerId (`12D3KooW...`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AuthorId([u8; 32]);

impl AuthorId {
    /// Checks that the bytes are a valid curve point before accepting them.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, KeyError> {
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::BadPublicKey)?;
        if key.is_weak() {
            return Err(KeyError::BadPublicKey);
        }
        Ok(Self(bytes))
    }

    /// Takes 32 bytes as they are. Decoders use this: whether the bytes are a usable
    /// key is settled when the signature is verified (which every record received
    /// goes through), so reading our own store never pays for point decompression.
    pub(crate) fn from_bytes_unchecked(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn from_slice(bytes: &[u8]) -> Result<Self, KeyError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| KeyError::BadPublicKey)?;
        Self::from_bytes(arr)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key as a curve point; small-order (weak) keys are refused.
    pub fn verifying_key(&self) -> Result<VerifyingKey, KeyError> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| KeyError::BadPublicKey)?;
        if key.is_weak() {
            return Err(KeyError::BadPublicKey);
        }
        Ok(key)
    }

    /// The PeerId: an identity multihash of the protobuf-encoded public key, built
    /// directly from the bytes (cheap, and infallible).
    pub fn peer_id(&self) -> PeerId {
        // multihash: code 0x00 (identity), length 36; protobuf: field 1 = 1
        // (Ed25519), field 2 = 32 bytes of key.
        let mut mh = [0u8; 38];
        mh[..6].copy_from_slice(&[0x00, 36, 0x08, 0x01, 0x12, 0x20]);
        mh[6..].copy_from_slice(&self.0);
        PeerId::from_bytes(&mh).expect("a 36-byte identity multihash is a valid PeerId")
    }

    pub fn from_peer_id(peer: &PeerId) -> Result<Self, KeyError> {
        // Ed25519 PeerIds are identity multihashes of the protobuf-encoded public key.
        let mh = peer.as_ref();
        if mh.code() != 0 {
            return Err(KeyError::NotEd25519);
        }
        let pk = libp2p_identity::PublicKey::try_decode_protobuf(mh.digest())
            .map_err(|_| KeyError::NotEd25519)?;
        let ed = pk.try_into_ed25519().map_err(|_| KeyError::NotEd25519)?;
        Self::from_bytes(ed.to_bytes())
    }

    /// A short, human-comparable fingerprint of the key: `ab12:cd34:ef56:7890`.
    pub fn fingerprint(&self) -> String {
        let h = hex::encode(&self.0[..8]);
        format!("{}:{}:{}:{}", &h[0..4], &h[4..8], &h[8..12], &h[12..16])
    }
}

impl fmt::Display for AuthorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.peer_id())
    }
}

impl fmt::Debug for AuthorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthorId({})", self.fingerprint())
    }
}

impl FromStr for AuthorId {
    type Err = KeyError;
    /// Only the canonical base58 spelling of a key is accepted: two strings never name
    /// one key (topics, handles' targets and logs compare them as strings).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let peer = PeerId::from_str(s).map_err(|e| KeyError::BadPeerId(e.to_string()))?;
        if peer.to_base58() != s {
            return Err(KeyError::BadPeerId(
                "not the canonical spelling of a key".into(),
            ));
        }
        Self::from_peer_id(&peer)
    }
}

impl Serialize for AuthorId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AuthorId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_round_trip() {
        let id = Identity::from_secret_bytes([7; 32]);
        let author = id.author();
        let text = author.to_string();
        assert!(text.starts_with("12D3KooW"), "{text}");
        assert_eq!(text.parse::<AuthorId>().unwrap(), author);
        assert_eq!(AuthorId::from_peer_id(&author.peer_id()).unwrap(), author);
        assert_eq!(id.to_libp2p().public().to_peer_id(), author.peer_id());
    }

    #[test]
    fn peer_ids_built_from_bytes_match_libp2p() {
        for seed in 0..20u8 {
            let id = Identity::from_secret_bytes([seed; 32]);
            assert_eq!(id.author().peer_id(), id.to_libp2p().public().to_peer_id());
        }
        // Any 32 bytes display without panicking, valid key or not.
        let junk = (0..=255u8)
            .map(|b| [b; 32])
            .find(|b| VerifyingKey::from_bytes(b).is_err())
            .expect("some repeated byte is not a curve point");
        let junk = AuthorId::from_bytes_unchecked(junk);
        assert!(junk.to_string().starts_with("12D3KooW"));
        assert_eq!(junk.verifying_key(), Err(KeyError::BadPublicKey));
        // The identity (small-order) point is refused too.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            AuthorId::from_bytes_unchecked(identity).verifying_key(),
            Err(KeyError::BadPublicKey)
        );
    }

    #[test]
    fn keyfile_round_trip() {
        let id = Identity::generate();
        let again = Identity::from_keyfile(&id.to_keyfile()).unwrap();
        assert_eq!(again.author(), id.author());
        let seeded = Identity::from_secret_bytes(id.secret_bytes());
        assert_eq!(seeded.author(), id.author());
        assert_eq!(
            Identity::from_keyfile(b"garbage").unwrap_err(),
            KeyError::BadKeyFile
        );
    }

    #[test]
    fn bad_key_text_is_an_error() {
        assert!(matches!(
            "not-a-key".parse::<AuthorId>(),
            Err(KeyError::BadPeerId(_))
        ));
    }

    #[test]
    fn fingerprint_shape() {
        let fp = Identity::from_secret_bytes([1; 32]).author().fingerprint();
        assert_eq!(fp.len(), 19);
        assert_eq!(fp.matches(':').count(), 3);
    }
}
