//! Coalescing: many concurrent calls of one kind (job completions) handled by one
//! set-based statement inside one writer operation, so a batch costs a few round trips
//! instead of a few per call. Every caller still hears its answer only after the
//! transaction that carried its request has committed.
//!
//! A caller puts its request in a shared queue and submits a writer operation that takes
//! whatever is queued. Whichever operation runs first takes the requests queued so far;
//! later operations may find the queue empty. After its commit, the operation that carried
//! a batch hands each caller its own answer (or the commit's error).

use super::PgConn;
use crate::storage::writer::Writer;
use crate::storage::{Result, StoreError};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The most requests one operation takes.
const MAX_BATCH: usize = 1000;

type Reply<T> = Sender<Result<T>>;
/// Handles a whole batch on the writer's connection: one result per request, in order.
pub type RunBatch<Req, T> = fn(&mut PgConn, Vec<Req>) -> Result<Vec<Result<T>>>;
/// How often a request whose batch lost a deadlock is submitted again.
const BUSY_RETRIES: u64 = 8;

pub struct Coalescer<Req, T> {
    tx: Sender<(Req, Reply<T>)>,
    rx: Receiver<(Req, Reply<T>)>,
    /// Callers flushing batches now, at most `max_in_flight`: later callers just wait, and
    /// everything that queues up while the batches in flight commit goes in the next —
    /// group commit.
    flushing: AtomicUsize,
    /// How many batches may be in flight at once: one per writer connection, so no writer
    /// sits idle while requests wait, and no batch waits behind another for a writer.
    max_in_flight: usize,
}

impl<Req: Clone + Send + 'static, T: Send + 'static> Coalescer<Req, T> {
    pub fn new(max_in_flight: usize) -> Arc<Self> {
        let (tx, rx) = crossbeam_channel::unbounded();
        Arc::new(Self {
            tx,
            rx,
            flushing: AtomicUsize::new(0),
            max_in_flight: max_in_flight.max(1),
        })
    }

    /// Takes a flushing turn if fewer than `max_in_flight` batches are in flight.
    fn start_flushing(&self) -> bool {
        self.flushing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max_in_flight).then_some(n + 1)
            })
            .is_ok()
    }

    /// Submits `req` and waits for its answer; a batch that lost a deadlock (its work
    /// rolled back) is submitted again.
    pub fn call(
        self: &Arc<Self>,
        writer: &Writer<PgConn>,
        req: Req,
        run: RunBatch<Req, T>,
    ) -> Result<T> {
        let mut attempt = 0;
        loop {
            match self.call_once(writer, req.clone(), run) {
                Err(StoreError::Busy) if attempt < BUSY_RETRIES => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(attempt));
                }
                other => return other,
            }
        }
    }

    fn call_once(
        self: &Arc<Self>,
        writer: &Writer<PgConn>,
        req: Req,
        run: RunBatch<Req, T>,
    ) -> Result<T> {
        let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
        self.tx
            .send((req, reply_tx))
            .map_err(|_| StoreError::Unavailable("store closed".into()))?;
        loop {
            if self.start_flushing() {
                // This caller flushes, one batch at a time, until nothing is left: what
                // arrives while the batches in flight commit makes up the next batch.
                loop {
                    self.flush(writer, run);
                    self.flushing.fetch_sub(1, Ordering::SeqCst);
                    if self.rx.is_empty() || !self.start_flushing() {
                        break;
                    }
                }
            }
            match reply_rx.recv_timeout(Duration::from_millis(20)) {
                Ok(result) => return result,
                // Not taken yet (or taken by a batch still committing): look again.
                Err(RecvTimeoutError::Timeout) => {}
                // Every path answers before dropping a sender; this is a safety net.
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(StoreError::Unavailable(
                        "the transaction carrying this call did not commit".into(),
                    ))
                }
            }
        }
    }

    /// Runs one writer operation that takes every queued request, and answers them after
    /// its commit. Returns the operation's error, if it failed.
    fn flush(self: &Arc<Self>, writer: &Writer<PgConn>, run: RunBatch<Req, T>) {
        let me = self.clone();
        // The senders of the batch the operation took, kept here so that a failed commit
        // reaches each caller with its real cause.
        let carried: Arc<Mutex<Option<Vec<Reply<T>>>>> = Arc::default();
        let slot = carried.clone();
        let outcome = writer.call(move |c| {
            let taken: Vec<(Req, Reply<T>)> = me.rx.try_iter().take(MAX_BATCH).collect();
            tracing::trace!(batch = taken.len(), "coalesced batch");
            let (reqs, replies): (Vec<Req>, Vec<Reply<T>>) = taken.into_iter().unzip();
            *slot.lock().expect("batch slot") = Some(replies.clone());
            if reqs.is_empty() {
                return Ok(Vec::new());
            }
            let results = run(c, reqs)?;
            Ok(replies.into_iter().zip(results).collect())
        });
        match outcome {
            Ok(answers) => {
                for (reply, result) in answers {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                let taken = carried.lock().expect("batch slot").take();
                match taken {
                    // The batch ran and was rolled back (or its commit failed).
                    Some(replies) => {
                        for r in replies {
                            let _ = r.send(Err(e.clone()));
                        }
                    }
                    // The operation never ran (store closed, no connection, the group
                    // lost before it): nothing queued ran, so fail what is queued now.
                    None => {
                        for (_, r) in self.rx.try_iter() {
                            let _ = r.send(Err(e.clone()));
                        }
                    }
                }
            }
        }
    }
}
