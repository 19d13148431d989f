//! Fire-and-forget work of a mount (early chunk uploads, read-ahead) kept
//! in one set, so that stopping the mount stops all of it.
//!
//! Invariant: after [`Background::stop`] returns, no task spawned here runs
//! any more and none can be added, so nothing of the mount (its keys, its
//! cache lock, its journal) is held by a straggler.

use std::future::Future;
use std::sync::Mutex;

use tokio::task::JoinSet;

/// The mount's background tasks.
#[derive(Debug, Default)]
pub(crate) struct Background {
    /// `None` once stopped.
    set: Mutex<Option<JoinSet<()>>>,
}

impl Background {
    pub(crate) fn new() -> Self {
        Self {
            set: Mutex::new(Some(JoinSet::new())),
        }
    }

    /// Runs `task` in the background; dropped unrun once stopped.
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(set) = set.as_mut() {
            // Forget the finished ones, so the set stays small.
            while set.try_join_next().is_some() {}
            set.spawn(task);
        }
    }

    /// Runs `work` on the blocking pool; dropped unrun once stopped. It
    /// cannot be aborted once started: [`Self::stop`] waits for it.
    pub(crate) fn spawn_blocking<F>(&self, work: F)
    where
        F: FnOnce() + Send + 'static,
    {
        let mut set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(set) = set.as_mut() {
            while set.try_join_next().is_some() {}
            set.spawn_blocking(work);
        }
    }

    /// Aborts every task (a blocking one not yet started is dropped, a
    /// running one finishes) and waits until they are gone.
    pub(crate) async fn stop(&self) {
        let set = self.set.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut set) = set {
            set.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[tokio::test]
    async fn stop_aborts_running_tasks_and_refuses_new_ones() {
        let bg = Background::new();
        let held = Arc::new(());
        let h = held.clone();
        bg.spawn(async move {
            let _h = h;
            std::future::pending::<()>().await;
        });
        assert_eq!(Arc::strong_count(&held), 2);
        bg.stop().await;
        assert_eq!(Arc::strong_count(&held), 1, "the task still holds it");
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        bg.spawn(async move { r.store(true, Ordering::SeqCst) });
        tokio::task::yield_now().await;
        assert!(!ran.load(Ordering::SeqCst));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stop_waits_for_blocking_work() {
        let bg = Background::new();
        let held = Arc::new(());
        let started = Arc::new(AtomicBool::new(false));
        let (h, s) = (held.clone(), started.clone());
        bg.spawn_blocking(move || {
            let _h = h;
            s.store(true, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(200));
        });
        while !started.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
        bg.stop().await;
        assert_eq!(Arc::strong_count(&held), 1, "still running after stop");
    }
}
