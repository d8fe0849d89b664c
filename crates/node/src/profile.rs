//! A profile: one user's data directory. Logging in means opening one; several can
//! live side by side on a machine. [`ProfileDir`] names every file in it and reads
//! and writes the ones with a format; [`Profile`] is an opened profile.
//!
//! ```text
//! <dir>/identity.key   Ed25519 key (libp2p protobuf encoding), mode 0600
//! <dir>/profile.json   handle, key id, creation time
//! <dir>/api.token      bearer token of the local HTTP API, mode 0600
//! <dir>/config.toml    optional `starling up` settings
//! <dir>/starling.db    the SQLite store (+ -wal, -shm), mode 0600
//! <dir>/daemon.lock    held (flock) by the running daemon; holds its pid
//! <dir>/api.json       where the running daemon listens (removed on clean exit), 0600
//! <dir>/daemon.log     a daemon's output, when devnet, the bench or the tests start it
//! <dir>/web.sessions   the web UI's open sessions (one id a line), mode 0600
//! ```
//!
//! The directory is 0700: created so, and tightened when a daemon starts in one made
//! beforehand (or by an older version).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use starling_core::{AuthorId, Handle, HandleError, Identity};
use thiserror::Error;

const KEY_FILE: &str = "identity.key";
const PROFILE_FILE: &str = "profile.json";
const TOKEN_FILE: &str = "api.token";
const CONFIG_FILE: &str = "config.toml";
const DB_FILE: &str = "starling.db";
const LOCK_FILE: &str = "daemon.lock";
const ENDPOINT_FILE: &str = "api.json";
const LOG_FILE: &str = "daemon.log";
const SESSIONS_FILE: &str = "web.sessions";
/// SQLite's companions of the database file.
const DB_SIDE_FILES: [&str; 2] = ["-wal", "-shm"];
/// How long taking the daemon lock retries while it is held: clients hold it
/// (shared) for an instant to see whether a daemon runs; a daemon holds it for good.
const LOCK_PATIENCE: Duration = Duration::from_millis(500);

#[derive(Debug, Error)]
pub enum ProfileError {
    #[error("a profile already exists in {dir} (handle @{handle}); use another --data-dir")]
    Exists { dir: PathBuf, handle: String },
    #[error("no profile in {dir}: create one with `starling init --name <handle>`")]
    NotFound { dir: PathBuf },
    #[error("a daemon is already running for this profile ({dir}, pid {pid})")]
    Locked { dir: PathBuf, pid: String },
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

/// The contents of `profile.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ProfileFile {
    handle: Handle,
    peer_id: AuthorId,
    created_at: u64,
}

/// Where a running daemon listens: the contents of `api.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub pid: u32,
}

/// The profile directory: the one place that knows its file names and formats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileDir {
    path: PathBuf,
}

impl AsRef<Path> for ProfileDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl ProfileDir {
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn display(&self) -> std::path::Display<'_> {
        self.path.display()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Creates the directory (and its parents), readable by its owner only; one that
    /// already exists is tightened to 0700.
    fn create(&self) -> Result<(), ProfileError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.path)
            .map_err(io(&self.path))?;
        set_mode(&self.path, 0o700)
    }

    /// Makes the profile private to its owner before a daemon opens it: the
    /// directory 0700, the database and its `-wal` and `-shm` 0600. A missing
    /// database is created empty with 0600 (SQLite gives its `-wal` and `-shm` the
    /// database's mode, whatever the umask).
    pub fn make_private(&self) -> Result<(), ProfileError> {
        set_mode(&self.path, 0o700)?;
        let db = self.db_path();
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&db)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(&db)(e)),
        }
        for suffix in [""].into_iter().chain(DB_SIDE_FILES) {
            let mut path = db.clone().into_os_string();
            path.push(suffix);
            let path = PathBuf::from(path);
            match fs::metadata(&path) {
                Ok(m) if m.permissions().mode() & 0o077 != 0 => set_mode(&path, 0o600)?,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path)(e)),
            }
        }
        Ok(())
    }

    /// `identity.key`: the Ed25519 key, mode 0600.
    pub fn key_path(&self) -> PathBuf {
        self.file(KEY_FILE)
    }

    /// The key; [`ProfileError::NotFound`] when the directory holds no profile.
    fn read_key(&self) -> Result<Identity, ProfileError> {
        let path = self.key_path();
        let key = match fs::read(&path) {
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ProfileError::NotFound {
                    dir: self.path.clone(),
                });
            }
            Err(e) => return Err(io(&path)(e)),
        };
        Identity::from_keyfile(&key).map_err(|e| ProfileError::Damaged {
            path,
            reason: e.to_string(),
        })
    }

    /// The key of a node without a user (a relay): read, or made and written on
    /// first use (the directory is created, private).
    pub fn node_key(&self) -> Result<Identity, ProfileError> {
        match self.read_key() {
            Err(ProfileError::NotFound { .. }) => {
                self.create()?;
                let identity = Identity::generate();
                self.write_key(&identity)?;
                Ok(identity)
            }
            other => other,
        }
    }

    /// `peers.json` of a node without a store (a relay): peers it knew, to rejoin
    /// through after a restart.
    pub fn peers_path(&self) -> PathBuf {
        self.file("peers.json")
    }

    /// `head.unknown`: the key came back from its words alone, so this profile holds
    /// none of its own posts. Until the node has learned the number of its newest
    /// post from the network, it does not post: a number its followers already hold
    /// would be refused as a second post under one number.
    pub fn head_unknown_path(&self) -> PathBuf {
        self.file("head.unknown")
    }

    pub fn head_unknown(&self) -> bool {
        self.head_unknown_path().exists()
    }

    pub fn mark_head_unknown(&self) -> Result<(), ProfileError> {
        let path = self.head_unknown_path();
        fs::write(
            &path,
            "the key was restored from its words: the newest post's number is learned from the network before the next post\n",
        )
        .map_err(io(&path))
    }

    pub fn clear_head_unknown(&self) -> Result<(), ProfileError> {
        let path = self.head_unknown_path();
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path)(e)),
            _ => Ok(()),
        }
    }

    /// `ports.json`: the ports `starling up` fell back to when the defaults were
    /// taken, tried first at the next start (the web UI link stays the same).
    pub fn ports_path(&self) -> PathBuf {
        self.file("ports.json")
    }

    /// Writes a new key; refuses to replace one.
    fn write_key(&self, identity: &Identity) -> Result<(), ProfileError> {
        write_private(&self.key_path(), &identity.to_keyfile())
    }

    /// `profile.json`: handle, key id, creation time.
    pub fn profile_path(&self) -> PathBuf {
        self.file(PROFILE_FILE)
    }

    fn read_profile(&self) -> Result<ProfileFile, ProfileError> {
        let path = self.profile_path();
        let bytes = fs::read(&path).map_err(io(&path))?;
        serde_json::from_slice(&bytes).map_err(|e| ProfileError::Damaged {
            path,
            reason: e.to_string(),
        })
    }

    /// Replaces `profile.json` at once (readers see the old or the new one).
    fn write_profile(&self, file: &ProfileFile) -> Result<(), ProfileError> {
        let json = serde_json::to_vec_pretty(file).expect("profile serialises");
        replace_private(&self.profile_path(), &json)
    }

    /// `api.token`: the API's bearer token, mode 0600.
    pub fn token_path(&self) -> PathBuf {
        self.file(TOKEN_FILE)
    }

    /// The API token, created if an older profile lacks one.
    pub fn token(&self) -> Result<String, ProfileError> {
        let path = self.token_path();
        if !path.exists() {
            let t = new_secret();
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

    /// `config.toml`: the optional settings of `starling up`.
    pub fn config_path(&self) -> PathBuf {
        self.file(CONFIG_FILE)
    }

    /// `starling.db`: the SQLite store (with its `-wal` and `-shm` files).
    pub fn db_path(&self) -> PathBuf {
        self.file(DB_FILE)
    }

    /// `daemon.lock`: held by the running daemon, holding its pid.
    pub fn lock_path(&self) -> PathBuf {
        self.file(LOCK_FILE)
    }

    /// Takes the daemon lock: [`ProfileError::Locked`] while another daemon runs
    /// on this profile. Released (and the file removed) when dropped.
    pub fn lock(&self) -> Result<DaemonLock, ProfileError> {
        let path = self.lock_path();
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io(&path))?;
        let deadline = Instant::now() + LOCK_PATIENCE;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                // A client looking (`running_endpoint`) lets go at once.
                Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(fs::TryLockError::WouldBlock) => {
                    let pid = fs::read_to_string(&path).unwrap_or_default();
                    return Err(ProfileError::Locked {
                        dir: self.path.clone(),
                        pid: pid.trim().to_string(),
                    });
                }
                Err(fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
            }
        }
        file.set_len(0).map_err(io(&path))?;
        write!(file, "{}", std::process::id()).map_err(io(&path))?;
        Ok(DaemonLock { _file: file, path })
    }

    /// `api.json`: where the running daemon listens.
    pub fn endpoint_path(&self) -> PathBuf {
        self.file(ENDPOINT_FILE)
    }

    /// What `api.json` says; `None` when no daemon has written one. It may be stale
    /// (a daemon killed with SIGKILL leaves it): before trusting the listener with
    /// the token, use [`ProfileDir::running_endpoint`].
    pub fn endpoint(&self) -> Option<Endpoint> {
        let bytes = fs::read(self.endpoint_path()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The endpoint of the daemon running now: `api.json`, only if the daemon lock
    /// is held and by the process that wrote it. `None` after a crash (the port in
    /// a stale `api.json` may belong to any program by now).
    pub fn running_endpoint(&self) -> Option<Endpoint> {
        let endpoint = self.endpoint()?;
        let path = self.lock_path();
        // Never created here: no lock file, no daemon.
        let file = fs::File::open(&path).ok()?;
        match file.try_lock_shared() {
            // Nobody holds it: no daemon.
            Ok(()) => return None,
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(_)) => return None,
        }
        let holder = fs::read_to_string(&path).ok()?;
        (holder.trim() == endpoint.pid.to_string()).then_some(endpoint)
    }

    /// Written to a temporary file and renamed, so readers never see half of it.
    pub fn write_endpoint(&self, endpoint: &Endpoint) -> Result<(), ProfileError> {
        let json = serde_json::to_vec(endpoint).expect("endpoint serialises");
        replace_private(&self.endpoint_path(), &json)
    }

    /// Removes `api.json` (the daemon stopped); nothing to do if it is not there.
    pub fn remove_endpoint(&self) {
        let _ = fs::remove_file(self.endpoint_path());
    }

    /// `daemon.log`: a daemon's output when devnet, the bench or the tests start it.
    pub fn log_path(&self) -> PathBuf {
        self.file(LOG_FILE)
    }

    /// `web.sessions`: the web UI's open sessions, so that a restarted daemon keeps
    /// its browsers signed in; mode 0600 (a session id opens the API as the token
    /// does, and lives beside it).
    pub fn sessions_path(&self) -> PathBuf {
        self.file(SESSIONS_FILE)
    }

    /// The session ids in `web.sessions`, oldest first; none if it does not exist.
    /// Lines that are not a session id (64 lowercase hex digits) are skipped.
    pub fn sessions(&self) -> Result<Vec<String>, ProfileError> {
        let path = self.sessions_path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&path)(e)),
        };
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| l.len() == 64 && l.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .map(String::from)
            .collect())
    }

    /// Replaces `web.sessions` at once (written to a temporary file and renamed).
    pub fn write_sessions(&self, ids: &[String]) -> Result<(), ProfileError> {
        let mut text = ids.join("\n");
        text.push('\n');
        replace_private(&self.sessions_path(), text.as_bytes())
    }
}

/// The daemon lock of a profile, held until dropped.
#[derive(Debug)]
pub struct DaemonLock {
    _file: fs::File,
    path: PathBuf,
}

impl Drop for DaemonLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// An opened profile.
#[derive(Debug, Clone)]
pub struct Profile {
    pub dir: ProfileDir,
    pub identity: Identity,
    pub handle: Handle,
    pub created_at: u64,
}

impl Profile {
    /// Creates a new profile: directory (0700), key (0600), API token (0600).
    pub fn create(dir: &Path, handle: &str, now_ms: u64) -> Result<Self, ProfileError> {
        Self::create_with(dir, handle, Identity::generate(), now_ms)
    }

    /// Like [`Profile::create`], with a given key pair (the simulator derives its
    /// nodes' keys from its seed).
    pub fn create_with(
        dir: &Path,
        handle: &str,
        identity: Identity,
        now_ms: u64,
    ) -> Result<Self, ProfileError> {
        let dir = ProfileDir::new(dir);
        let handle = Handle::parse(handle)?;
        if let Ok(existing) = Self::open(dir.path()) {
            return Err(ProfileError::Exists {
                dir: dir.path,
                handle: existing.handle.to_string(),
            });
        }
        if dir.key_path().exists() {
            return Err(ProfileError::Exists {
                dir: dir.path,
                handle: "unknown".into(),
            });
        }
        dir.create()?;
        dir.write_key(&identity)?;
        write_private(&dir.token_path(), new_secret().as_bytes())?;
        dir.write_profile(&ProfileFile {
            handle: handle.clone(),
            peer_id: identity.author(),
            created_at: now_ms,
        })?;
        Ok(Self {
            dir,
            identity,
            handle,
            created_at: now_ms,
        })
    }

    /// Opens an existing profile.
    pub fn open(dir: &Path) -> Result<Self, ProfileError> {
        let dir = ProfileDir::new(dir);
        let identity = dir.read_key()?;
        let file = dir.read_profile()?;
        if file.peer_id != identity.author() {
            return Err(ProfileError::Damaged {
                path: dir.profile_path(),
                reason: "the key id does not match identity.key".into(),
            });
        }
        Ok(Self {
            dir,
            identity,
            handle: file.handle,
            created_at: file.created_at,
        })
    }

    /// Opens the profile in `dir`, or creates one named `handle` if it has none.
    pub fn open_or_create(dir: &Path, handle: &str, now_ms: u64) -> Result<Self, ProfileError> {
        match Self::open(dir) {
            Err(ProfileError::NotFound { .. }) => Self::create(dir, handle, now_ms),
            other => other,
        }
    }

    /// Changes the profile's handle (after the network confirmed the new one).
    pub fn set_handle(&mut self, handle: Handle) -> Result<(), ProfileError> {
        self.dir.write_profile(&ProfileFile {
            handle: handle.clone(),
            peer_id: self.identity.author(),
            created_at: self.created_at,
        })?;
        self.handle = handle;
        Ok(())
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.db_path()
    }
}

/// 256 random bits, hex: the API token, and the web UI's session ids.
pub fn new_secret() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the OS random source works");
    hex::encode(b)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ProfileError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io(path))
}

/// Creates `path` readable and writable by its owner only; refuses to overwrite.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ProfileError> {
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

/// Replaces `path` (mode 0600) through a temporary file and a rename.
fn replace_private(path: &Path, bytes: &[u8]) -> Result<(), ProfileError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    write_private(&tmp, bytes)?;
    fs::rename(&tmp, path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_open_and_rename() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("alice");
        let p = Profile::create(&dir, "alice", 7).unwrap();
        assert!(matches!(
            Profile::create(&dir, "alice", 8),
            Err(ProfileError::Exists { .. })
        ));
        let mut opened = Profile::open(&dir).unwrap();
        assert_eq!(opened.identity.author(), p.identity.author());
        assert_eq!((opened.handle.as_str(), opened.created_at), ("alice", 7));
        opened.set_handle(Handle::parse("alice2").unwrap()).unwrap();
        assert_eq!(Profile::open(&dir).unwrap().handle.as_str(), "alice2");
        let same = Profile::open_or_create(&dir, "other", 9).unwrap();
        assert_eq!(same.identity.author(), p.identity.author());
        assert!(matches!(
            Profile::open(&tmp.path().join("nobody")),
            Err(ProfileError::NotFound { .. })
        ));
    }

    #[test]
    fn token_lock_and_endpoint() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let p = Profile::create(&tmp.path().join("bob"), "bob", 0).unwrap();
        let dir = &p.dir;
        let token = dir.token().unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(dir.token().unwrap(), token);
        let mode = |path: PathBuf| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dir.token_path()), 0o600);
        assert_eq!(mode(dir.key_path()), 0o600);
        // An older profile without a token gets one.
        fs::remove_file(dir.token_path()).unwrap();
        assert_ne!(dir.token().unwrap(), token);

        let lock = dir.lock().unwrap();
        let held = dir.lock().unwrap_err();
        assert!(matches!(held, ProfileError::Locked { .. }));
        assert!(held.to_string().contains("already running"), "{held}");
        assert!(held.to_string().contains(&std::process::id().to_string()));
        drop(lock);
        assert!(!dir.lock_path().exists());
        drop(dir.lock().unwrap());

        assert_eq!(dir.endpoint(), None);
        let e = Endpoint {
            url: "http://127.0.0.1:1234".into(),
            pid: 42,
        };
        dir.write_endpoint(&e).unwrap();
        dir.write_endpoint(&e).unwrap();
        assert_eq!(dir.endpoint(), Some(e));
        assert_eq!(mode(dir.endpoint_path()), 0o600);
        dir.remove_endpoint();
        assert_eq!(dir.endpoint(), None);
    }

    #[test]
    fn web_sessions_round_trip_privately() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let p = Profile::create(&tmp.path().join("dave"), "dave", 0).unwrap();
        let dir = &p.dir;
        assert!(
            dir.sessions().unwrap().is_empty(),
            "none before the first sign-in"
        );
        let ids = vec![new_secret(), new_secret()];
        dir.write_sessions(&ids).unwrap();
        assert_eq!(dir.sessions().unwrap(), ids);
        let mode = fs::metadata(dir.sessions_path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        // Whatever else the file holds is no session.
        fs::write(dir.sessions_path(), format!("junk\n{}\nABC\n", ids[1])).unwrap();
        assert_eq!(dir.sessions().unwrap(), vec![ids[1].clone()]);
        dir.write_sessions(&[]).unwrap();
        assert!(dir.sessions().unwrap().is_empty());
    }

    #[test]
    fn only_the_lock_holder_endpoint_is_running() {
        let tmp = tempfile::tempdir().unwrap();
        let p = Profile::create(&tmp.path().join("carol"), "carol", 0).unwrap();
        let dir = &p.dir;
        let ours = Endpoint {
            url: "http://127.0.0.1:1234".into(),
            pid: std::process::id(),
        };
        // api.json left behind with no daemon holding the lock.
        dir.write_endpoint(&ours).unwrap();
        assert_eq!(dir.running_endpoint(), None);
        let lock = dir.lock().unwrap();
        assert_eq!(dir.running_endpoint(), Some(ours.clone()));
        // Written by another process than the lock's holder.
        let other = Endpoint { pid: 1, ..ours };
        dir.write_endpoint(&other).unwrap();
        assert_eq!(dir.running_endpoint(), None);
        drop(lock);
        assert_eq!(dir.running_endpoint(), None);
    }

    #[test]
    fn private_modes_whatever_was_there() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("dave");
        fs::create_dir(&path).unwrap();
        set_mode(&path, 0o755).unwrap();
        let p = Profile::create(&path, "dave", 0).unwrap();
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o700);
        set_mode(&path, 0o755).unwrap();
        let wal = path.join("starling.db-wal");
        fs::write(&wal, b"").unwrap();
        set_mode(&wal, 0o644).unwrap();
        p.dir.make_private().unwrap();
        assert_eq!(mode(&path), 0o700);
        assert_eq!(mode(&p.db_path()), 0o600);
        assert_eq!(mode(&wal), 0o600);
    }
}
