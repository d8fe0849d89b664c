//! The single writer. A dedicated thread owns the only read-write connection; jobs
//! arrive on a bounded queue, and the thread drains up to `max_batch` of them into one
//! transaction, one savepoint per job. Callers hear back after the commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::{Result, StoreError};

/// What a job leaves behind: its reply, sent once the batch's fate is known.
type Reply = Box<dyn FnOnce(std::result::Result<(), CommitError>) + Send>;
/// Runs a job: in a savepoint of its own (`true`), or as the transaction's only
/// job (`false`); returns whether it succeeded, and its reply.
type JobFn = Box<dyn FnOnce(&Connection, bool) -> (bool, Reply) + Send>;

/// A write, and whether its commit must survive power loss (`synchronous=FULL`) or
/// only a crash of the process (`NORMAL`, enough for data that can be fetched again).
struct Job {
    run: JobFn,
    durable: bool,
}

enum Msg {
    Job(Job),
    Close(oneshot::Sender<()>),
}

pub struct WriterHandle {
    tx: mpsc::Sender<Msg>,
}

/// Bounded, so a flood of writes waits instead of growing memory.
const QUEUE: usize = 4096;

/// `restart`: set by the checkpointer when the WAL should start over (see
/// `checkpoint`); the writer then restarts it between two batches.
/// `durable` is set while a durable batch commits (the WAL hook counts its flush);
/// `fsyncs` counts the flushes of WAL restarts.
pub fn spawn(
    conn: Connection,
    max_batch: usize,
    restart: Arc<AtomicBool>,
    durable: Arc<AtomicBool>,
    fsyncs: Arc<AtomicU64>,
) -> Result<WriterHandle> {
    let (tx, rx) = mpsc::channel(QUEUE);
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || run(conn, rx, max_batch.max(1), restart, durable, fsyncs))
        .map_err(|_| StoreError::Closed)?;
    Ok(WriterHandle { tx })
}

impl WriterHandle {
    pub async fn run<T, F>(&self, durable: bool, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.queue(durable, f).await?.done().await
    }

    /// Queues a write and resolves once it is queued (writes queued one after the
    /// other by one caller commit in that order), to the write's result to come: the
    /// caller can do other work while the writer commits.
    pub async fn queue<T, F>(&self, durable: bool, f: F) -> Result<Queued<T>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job: JobFn = Box::new(move |conn: &Connection, savepoint: bool| {
            let out = if savepoint {
                in_savepoint(conn, f)
            } else {
                f(conn)
            };
            let ok = out.is_ok();
            let reply: Reply = Box::new(move |committed: std::result::Result<(), CommitError>| {
                let out = match committed {
                    Ok(()) => out,
                    Err(CommitError::DiskFull) => Err(StoreError::DiskFull),
                    Err(CommitError::Other(msg)) => Err(StoreError::CommitFailed(msg)),
                };
                // The caller may have gone away; its result is then simply dropped.
                let _ = reply.send(out);
            });
            (ok, reply)
        });
        self.tx
            .send(Msg::Job(Job { run: job, durable }))
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(Queued(Awaited::Waiting(rx)))
    }

    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// A queued write's result, once its batch has committed (or failed).
pub struct Queued<T>(Awaited<T>);

enum Awaited<T> {
    Waiting(oneshot::Receiver<Result<T>>),
    Done(Result<T>),
}

impl<T> Queued<T> {
    /// A write already done (without the writer thread).
    pub(crate) fn done_now(result: Result<T>) -> Self {
        Queued(Awaited::Done(result))
    }

    /// Waits for the commit; the write's result.
    pub async fn done(self) -> Result<T> {
        match self.0 {
            Awaited::Waiting(rx) => rx.await.map_err(|_| StoreError::Closed)?,
            Awaited::Done(result) => result,
        }
    }
}

/// Runs one write in a transaction of its own, on the caller's thread.
pub(crate) fn run_inline<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    guarded(conn, ["BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"], f)
}

fn in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    guarded(
        conn,
        [
            "SAVEPOINT job",
            "RELEASE job",
            "ROLLBACK TO job; RELEASE job",
        ],
        f,
    )
}

/// Runs one statement, compiled once per connection (`execute_batch` parses its
/// SQL every time: for `BEGIN`, `COMMIT` and savepoints around every job, that was a
/// tenth of the writer's time).
fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Runs `f` between `begin` and `commit`, or `undo` when it fails.
fn guarded<T>(
    conn: &Connection,
    [begin, commit, undo]: [&str; 3],
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    exec_cached(conn, begin)?;
    match f(conn) {
        Ok(v) => {
            exec_cached(conn, commit)?;
            Ok(v)
        }
        Err(e) => {
            // The job's own error is what the caller needs to hear.
            let _ = conn.execute_batch(undo);
            Err(e)
        }
    }
}

fn run(
    conn: Connection,
    mut rx: mpsc::Receiver<Msg>,
    max_batch: usize,
    restart: Arc<AtomicBool>,
    durable_now: Arc<AtomicBool>,
    fsyncs: Arc<AtomicU64>,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(max_batch);
    let mut full_sync = true; // as opened
    let mut closing: Option<oneshot::Sender<()>> = None;
    while closing.is_none() {
        match rx.blocking_recv() {
            Some(Msg::Job(j)) => batch.push(j),
            Some(Msg::Close(done)) => closing = Some(done),
            None => break,
        }
        while batch.len() < max_batch && closing.is_none() {
            match rx.try_recv() {
                Ok(Msg::Job(j)) => batch.push(j),
                Ok(Msg::Close(done)) => closing = Some(done),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            let durable = batch.iter().any(|j| j.durable);
            if durable != full_sync {
                let level = if durable { "FULL" } else { "NORMAL" };
                match conn.pragma_update(None, "synchronous", level) {
                    Ok(()) => full_sync = durable,
                    Err(e) => tracing::warn!(error = %e, "cannot change synchronous"),
                }
            }
            durable_now.store(durable, Ordering::Relaxed);
            commit_batch(&conn, &mut batch);
        }
        crate::checkpoint::restart_if_asked(&conn, &restart, &fsyncs);
    }
    // Anything queued behind the close request is refused: its sender sees Closed.
    drop(rx);
    drop(conn);
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

/// Why a batch's `COMMIT` failed, for each of its callers.
#[derive(Debug, Clone)]
enum CommitError {
    DiskFull,
    Other(String),
}

/// Runs the jobs in one transaction and answers them only after `COMMIT` returned,
/// so an acknowledged write is on disk.
fn commit_batch(conn: &Connection, batch: &mut Vec<Job>) {
    let n = batch.len();
    if let Err(e) = exec_cached(conn, "BEGIN IMMEDIATE") {
        tracing::error!(error = %e, "store: cannot begin a transaction");
        batch.clear(); // dropping the jobs drops their reply senders: callers see Closed
        return;
    }
    // A job alone needs no savepoint (its subjournal copied every page it touched):
    // when it fails, the whole transaction is rolled back instead.
    let alone = n == 1;
    let mut failed_alone = false;
    let replies: Vec<Reply> = batch
        .drain(..)
        .map(|job| {
            let (ok, reply) = (job.run)(conn, !alone);
            failed_alone |= alone && !ok;
            reply
        })
        .collect();
    if failed_alone {
        if let Err(e) = exec_cached(conn, "ROLLBACK") {
            tracing::error!(error = %e, "store: cannot roll back a failed job");
        }
        // The job's own error is what its caller hears.
        for reply in replies {
            reply(Ok(()));
        }
        return;
    }
    let outcome = exec_cached(conn, "COMMIT").map_err(|e| {
        tracing::error!(error = %e, jobs = n, "store: commit failed");
        let _ = conn.execute_batch("ROLLBACK");
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
            CommitError::DiskFull
        } else {
            CommitError::Other(e.to_string())
        }
    });
    for reply in replies {
        reply(outcome.clone());
    }
}
