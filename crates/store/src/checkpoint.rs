//! WAL checkpoints off the commit path. SQLite's automatic checkpoint runs inside
//! whichever `COMMIT` crosses its threshold (1,000 pages), so every few megabytes one
//! write waits for the whole WAL to be copied into the database and flushed. The
//! writer connection turns it off (`wal_autocheckpoint=0`) and this thread, on a
//! connection of its own, runs a `PASSIVE` checkpoint ten times a second when
//! something was committed since the last one (`PRAGMA data_version`): it copies what
//! no reader still needs while the writer goes on appending, and never blocks it.
//! The WAL starts over from its beginning only when a write begins with every frame
//! copied, which writes that never pause would never allow (and a checkpoint from
//! another connection cannot win the write lock from a writer that never pauses):
//! once the WAL holds [`RESTART_FRAMES`] frames, this thread asks the writer to run a
//! `RESTART` checkpoint between two batches. Most frames are copied already, so it is
//! short; it happens only under sustained load, and the file is then cut back to
//! `journal_size_limit`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use crate::{Result, StoreError};

/// How often the WAL is checkpointed (when something was committed).
const EVERY: Duration = Duration::from_millis(100);
/// WAL frames (4 KiB pages) past which a checkpoint may pause the writer.
pub(crate) const RESTART_FRAMES: i64 = 4096;

pub(crate) struct Checkpointer {
    /// Dropped to stop the thread.
    stop: Option<mpsc::Sender<()>>,
    /// Set when the writer should restart the WAL after its current batch.
    pub(crate) restart: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

pub(crate) fn spawn(conn: Connection) -> Result<Checkpointer> {
    let (stop, stopped) = mpsc::channel();
    let restart = Arc::new(AtomicBool::new(false));
    let wanted = restart.clone();
    let thread = std::thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || run(conn, stopped, wanted))
        .map_err(|_| StoreError::Closed)?;
    Ok(Checkpointer {
        stop: Some(stop),
        restart,
        thread: Some(thread),
    })
}

fn run(conn: Connection, stopped: mpsc::Receiver<()>, restart: Arc<AtomicBool>) {
    let mut seen: Option<i64> = None;
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
        let version = conn
            .query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0))
            .ok();
        if version.is_some() && version == seen {
            continue;
        }
        match checkpoint(&conn, "PASSIVE") {
            // Copied or not, a WAL this long only starts over once a write begins
            // with every frame copied: make the next one.
            Ok((log, _)) if log >= RESTART_FRAMES => restart.store(true, Ordering::Relaxed),
            Ok((log, copied)) => {
                tracing::trace!(log, copied, "WAL checkpoint");
                if copied == log {
                    seen = version;
                }
            }
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
        }
    }
}

/// Runs one checkpoint; returns the WAL's frames and those copied.
pub(crate) fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
    })
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
