//! What the fuzz targets share: decoding exactly as production does, the input
//! framings of the targets that take more than one byte string, and the invariants
//! checked on everything a decoder accepts.

use serde::Serialize;
use serde::de::DeserializeOwned;
use starling_core::encoding::Writer;
use starling_core::{AuthorId, Identity, Signed, SignedContent};

/// Decodes a request-response message as libp2p's `cbor` codec does: reads at most
/// `limit` bytes of the stream (`io.take(limit).read_to_end`), then
/// `cbor4ii::serde::from_slice`.
pub fn cbor_decode<T: DeserializeOwned>(data: &[u8], limit: u64) -> Option<T> {
    let read = &data[..data.len().min(limit as usize)];
    cbor4ii::serde::from_slice(read).ok()
}

/// Every message the codec accepts survives its own encoding (`write_request` /
/// `write_response` use `cbor4ii::serde::to_vec`) unchanged.
pub fn cbor_round_trip<T>(value: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = cbor4ii::serde::to_vec(Vec::new(), value).expect("encodes");
    let again: T = cbor4ii::serde::from_slice(&bytes).expect("decodes its own encoding");
    assert_eq!(&again, value, "cbor round trip changed the message");
}

/// The canonical-encoding invariant of a decoded record: encoding its content again
/// gives exactly the bytes it was decoded from (one encoding per value).
pub fn assert_canonical<T: SignedContent + std::fmt::Debug>(record: &Signed<T>, wire: &[u8]) {
    assert_eq!(record.as_bytes(), wire, "kept bytes differ from the input");
    let mut w = Writer::with_capacity(wire.len());
    w.u8(T::VERSION);
    record.content().encode(&mut w);
    let mut again = w.into_vec();
    again.extend_from_slice(record.signature());
    assert_eq!(again, wire, "not canonical: {record:?}");
}

/// Splits off a `u16` (big-endian) length-prefixed field.
pub fn take16<'a>(data: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u16::from_be_bytes(data.get(..2)?.try_into().ok()?) as usize;
    let field = data.get(2..2 + len)?;
    *data = &data[2 + len..];
    Some(field)
}

/// Splits off a big-endian `u64`.
pub fn take_u64(data: &mut &[u8]) -> Option<u64> {
    let v = u64::from_be_bytes(data.get(..8)?.try_into().ok()?);
    *data = &data[8..];
    Some(v)
}

/// Appends a `u16` length-prefixed field (for the seed generator).
pub fn put16(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u16).to_be_bytes());
    out.extend_from_slice(field);
}

/// The key of a seed identity; the intake targets treat `identity(0)` as someone the
/// receiving node does not follow.
pub fn identity(n: u8) -> Identity {
    Identity::from_secret_bytes([n.wrapping_add(1); 32])
}

pub fn unfollowed() -> AuthorId {
    identity(0).author()
}
