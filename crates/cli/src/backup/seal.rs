//! The key under a passphrase, and the passphrase itself.
//!
//! Argon2id (RFC 9106's second recommended setting: 64 MiB, 3 passes, 4 lanes)
//! stretches the passphrase with a random salt into a key for XChaCha20-Poly1305,
//! which seals the identity's 32-byte seed under a random nonce. The parameters
//! travel with the sealed seed, within bounds (a hostile file cannot make us
//! allocate gigabytes or spin for hours). A wrong passphrase and an altered seal
//! fail the same authentication check: nothing is learned of the seed either way.
//!
//! The passphrase comes from `--passphrase-file`, else `STARLING_PASSPHRASE`, else
//! the terminal (`/dev/tty`, echo off), asked twice when it protects a new export.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, bail};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use zeroize::Zeroizing;

use super::b64;

pub const KDF: &str = "argon2id";
pub const CIPHER: &str = "xchacha20poly1305";
/// Argon2id cost of new exports.
const M_COST_KIB: u32 = 64 * 1024;
const T_COST: u32 = 3;
const P_COST: u32 = 4;
/// The most an export may ask for: 256 MiB, 10 passes, 16 lanes.
const MAX_M_COST_KIB: u32 = 256 * 1024;
const MAX_T_COST: u32 = 10;
const MAX_P_COST: u32 = 16;
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 24;
const SEED_LEN: usize = 32;
/// Poly1305's tag.
const TAG_LEN: usize = 16;
/// Bound to the sealed seed: it opens only as an export's key.
const AAD: &[u8] = b"starling/export/key/1";
/// The environment variable holding a passphrase (for scripts; other processes of
/// the same user can read a process's environment: prefer a file).
pub const PASSPHRASE_ENV: &str = "STARLING_PASSPHRASE";
/// The longest passphrase read.
const MAX_PASSPHRASE: usize = 1024;

/// The sealed seed and how to open it, as the export's header holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedKey {
    pub kdf: String,
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
    #[serde(with = "b64")]
    pub salt: Vec<u8>,
    pub cipher: String,
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    #[serde(with = "b64")]
    pub sealed: Vec<u8>,
}

#[derive(Debug, Error)]
pub enum SealError {
    #[error("the key is protected with {0:?}, which this Starling does not know")]
    Unknown(String),
    #[error("the key's protection parameters are refused: {0}")]
    Parameters(String),
    #[error("the key's {0} has the wrong length")]
    Length(&'static str),
    #[error("wrong passphrase (or the file's key was altered): nothing was imported")]
    WrongPassphrase,
}

fn cipher(
    passphrase: &[u8],
    salt: &[u8],
    m: u32,
    t: u32,
    p: u32,
) -> Result<XChaCha20Poly1305, SealError> {
    let params =
        Params::new(m, t, p, Some(32)).map_err(|e| SealError::Parameters(e.to_string()))?;
    let mut key = Zeroizing::new([0u8; 32]);
    // At most MAX_M_COST_KIB (checked by the caller); argon2 wipes it when done.
    let mut memory = vec![Block::default(); params.block_count()];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into_with_memory(passphrase, salt, key.as_mut(), &mut memory)
        .map_err(|e| SealError::Parameters(e.to_string()))?;
    Ok(XChaCha20Poly1305::new(key.as_ref().into()))
}

/// Seals `seed` under `passphrase`, with a fresh salt and nonce.
pub fn seal(seed: &[u8; SEED_LEN], passphrase: &[u8]) -> anyhow::Result<SealedKey> {
    let mut salt = vec![0u8; SALT_LEN];
    let mut nonce = vec![0u8; NONCE_LEN];
    getrandom::fill(&mut salt).context("no randomness from the operating system")?;
    getrandom::fill(&mut nonce).context("no randomness from the operating system")?;
    let sealed = cipher(passphrase, &salt, M_COST_KIB, T_COST, P_COST)?
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: seed,
                aad: AAD,
            },
        )
        .map_err(|_| anyhow::anyhow!("cannot encrypt the key"))?;
    Ok(SealedKey {
        kdf: KDF.into(),
        m_cost_kib: M_COST_KIB,
        t_cost: T_COST,
        p_cost: P_COST,
        salt,
        cipher: CIPHER.into(),
        nonce,
        sealed,
    })
}

/// Opens a sealed seed: [`SealError::WrongPassphrase`] unless `passphrase` sealed it.
pub fn unseal(key: &SealedKey, passphrase: &[u8]) -> Result<Zeroizing<[u8; SEED_LEN]>, SealError> {
    if key.kdf != KDF {
        return Err(SealError::Unknown(key.kdf.clone()));
    }
    if key.cipher != CIPHER {
        return Err(SealError::Unknown(key.cipher.clone()));
    }
    if key.m_cost_kib > MAX_M_COST_KIB || key.t_cost > MAX_T_COST || key.p_cost > MAX_P_COST {
        return Err(SealError::Parameters(format!(
            "{} KiB, {} passes, {} lanes; at most {MAX_M_COST_KIB} KiB, {MAX_T_COST} passes, {MAX_P_COST} lanes",
            key.m_cost_kib, key.t_cost, key.p_cost
        )));
    }
    if !(SALT_LEN..=64).contains(&key.salt.len()) {
        return Err(SealError::Length("salt"));
    }
    if key.nonce.len() != NONCE_LEN {
        return Err(SealError::Length("nonce"));
    }
    if key.sealed.len() != SEED_LEN + TAG_LEN {
        return Err(SealError::Length("sealed seed"));
    }
    let plain = Zeroizing::new(
        cipher(
            passphrase,
            &key.salt,
            key.m_cost_kib,
            key.t_cost,
            key.p_cost,
        )?
        .decrypt(
            XNonce::from_slice(&key.nonce),
            Payload {
                msg: &key.sealed,
                aad: AAD,
            },
        )
        .map_err(|_| SealError::WrongPassphrase)?,
    );
    let mut seed = Zeroizing::new([0u8; SEED_LEN]);
    seed.copy_from_slice(&plain);
    Ok(seed)
}

/// The passphrase: from `file` (its first line), else [`PASSPHRASE_ENV`], else asked
/// on the terminal (twice when `confirm`). Never empty.
pub fn passphrase(file: Option<&Path>, confirm: bool) -> anyhow::Result<Zeroizing<String>> {
    let phrase = if let Some(path) = file {
        let mut bytes = Zeroizing::new(Vec::new());
        File::open(path)
            .with_context(|| format!("cannot read the passphrase file {}", path.display()))?
            .take(MAX_PASSPHRASE as u64 + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read the passphrase file {}", path.display()))?;
        first_line(&bytes).with_context(|| format!("the passphrase file {}", path.display()))?
    } else if let Some(value) = std::env::var_os(PASSPHRASE_ENV) {
        let value = Zeroizing::new(value.into_encoded_bytes());
        first_line(&value).with_context(|| format!("${PASSPHRASE_ENV}"))?
    } else {
        ask(confirm)?
    };
    if phrase.is_empty() {
        bail!("the passphrase is empty: an empty passphrase protects nothing");
    }
    Ok(phrase)
}

/// The first line of `bytes` (without `\n` or `\r\n`), as UTF-8.
fn first_line(bytes: &[u8]) -> anyhow::Result<Zeroizing<String>> {
    if bytes.len() > MAX_PASSPHRASE {
        bail!("the passphrase is longer than {MAX_PASSPHRASE} bytes");
    }
    let line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = std::str::from_utf8(line).context("the passphrase is not UTF-8 text")?;
    Ok(Zeroizing::new(text.to_string()))
}

/// Asks on the controlling terminal, echo off.
fn ask(confirm: bool) -> anyhow::Result<Zeroizing<String>> {
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .ok()
        .filter(|t| rustix::termios::isatty(t))
        .with_context(|| {
            format!(
                "no terminal to ask for the passphrase on: pass --passphrase-file FILE or set {PASSPHRASE_ENV}"
            )
        })?;
    let first = hidden_line(&mut tty, "Passphrase: ")?;
    if confirm {
        if first.chars().count() < 12 {
            writeln!(
                tty,
                "warning: a passphrase under 12 characters is weak against anyone who gets the file"
            )?;
        }
        let again = hidden_line(&mut tty, "The same passphrase again: ")?;
        if *again != *first {
            bail!("the two passphrases differ: nothing was written");
        }
    }
    Ok(first)
}

/// Prints `prompt` and reads one line with echo off; the terminal's settings are
/// put back whatever happens.
fn hidden_line(tty: &mut File, prompt: &str) -> anyhow::Result<Zeroizing<String>> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    write!(tty, "{prompt}")?;
    tty.flush()?;
    let saved = tcgetattr(&*tty).context("cannot read the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    quiet.local_modes.insert(LocalModes::ECHONL);
    tcsetattr(&*tty, OptionalActions::Flush, &quiet).context("cannot turn echo off")?;
    let line = read_line(tty);
    let _ = tcsetattr(&*tty, OptionalActions::Flush, &saved);
    let line = line?;
    let text = std::str::from_utf8(&line).context("the passphrase is not UTF-8 text")?;
    Ok(Zeroizing::new(text.to_string()))
}

/// One line (without its end), byte by byte: nothing past it is consumed.
fn read_line(tty: &mut File) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let mut line = Zeroizing::new(Vec::new());
    let mut byte = [0u8; 1];
    loop {
        if tty.read(&mut byte)? == 0 || byte[0] == b'\n' {
            break;
        }
        if line.len() == MAX_PASSPHRASE {
            bail!("the passphrase is longer than {MAX_PASSPHRASE} bytes");
        }
        line.push(byte[0]);
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_wrong_passphrase() {
        let seed = [7u8; 32];
        let sealed = seal(&seed, b"correct horse").unwrap();
        assert_eq!(*unseal(&sealed, b"correct horse").unwrap(), seed);
        assert!(matches!(
            unseal(&sealed, b"correct horsf"),
            Err(SealError::WrongPassphrase)
        ));
        let mut altered = sealed.clone();
        altered.sealed[0] ^= 1;
        assert!(matches!(
            unseal(&altered, b"correct horse"),
            Err(SealError::WrongPassphrase)
        ));
    }

    #[test]
    fn hostile_parameters_are_refused_before_any_work() {
        let sealed = seal(&[1u8; 32], b"pw").unwrap();
        let costly = SealedKey {
            m_cost_kib: 4 * 1024 * 1024,
            ..sealed.clone()
        };
        assert!(matches!(
            unseal(&costly, b"pw"),
            Err(SealError::Parameters(_))
        ));
        let slow = SealedKey {
            t_cost: 1_000_000,
            ..sealed.clone()
        };
        assert!(matches!(
            unseal(&slow, b"pw"),
            Err(SealError::Parameters(_))
        ));
        let other = SealedKey {
            kdf: "md5".into(),
            ..sealed.clone()
        };
        assert!(matches!(unseal(&other, b"pw"), Err(SealError::Unknown(_))));
        let short = SealedKey {
            nonce: vec![0; 12],
            ..sealed
        };
        assert!(matches!(
            unseal(&short, b"pw"),
            Err(SealError::Length("nonce"))
        ));
    }

    #[test]
    fn first_line_only() {
        assert_eq!(*first_line(b"secret\r\nrest").unwrap(), "secret");
        assert_eq!(*first_line(b"secret").unwrap(), "secret");
        assert!(first_line(&[b'x'; MAX_PASSPHRASE + 1]).is_err());
        assert!(first_line(&[0xff, 0xfe]).is_err());
    }
}
