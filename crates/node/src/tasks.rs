//! The node's background tasks: one set, cancelled together at shutdown, and reaped
//! as they finish so that short-lived tasks (one per inbound request, catch-up,
//! delivery) do not pile up until shutdown.

use std::future::Future;
use std::sync::Mutex;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Most background tasks at once. The long-lived loops start first and always fit;
/// beyond the limit short-lived work (an inbound request, a catch-up round) is
/// refused rather than queued: a flood cannot grow the set.
pub(crate) const MAX_TASKS: usize = 4096;

#[derive(Default)]
pub(crate) struct Tasks {
    /// Work refused because the set was full (shown in `status` as `tasks.refused`).
    refused: std::sync::atomic::AtomicU64,
    cancel: CancellationToken,
    set: Mutex<JoinSet<()>>,
}

impl Tasks {
    /// Runs `fut` until it ends or the node stops. False (and `fut` dropped) when
    /// [`MAX_TASKS`] are running.
    pub(crate) fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) -> bool {
        let cancel = self.cancel.clone();
        let mut set = self.set.lock().expect("tasks poisoned");
        // Finished tasks leave their slot until joined: join them now.
        while set.try_join_next().is_some() {}
        if set.len() >= MAX_TASKS {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return false;
        }
        set.spawn(async move {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {}
                _ = fut => {}
            }
        });
        true
    }

    /// How much work was refused because the set was full.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Tasks still running (or finished and not reaped yet).
    pub(crate) fn len(&self) -> usize {
        self.set.lock().expect("tasks poisoned").len()
    }

    /// The token that stops every task, for loops that watch it themselves.
    pub(crate) fn token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Tells every task to stop, without waiting.
    pub(crate) fn stop(&self) {
        self.cancel.cancel();
    }

    /// Stops every task and waits until they have ended.
    pub(crate) async fn stop_and_wait(&self) {
        self.cancel.cancel();
        let mut set = std::mem::take(&mut *self.set.lock().expect("tasks poisoned"));
        while set.join_next().await.is_some() {}
    }
}
