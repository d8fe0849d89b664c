//! Starling's store: one SQLite database per profile.
//!
//! Layout:
//! - [`migrations`]: the numbered schema migrations (`migrations/NNNN_*.sql`).
//! - `checkpoint`: WAL checkpoints on a thread of their own, off the writer's commits.
//! - [`writer`]: the single writer thread. Every change goes through it; it drains its
//!   queue into one transaction per batch and answers each caller only after commit,
//!   so nothing acknowledged is lost when the process dies.
//! - [`posts`]: post inserts (with duplicate and equivocation detection), the
//!   timeline, the archive, sync ranges, and the garbage collector.
//! - [`social`]: follow statements (ours, with their outbox state and catch-up
//!   position; and our followers'), and handle pins (trust on first use).
//! - [`backup`]: a read-only snapshot of a profile's own records, for an export
//!   (beside a running daemon or without one).
//!
//! Reads use a small pool of read-only connections (WAL lets them run beside the
//! writer). All calls are async and run SQLite on blocking threads.

pub mod backup;
mod checkpoint;
pub mod migrations;
pub mod posts;
pub mod social;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};
use thiserror::Error;
use tokio::sync::Semaphore;

pub use posts::{Cursor, Equivocator, Inserted, PROOFS_PER_AUTHOR, Quota, StoredPost};
pub use social::{FollowerRow, FollowingRow, Pin};
pub use writer::Queued;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the write was not saved: {0}")]
    CommitFailed(String),
    /// The disk holding the database is full: nothing of the write was saved, and
    /// what was saved before is intact.
    #[error(
        "the disk is full: nothing was saved (free some space; what was saved before is intact)"
    )]
    DiskFull,
    #[error("the store is closed")]
    Closed,
    #[error(
        "database {path} was written by a newer Starling (schema {found}, this one knows {known})"
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        known: u32,
    },
    #[error("corrupt row in {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },
}

impl StoreError {
    /// Whether the write failed because the disk is full.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::DiskFull => true,
            StoreError::Sqlite(e) => e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull),
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// SQLite page cache per connection, in KiB.
    pub cache_kib: u32,
    /// Read connections opened at most.
    pub readers: usize,
    /// Most write jobs merged into one transaction.
    pub max_batch: usize,
    /// Run every statement on the caller's thread, on one connection, each write in
    /// a transaction of its own: no writer thread, no blocking pool. For the
    /// deterministic simulator, where nothing may run beside its one thread.
    pub inline: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            cache_kib: 2048,
            readers: 2,
            max_batch: 512,
            inline: false,
        }
    }
}

/// Where writes run.
enum Writer {
    Thread(writer::WriterHandle),
    Inline(Mutex<Connection>),
}

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    config: StoreConfig,
    writer: Writer,
    readers: Mutex<Vec<Connection>>,
    read_permits: Semaphore,
    /// Disk flushes so far: one per durable commit, two per checkpoint that copied
    /// frames (the WAL before, the database after).
    fsyncs: Arc<AtomicU64>,
    /// Checkpoints the WAL beside the writer (none inline: nothing runs beside it).
    _checkpointer: Option<checkpoint::Checkpointer>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &Path, config: StoreConfig) -> Result<Self> {
        let mut conn = open_connection(path, &config, false)?;
        migrations::migrate(&conn, path)?;
        let fsyncs = Arc::new(AtomicU64::new(0));
        let (writer, checkpointer) = if config.inline {
            (Writer::Inline(Mutex::new(conn)), None)
        } else {
            // Checkpoints move off the writer's commits onto their own thread.
            let (p, c) = (path.to_path_buf(), config.clone());
            let checkpointer =
                checkpoint::spawn(move || open_connection(&p, &c, false), fsyncs.clone())?;
            checkpoint::install(&mut conn, &checkpointer)?;
            // After a restart the WAL file is cut back to this many bytes.
            conn.pragma_update(None, "journal_size_limit", 32 * 1024 * 1024)?;
            let restart = checkpointer.restart.clone();
            (
                Writer::Thread(writer::spawn(
                    conn,
                    config.max_batch,
                    restart,
                    checkpointer.durable.clone(),
                    fsyncs.clone(),
                )?),
                Some(checkpointer),
            )
        };
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                read_permits: Semaphore::new(config.readers.max(1)),
                readers: Mutex::new(Vec::new()),
                config,
                writer,
                fsyncs,
                _checkpointer: checkpointer,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Bytes the store takes on disk: the database and its write-ahead log.
    pub fn disk_bytes(&self) -> u64 {
        let wal = {
            let mut p = self.inner.path.clone().into_os_string();
            p.push("-wal");
            std::path::PathBuf::from(p)
        };
        [self.inner.path.as_path(), wal.as_path()]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Disk flushes (fsync) the store has asked for so far: one per durable commit
    /// that wrote something, two per checkpoint that copied frames. None inline (the simulator's store
    /// flushes nothing it counts).
    pub fn fsyncs(&self) -> u64 {
        self.inner.fsyncs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs `f` on the writer inside the current batch's transaction (in a savepoint
    /// of its own: an error undoes only this job). Resolves after a commit that
    /// survives power loss. The typed methods of this crate are built on it; nothing
    /// outside the crate runs SQL.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        match &self.inner.writer {
            Writer::Thread(w) => w.run(true, f).await,
            Writer::Inline(conn) => writer::run_inline(&conn.lock().expect("store poisoned"), f),
        }
    }

    /// Like [`Store::write`], for data that can be fetched again (others' posts): the
    /// commit survives a crash of the process, not necessarily a power loss, and
    /// costs no disk flush.
    pub(crate) async fn write_relaxed<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        match &self.inner.writer {
            Writer::Thread(w) => w.run(false, f).await,
            Writer::Inline(conn) => writer::run_inline(&conn.lock().expect("store poisoned"), f),
        }
    }

    /// [`Store::write_relaxed`], queued: see [`writer::WriterHandle::queue`].
    pub(crate) async fn queue_relaxed<T, F>(&self, f: F) -> Result<Queued<T>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        match &self.inner.writer {
            Writer::Thread(w) => w.queue(false, f).await,
            Writer::Inline(conn) => Ok(Queued::done_now(writer::run_inline(
                &conn.lock().expect("store poisoned"),
                f,
            ))),
        }
    }

    /// Runs `f` on a read connection on a blocking thread.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        if let Writer::Inline(conn) = &self.inner.writer {
            return f(&conn.lock().expect("store poisoned"));
        }
        let _permit = self
            .inner
            .read_permits
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = inner.readers.lock().expect("reader pool poisoned").pop();
            let conn = match pooled {
                Some(c) => c,
                None => open_connection(&inner.path, &inner.config, true)?,
            };
            let out = f(&conn);
            inner
                .readers
                .lock()
                .expect("reader pool poisoned")
                .push(conn);
            out
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// `PRAGMA integrity_check`: `Ok(())` or the problems SQLite reports.
    pub async fn integrity_check(&self) -> Result<Vec<String>> {
        self.read(|c| {
            let mut stmt = c.prepare("PRAGMA integrity_check")?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows.into_iter().filter(|r| r != "ok").collect())
        })
        .await
    }

    /// Waits until every write queued so far is committed, then stops the writer.
    pub async fn close(&self) {
        if let Writer::Thread(w) = &self.inner.writer {
            w.close().await;
        }
    }

    /// Reads a meta value.
    pub async fn meta(&self, key: &'static str) -> Result<Option<Vec<u8>>> {
        self.read(move |c| {
            Ok(
                c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                    .map(Some)
                    .or_else(not_found_none)?,
            )
        })
        .await
    }

    /// Writes a meta value.
    pub async fn set_meta(&self, key: &'static str, value: Vec<u8>) -> Result<()> {
        self.write(move |c| {
            c.prepare_cached("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")?
                .execute(rusqlite::params![key, value])?;
            Ok(())
        })
        .await
    }
}

pub(crate) fn not_found_none<T>(e: rusqlite::Error) -> rusqlite::Result<Option<T>> {
    match e {
        rusqlite::Error::QueryReturnedNoRows => Ok(None),
        e => Err(e),
    }
}

fn open_connection(path: &Path, config: &StoreConfig, read_only: bool) -> Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    if !read_only {
        // WAL: readers never block the writer. synchronous=FULL: a commit is on disk
        // before the writer acknowledges it, so even power loss keeps acked posts.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
    }
    conn.pragma_update(None, "cache_size", -(config.cache_kib as i64))?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.set_prepared_statement_cache_capacity(64);
    // Plans do not depend on bound values. Without this, SQLite (built with STAT4)
    // marks a statement whose plan might change with a parameter (a `LIMIT ?`, a
    // range on an indexed column) and compiles it again at every new binding: the
    // catch-up position query after every received batch was parsed and planned
    // anew each time (7% of a follower's CPU while receiving).
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_job_does_not_undo_its_batch_neighbours() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("starling.db"), StoreConfig::default()).unwrap();
        let bad = store.write(|c| {
            c.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')", [])?;
            c.execute("INSERT INTO no_such_table VALUES (1)", [])?;
            Ok(())
        });
        let good = store.set_meta("other", b"yes".to_vec());
        let (bad, good) = tokio::join!(bad, good);
        assert!(matches!(bad, Err(StoreError::Sqlite(_))));
        good.unwrap();
        assert_eq!(store.meta("other").await.unwrap(), Some(b"yes".to_vec()));
        assert_eq!(store.meta("k").await.unwrap(), None);
    }

    /// A job alone in its transaction runs without a savepoint: when it fails, the
    /// transaction is rolled back, none of its writes stay, and the writer goes on.
    #[tokio::test]
    async fn a_failing_job_alone_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("starling.db"), StoreConfig::default()).unwrap();
        for round in 0..3 {
            let bad = store
                .write(|c| {
                    c.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')", [])?;
                    c.execute("INSERT INTO no_such_table VALUES (1)", [])?;
                    Ok(())
                })
                .await;
            assert!(
                matches!(bad, Err(StoreError::Sqlite(_))),
                "round {round}: {bad:?}"
            );
            assert_eq!(store.meta("k").await.unwrap(), None, "round {round}");
            let value = format!("v{round}").into_bytes();
            store.set_meta("other", value.clone()).await.unwrap();
            assert_eq!(store.meta("other").await.unwrap(), Some(value));
        }
    }
}
