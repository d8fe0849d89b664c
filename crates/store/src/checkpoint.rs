//! WAL checkpoints off the commit path. SQLite's automatic checkpoint runs inside
//! whichever `COMMIT` crosses its threshold (1,000 pages), so every few megabytes one
//! write waits for the WAL to be copied into the database and flushed. The writer
//! connection replaces it with a WAL hook ([`install`]) that only tells this thread
//! how long the WAL is; past [`CHECKPOINT_FRAMES`] the thread, on a connection of its
//! own (opened for the first checkpoint and kept while writes go on, closed after an
//! idle wait: three files fewer held at rest), runs a `PASSIVE` checkpoint: it copies what no reader still needs while the
//! writer goes on appending, and never blocks it. (When idle, what is left is copied
//! every few seconds.)
//!
//! The WAL starts over from its beginning only when a write begins with every frame
//! copied, which writes that never pause would never allow (and a checkpoint from
//! another connection cannot win the write lock from a writer that never pauses):
//! once the WAL holds [`RESTART_FRAMES`] frames, this thread asks the writer to run a
//! `RESTART` checkpoint between two batches. Most frames are copied already, so it is
//! short; it happens only under sustained load, and the file is then cut back to
//! `journal_size_limit`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use crate::{Result, StoreError};

/// WAL frames (4 KiB pages) that start a checkpoint: SQLite's own default.
pub(crate) const CHECKPOINT_FRAMES: i64 = 1000;
/// WAL frames past which the writer restarts the WAL between two batches.
pub(crate) const RESTART_FRAMES: i64 = 4096;
/// When idle, what is left in the WAL is copied this often.
const IDLE: Duration = Duration::from_secs(5);

enum Wake {
    Grown,
    Stop,
}

pub(crate) struct Checkpointer {
    wake: SyncSender<Wake>,
    /// The WAL's length in frames after the writer's last commit.
    frames: Arc<AtomicI64>,
    /// Set when the writer should restart the WAL after its current batch.
    pub(crate) restart: Arc<AtomicBool>,
    /// Set by the writer while it commits a durable batch: the WAL hook then counts
    /// the commit's flush.
    pub(crate) durable: Arc<AtomicBool>,
    fsyncs: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

/// `open` opens the thread's read-write connection, each time it checkpoints.
pub(crate) fn spawn(
    open: impl Fn() -> Result<Connection> + Send + 'static,
    fsyncs: Arc<AtomicU64>,
) -> Result<Checkpointer> {
    // One pending wake-up is enough: the thread reads the length when it runs.
    let (wake, woken) = mpsc::sync_channel(1);
    let frames = Arc::new(AtomicI64::new(0));
    let restart = Arc::new(AtomicBool::new(false));
    let (f, r, n) = (frames.clone(), restart.clone(), fsyncs.clone());
    let thread = std::thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || run(open, woken, f, r, n))
        .map_err(|_| StoreError::Closed)?;
    Ok(Checkpointer {
        wake,
        frames,
        restart,
        durable: Arc::new(AtomicBool::new(false)),
        fsyncs,
        thread: Some(thread),
    })
}

/// Puts the WAL hook on the writer's connection: it replaces SQLite's automatic
/// checkpoint, records the WAL's length and wakes the thread past
/// [`CHECKPOINT_FRAMES`].
pub(crate) fn install(writer: &mut Connection, c: &Checkpointer) -> Result<()> {
    let (frames, wake) = (c.frames.clone(), c.wake.clone());
    let (durable, fsyncs) = (c.durable.clone(), c.fsyncs.clone());
    writer.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: i32| {
        // Called after a commit that wrote frames; with synchronous=FULL it flushed
        // the WAL once (a commit that changed nothing writes and flushes nothing).
        if durable.load(Ordering::Relaxed) {
            fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        let pages = i64::from(pages);
        frames.store(pages, Ordering::Relaxed);
        if pages >= CHECKPOINT_FRAMES {
            // Full: a wake-up is pending already; gone: the store is closing.
            let _ = wake.try_send(Wake::Grown);
        }
        Ok(())
    }))?;
    Ok(())
}

fn run(
    open: impl Fn() -> Result<Connection>,
    woken: mpsc::Receiver<Wake>,
    frames: Arc<AtomicI64>,
    restart: Arc<AtomicBool>,
    fsyncs: Arc<AtomicU64>,
) {
    // The WAL length at the last complete checkpoint: nothing new since, no work.
    let mut copied_up_to = 0;
    // Kept while writes keep coming (opening one reads the schema and sets its
    // pragmas: under a stream of small commits that was a third of this thread's
    // work); closed once a wait ends with nothing to copy.
    let mut conn: Option<Connection> = None;
    loop {
        let timed_out = match woken.recv_timeout(IDLE) {
            Ok(Wake::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Ok(Wake::Grown) => false,
            Err(RecvTimeoutError::Timeout) => true,
        };
        let asked = restart.load(Ordering::Relaxed);
        // A restart pending at the writer: a checkpoint here would only make it busy.
        if asked && !timed_out {
            continue;
        }
        if !asked && timed_out && frames.load(Ordering::Relaxed) == copied_up_to {
            conn = None;
            continue;
        }
        if conn.is_none() {
            match open() {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open a connection to checkpoint");
                    continue;
                }
            }
        }
        let Some(conn) = conn.as_ref() else {
            continue;
        };
        if asked {
            // Asked for, and no write came to run it: the writer is idle, it is ours.
            restart_if_asked(conn, &restart, &fsyncs);
            continue;
        }
        match checkpoint(conn, "PASSIVE") {
            Ok((_, log, copied)) => {
                tracing::trace!(log, copied, "WAL checkpoint");
                if copied > 0 {
                    // The WAL is synced before its frames are copied, the database after.
                    fsyncs.fetch_add(2, Ordering::Relaxed);
                }
                if log >= RESTART_FRAMES {
                    restart.store(true, Ordering::Relaxed);
                }
                if copied == log {
                    copied_up_to = frames.load(Ordering::Relaxed);
                }
            }
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
        }
    }
}

/// Runs one checkpoint; returns whether it was kept from finishing (busy), the WAL's
/// frames and those copied.
pub(crate) fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(bool, i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((
            r.get::<_, i64>(0)? != 0,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })
}

/// The writer's side, between two batches: restarts the WAL when the checkpoint
/// thread asked for it (asking again when it could not finish).
pub(crate) fn restart_if_asked(conn: &Connection, restart: &AtomicBool, fsyncs: &AtomicU64) {
    if !restart.load(Ordering::Relaxed) {
        return;
    }
    fsyncs.fetch_add(2, Ordering::Relaxed);
    match checkpoint(conn, "RESTART") {
        Ok((false, _, _)) => restart.store(false, Ordering::Relaxed),
        Ok((true, _, _)) => {}
        Err(e) => {
            restart.store(false, Ordering::Relaxed);
            tracing::warn!(error = %e, "WAL restart failed");
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let _ = self.wake.send(Wake::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
