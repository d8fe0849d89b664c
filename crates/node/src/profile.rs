//! A profile: one user's data directory. Logging in means opening one; several can
//! live side by side on a machine.
//!
//! ```text
//! <dir>/identity.key   Ed25519 key (libp2p protobuf encoding), mode 0600
//! <dir>/profile.json   handle, key id, creation time
//! <dir>/api.token      bearer token of the local HTTP API, mode 0600
//! <dir>/starling.db    the SQLite store (+ -wal, -shm)
//! <dir>/daemon.lock    held by the running daemon
//! <dir>/api.json       where the running daemon listens (removed on clean exit)
//! ```

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use starling_core::{AuthorId, Handle, HandleError, Identity};
use thiserror::Error;

pub const KEY_FILE: &str = "identity.key";
pub const PROFILE_FILE: &str = "profile.json";
pub const TOKEN_FILE: &str = "api.token";
pub const DB_FILE: &str = "starling.db";
pub const LOCK_FILE: &str = "daemon.lock";
pub const ENDPOINT_FILE: &str = "api.json";

#[derive(Debug, Error)]
pub enum ProfileError {
    #[error("a profile already exists in {dir} (handle @{handle}); use another --data-dir")]
    Exists { dir: PathBuf, handle: String },
    #[error("no profile in {dir}: create one with `starling init --name <handle>`")]
    NotFound { dir: PathBuf },
    #[error(transparent)]
    Handle(#[from] HandleError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is damaged: {reason}")]
    Damaged { path: PathBuf, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ProfileError + '_ {
    move |source| ProfileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ProfileFile {
    handle: Handle,
    peer_id: AuthorId,
    created_at: u64,
}

/// An opened profile.
#[derive(Debug, Clone)]
pub struct Profile {
    pub dir: PathBuf,
    pub identity: Identity,
    pub handle: Handle,
    pub created_at: u64,
}

impl Profile {
    /// Creates a new profile: directory (0700), key (0600), API token (0600).
    pub fn create(dir: &Path, handle: &str, now_ms: u64) -> Result<Self, ProfileError> {
        let handle = Handle::parse(handle)?;
        if let Ok(existing) = Self::open(dir) {
            return Err(ProfileError::Exists {
                dir: dir.to_path_buf(),
                handle: existing.handle.to_string(),
            });
        }
        let key_path = dir.join(KEY_FILE);
        if key_path.exists() {
            return Err(ProfileError::Exists {
                dir: dir.to_path_buf(),
                handle: "unknown".into(),
            });
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        let identity = Identity::generate();
        write_private(&key_path, &identity.to_keyfile())?;
        write_private(&dir.join(TOKEN_FILE), new_token().as_bytes())?;
        let file = ProfileFile {
            handle: handle.clone(),
            peer_id: identity.author(),
            created_at: now_ms,
        };
        let json = serde_json::to_vec_pretty(&file).expect("profile serialises");
        let path = dir.join(PROFILE_FILE);
        write_private(&path, &json)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            identity,
            handle,
            created_at: now_ms,
        })
    }

    /// Opens an existing profile.
    pub fn open(dir: &Path) -> Result<Self, ProfileError> {
        let key_path = dir.join(KEY_FILE);
        let key = match fs::read(&key_path) {
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ProfileError::NotFound {
                    dir: dir.to_path_buf(),
                });
            }
            Err(e) => return Err(io(&key_path)(e)),
        };
        let identity = Identity::from_keyfile(&key).map_err(|e| ProfileError::Damaged {
            path: key_path.clone(),
            reason: e.to_string(),
        })?;
        let path = dir.join(PROFILE_FILE);
        let bytes = fs::read(&path).map_err(io(&path))?;
        let file: ProfileFile =
            serde_json::from_slice(&bytes).map_err(|e| ProfileError::Damaged {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if file.peer_id != identity.author() {
            return Err(ProfileError::Damaged {
                path,
                reason: "the key id does not match identity.key".into(),
            });
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            identity,
            handle: file.handle,
            created_at: file.created_at,
        })
    }

    /// Changes the profile's handle (after the network confirmed the new one).
    pub fn set_handle(&mut self, handle: Handle) -> Result<(), ProfileError> {
        let file = ProfileFile {
            handle: handle.clone(),
            peer_id: self.identity.author(),
            created_at: self.created_at,
        };
        let json = serde_json::to_vec_pretty(&file).expect("profile serialises");
        let path = self.dir.join(PROFILE_FILE);
        let tmp = self.dir.join(format!("{PROFILE_FILE}.tmp"));
        let _ = fs::remove_file(&tmp);
        write_private(&tmp, &json)?;
        fs::rename(&tmp, &path).map_err(io(&path))?;
        self.handle = handle;
        Ok(())
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.join(DB_FILE)
    }

    /// The API token, created if an older profile lacks one.
    pub fn api_token(&self) -> Result<String, ProfileError> {
        let path = self.dir.join(TOKEN_FILE);
        if !path.exists() {
            let t = new_token();
            write_private(&path, t.as_bytes())?;
            return Ok(t);
        }
        let t = fs::read_to_string(&path).map_err(io(&path))?;
        if t.trim().is_empty() {
            return Err(ProfileError::Damaged {
                path,
                reason: "empty token".into(),
            });
        }
        Ok(t.trim().to_string())
    }
}

/// 256 random bits, hex.
pub fn new_token() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the OS random source works");
    hex::encode(b)
}

/// Creates `path` readable and writable by its owner only; refuses to overwrite.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ProfileError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))?;
    Ok(())
}
