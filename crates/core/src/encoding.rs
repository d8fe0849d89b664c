//! The canonical binary encoding: big-endian integers, fixed-size keys, and
//! length-prefixed UTF-8 strings. One encoding per value, so signatures are
//! reproducible; the full format is documented in `docs/wire-format.md`.

use thiserror::Error;

/// Why a byte string is not a well-formed record.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("record is truncated: {field} needs {needed} more bytes")]
    Truncated { field: &'static str, needed: usize },
    #[error("record has {0} unexpected trailing bytes")]
    TrailingBytes(usize),
    #[error("unknown record version {found} (this node understands version {expected})")]
    UnknownVersion { found: u8, expected: u8 },
    #[error("field {field} is not valid UTF-8")]
    BadUtf8 { field: &'static str },
    #[error("invalid {field}: {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
    #[error("record is {len} bytes, over the limit of {max}")]
    TooLarge { len: usize, max: usize },
}

/// Appends canonical fields to a buffer.
#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
        }
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    /// A string with a one-byte length prefix (at most 255 bytes; callers validate first).
    pub fn str8(&mut self, s: &str) {
        debug_assert!(s.len() <= u8::MAX as usize);
        self.u8(s.len() as u8);
        self.bytes(s.as_bytes());
    }
    /// A string with a two-byte length prefix.
    pub fn str16(&mut self, s: &str) {
        debug_assert!(s.len() <= u16::MAX as usize);
        self.u16(s.len() as u16);
        self.bytes(s.as_bytes());
    }
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads canonical fields from a byte slice; every read is bounds-checked.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated {
                field,
                needed: n - self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }
    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, field)?[0])
    }
    pub fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }
    pub fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }
    pub fn str8(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let n = self.u8(field)? as usize;
        std::str::from_utf8(self.take(n, field)?).map_err(|_| DecodeError::BadUtf8 { field })
    }
    pub fn str16(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let n = self.u16(field)? as usize;
        std::str::from_utf8(self.take(n, field)?).map_err(|_| DecodeError::BadUtf8 { field })
    }
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }
    /// Fails unless every byte was consumed.
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes(self.buf.len()))
        }
    }
}
