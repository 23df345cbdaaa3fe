//! The in-process ready queue: what Redis was in the original platform.
//!
//! Enqueue, requeue, retry and reclaim push the ids of jobs that are ready now into a
//! bounded crossbeam channel and wake as many waiters as there are new jobs — a waiter
//! whose job types match, oldest waiter first — so ten new jobs wake ten of a thousand
//! parked long-polls, not all of them. A successful lease pops as many hints as it took.
//! The store stays the record of truth — leasing always claims through the store's
//! ordered index, so priority order holds and a stale hint (a job canceled or taken by
//! another process) is simply dropped. The queue is rebuilt from the store at start.
//! Other processes cannot see this channel; they find work through the store (a wake-up
//! from another node, which carries no count, wakes every waiter; a wake-up lost to a
//! waiter that went away is covered by the waiters' bounded fallback poll).

use crate::domain::{JobId, JobType};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
    waiters: Mutex<Vec<Entry>>,
    next_waiter: AtomicU64,
}

/// One registered waiter: the types it leases (empty: any) and how to wake it.
struct Entry {
    id: u64,
    types: Arc<[String]>,
    notify: Arc<Notify>,
    woken: bool,
}

impl Entry {
    /// The type, among those with new jobs left to hand out, that this waiter leases.
    fn wants<'k>(&self, counts: &HashMap<&'k str, usize>) -> Option<&'k str> {
        counts
            .iter()
            .find(|(t, n)| **n > 0 && (self.types.is_empty() || self.types.iter().any(|w| w == *t)))
            .map(|(t, _)| *t)
    }
}

/// A registered waiter: create it before looking at the store, so a push in between is
/// not missed (the wake is kept until [`Waiter::woken`] is awaited). Dropping it
/// unregisters it.
pub struct Waiter<'q> {
    queue: &'q ReadyQueue,
    id: u64,
    notify: Arc<Notify>,
}

impl Waiter<'_> {
    /// Completes when a push with a job of this waiter's types, or a general wake, reaches it.
    pub async fn woken(&self) {
        self.notify.notified().await
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut w = self.queue.waiters.lock().expect("waiters lock");
        if let Some(i) = w.iter().position(|e| e.id == self.id) {
            w.remove(i);
        }
    }
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
            waiters: Mutex::new(Vec::new()),
            next_waiter: AtomicU64::new(0),
        }
    }

    /// Records that these jobs are ready and wakes one waiter per job, among the waiters
    /// that lease its type.
    pub fn push(&self, ready: impl IntoIterator<Item = Ready>) {
        let ready: Vec<Ready> = ready.into_iter().collect();
        if ready.is_empty() {
            return;
        }
        self.wake_for(&ready);
        for r in ready {
            match self.tx.try_send(r) {
                Ok(()) | Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }

    /// Wakes, oldest first, one waiter per ready job, each for a type it leases. Nothing is
    /// counted while nobody waits (the common case on a busy enqueue path).
    fn wake_for(&self, ready: &[Ready]) {
        let mut waiters = self.waiters.lock().expect("waiters lock");
        if waiters.iter().all(|e| e.woken) {
            return;
        }
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for r in ready {
            *counts.entry(r.job_type.as_str()).or_default() += 1;
        }
        let mut left = ready.len();
        for e in waiters.iter_mut().filter(|e| !e.woken) {
            if left == 0 {
                break;
            }
            if let Some(t) = e.wants(&counts) {
                *counts.get_mut(t).expect("counted type") -= 1;
                left -= 1;
                e.woken = true;
                e.notify.notify_one();
            }
        }
    }

    /// Wakes every waiter without a hint (something changed that only the store knows,
    /// such as an enqueue on another node).
    pub fn wake(&self) {
        for e in self.waiters.lock().expect("waiters lock").iter_mut() {
            e.woken = true;
            e.notify.notify_one();
        }
    }

    /// Registers a waiter for jobs of `types` (empty: any type).
    pub fn waiter(&self, types: &[JobType]) -> Waiter<'_> {
        let id = self.next_waiter.fetch_add(1, Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        self.waiters.lock().expect("waiters lock").push(Entry {
            id,
            types: types.iter().map(|t| t.as_str().to_string()).collect(),
            notify: notify.clone(),
            woken: false,
        });
        Waiter {
            queue: self,
            id,
            notify,
        }
    }

    /// Waiters registered now (for tests and the long-poll gauge's neighbours).
    pub fn waiting(&self) -> usize {
        self.waiters.lock().expect("waiters lock").len()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    fn ready(t: &str) -> Ready {
        Ready {
            id: JobId::new(),
            job_type: t.to_string(),
        }
    }

    fn ty(t: &str) -> JobType {
        JobType::parse("type", t).unwrap()
    }

    /// Whether the waiter's wake-up has arrived, without waiting for it.
    fn is_woken(w: &Waiter<'_>) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        matches!(pin!(w.woken()).poll(&mut cx), Poll::Ready(()))
    }

    #[test]
    fn a_push_wakes_one_waiter_per_job_oldest_first() {
        let q = ReadyQueue::new();
        let waiters: Vec<_> = (0..10).map(|_| q.waiter(&[])).collect();
        q.push([ready("a"), ready("b"), ready("a")]);
        let woken: Vec<bool> = waiters.iter().map(is_woken).collect();
        assert_eq!(
            woken,
            [true, true, true, false, false, false, false, false, false, false]
        );
        // A second push reaches the next ones, not those already woken.
        q.push([ready("c")]);
        assert!(is_woken(&waiters[3]));
        assert!(!is_woken(&waiters[4]));
    }

    #[test]
    fn a_push_wakes_only_waiters_of_its_types() {
        let q = ReadyQueue::new();
        let for_a = q.waiter(&[ty("a")]);
        let for_b = q.waiter(&[ty("b"), ty("c")]);
        let for_b2 = q.waiter(&[ty("b")]);
        let any = q.waiter(&[]);
        q.push([ready("b")]);
        assert!(!is_woken(&for_a));
        assert!(is_woken(&for_b));
        assert!(!is_woken(&for_b2));
        assert!(!is_woken(&any));
        q.push([ready("z")]);
        assert!(!is_woken(&for_a) && !is_woken(&for_b2));
        assert!(is_woken(&any));
    }

    #[test]
    fn a_wake_reaches_everyone_and_a_dropped_waiter_is_forgotten() {
        let q = ReadyQueue::new();
        let w1 = q.waiter(&[]);
        let w2 = q.waiter(&[ty("a")]);
        assert_eq!(q.waiting(), 2);
        drop(w1);
        assert_eq!(q.waiting(), 1);
        q.wake();
        assert!(is_woken(&w2));
        // A push before anyone waits wakes nobody and is not kept for later waiters.
        drop(w2);
        q.push([ready("a")]);
        let late = q.waiter(&[]);
        assert!(!is_woken(&late));
        assert_eq!(q.len(), 1);
    }
}
