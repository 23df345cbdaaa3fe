//! The in-process ready queue: what Redis was in the original platform.
//!
//! Enqueue, requeue, retry and reclaim push the ids of jobs that are ready now into a
//! bounded crossbeam channel and wake everyone waiting; a successful lease pops as many
//! hints as it took. The store stays the record of truth — leasing always claims through
//! the store's ordered index, so priority order holds and a stale hint (a job canceled or
//! taken by another process) is simply dropped. The queue is rebuilt from the store at
//! start. Other processes cannot see this channel; they find work through the store.

use crate::domain::JobId;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::time::Duration;
use tokio::sync::Notify;

/// A hint that a job is ready to lease.
#[derive(Debug, Clone)]
pub struct Ready {
    pub id: JobId,
    pub job_type: String,
}

/// How many hints the queue holds; beyond that the store alone knows (nothing is lost).
const CAPACITY: usize = 100_000;

pub struct ReadyQueue {
    tx: Sender<Ready>,
    rx: Receiver<Ready>,
    notify: Notify,
}

impl Default for ReadyQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl ReadyQueue {
    pub fn new() -> Self {
        let (tx, rx) = crossbeam_channel::bounded(CAPACITY);
        Self {
            tx,
            rx,
            notify: Notify::new(),
        }
    }

    /// Records that these jobs are ready and wakes every waiter.
    pub fn push(&self, ready: impl IntoIterator<Item = Ready>) {
        let mut any = false;
        for r in ready {
            any = true;
            match self.tx.try_send(r) {
                Ok(()) | Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
        if any {
            self.notify.notify_waiters();
        }
    }

    /// Wakes every waiter without a hint (e.g. something changed that only the store knows).
    pub fn wake(&self) {
        self.notify.notify_waiters();
    }

    /// Drops up to `n` hints after a lease took `n` jobs.
    pub fn pop(&self, n: usize) -> Vec<Ready> {
        self.rx.try_iter().take(n).collect()
    }

    /// Hints waiting.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// A future that completes at the next push or wake. Create it (and `enable` it)
    /// before looking at the store so a push in between is not missed.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }

    /// Blocks a plain thread until a hint arrives or `timeout` passes; the hint is put back.
    pub fn wait_blocking(&self, timeout: Duration) -> bool {
        match self.rx.recv_timeout(timeout) {
            Ok(r) => {
                let _ = self.tx.try_send(r);
                true
            }
            Err(_) => false,
        }
    }
}
