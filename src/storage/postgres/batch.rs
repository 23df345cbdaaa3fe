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
use crate::storage::writer::{self, Writer};
use crate::storage::{Result, StoreError};
use crossbeam_channel::{Receiver, Sender};
use std::sync::Arc;

/// The most requests one statement takes.
const MAX_BATCH: usize = 1000;

/// How a request is answered, once the transaction carrying it has committed (or failed).
pub type Reply<T> = Box<dyn FnOnce(Result<T>) + Send>;
/// Handles a whole batch on the writer's connection: one result per request, in order.
pub type RunBatch<Req, T> = fn(&mut PgConn, Vec<Req>) -> Result<Vec<Result<T>>>;

pub struct Coalescer<Req, T> {
    tx: Sender<(Req, Reply<T>)>,
    rx: Receiver<(Req, Reply<T>)>,
}

impl<Req: Clone + Send + 'static, T: Send + 'static> Coalescer<Req, T> {
    pub fn new() -> Arc<Self> {
        let (tx, rx) = crossbeam_channel::unbounded();
        Arc::new(Self { tx, rx })
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
                Err(StoreError::Busy) if attempt < crate::storage::BUSY_RETRIES => {
                    attempt += 1;
                    std::thread::sleep(crate::storage::busy_backoff(attempt));
                }
                other => return other,
            }
        }
    }

    /// Queues `req` and waits for its answer, which comes after the commit.
    fn call_once(
        self: &Arc<Self>,
        writer: &Writer<PgConn>,
        req: Req,
        run: RunBatch<Req, T>,
    ) -> Result<T> {
        let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
        self.submit(
            writer,
            req,
            run,
            Box::new(move |r| {
                let _ = reply_tx.send(r);
            }),
        );
        // Every path answers before dropping a sender (a panic drops it: then this call
        // fails); this is a safety net.
        reply_rx.recv().unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the transaction carrying this call did not commit".into(),
            ))
        })
    }

    /// Queues `req` with a writer operation that carries every request queued when it runs
    /// (an earlier one may have carried them all: then it sends nothing, not even its
    /// savepoint); `reply` gets the answer after the commit, on the writer's thread. Nothing
    /// waits on anything but the writer: while the writers are busy, requests pile up, and
    /// the next operation to run takes them all.
    pub fn submit(
        self: &Arc<Self>,
        writer: &Writer<PgConn>,
        req: Req,
        run: RunBatch<Req, T>,
        reply: Reply<T>,
    ) {
        if let Err(refused) = self.tx.send((req, reply)) {
            let (_, reply) = refused.0;
            reply(Err(StoreError::Unavailable("store closed".into())));
            return;
        }
        let me = self.clone();
        writer.submit(Box::new(move |conn| {
            let (reqs, replies): (Vec<Req>, Vec<Reply<T>>) = me.rx.try_iter().unzip();
            tracing::trace!(batch = reqs.len(), "coalesced batch");
            // Without a connection (the store closed, the writer cannot connect) the
            // requests taken fail with the reason.
            let outcome = conn.and_then(|c| run_all(c, reqs, run));
            let ok = outcome.is_ok();
            let reply: writer::Reply = Box::new(move |commit_err| match (outcome, commit_err) {
                (Ok(results), None) => {
                    for (reply, result) in replies.into_iter().zip(results) {
                        reply(result);
                    }
                }
                (Ok(_), Some(e)) | (Err(e), _) => {
                    for reply in replies {
                        reply(Err(e.clone()));
                    }
                }
            });
            (ok, reply)
        }));
    }
}

/// Runs `reqs` in statements of up to `MAX_BATCH` requests: one result per request, in
/// order. If one statement fails, they all do (the operation is rolled back).
fn run_all<Req, T>(
    c: &mut PgConn,
    reqs: Vec<Req>,
    run: RunBatch<Req, T>,
) -> Result<Vec<Result<T>>> {
    let mut out = Vec::with_capacity(reqs.len());
    let mut reqs = reqs.into_iter().peekable();
    while reqs.peek().is_some() {
        out.extend(run(c, reqs.by_ref().take(MAX_BATCH).collect())?);
    }
    Ok(out)
}
