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
use crate::storage::writer::{clone_err, Writer};
use crate::storage::{Result, StoreError};
use crossbeam_channel::{Receiver, Sender};
use std::sync::Arc;

/// The most requests one operation takes.
const MAX_BATCH: usize = 1000;

type Reply<T> = Sender<Result<T>>;

pub struct Coalescer<Req, T> {
    tx: Sender<(Req, Reply<T>)>,
    rx: Receiver<(Req, Reply<T>)>,
}

impl<Req: Send + 'static, T: Send + 'static> Coalescer<Req, T> {
    pub fn new() -> Arc<Self> {
        let (tx, rx) = crossbeam_channel::unbounded();
        Arc::new(Self { tx, rx })
    }

    /// Submits `req` and waits for its answer. `run` handles a whole batch on the writer's
    /// connection and returns one result per request, in order.
    pub fn call(
        self: &Arc<Self>,
        writer: &Writer<PgConn>,
        req: Req,
        run: fn(&mut PgConn, Vec<Req>) -> Result<Vec<Result<T>>>,
    ) -> Result<T> {
        let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
        self.tx
            .send((req, reply_tx))
            .map_err(|_| StoreError::Unavailable("store closed".into()))?;
        let me = self.clone();
        let carried = writer.call(move |c| {
            let taken: Vec<(Req, Reply<T>)> = me.rx.try_iter().take(MAX_BATCH).collect();
            if taken.is_empty() {
                return Ok(Vec::new());
            }
            let (reqs, replies): (Vec<Req>, Vec<Reply<T>>) = taken.into_iter().unzip();
            match run(c, reqs) {
                Ok(results) => Ok(replies.into_iter().zip(results).collect()),
                // Each caller hears why; the writer rolls this operation back.
                Err(e) => {
                    for r in replies {
                        let _ = r.send(Err(clone_err(&e)));
                    }
                    Err(e)
                }
            }
        });
        let own_error = match carried {
            Ok(answers) => {
                for (reply, result) in answers {
                    let _ = reply.send(result);
                }
                None
            }
            // The operation or its commit failed: whatever it carried failed with it (the
            // callers see their reply senders dropped).
            Err(e) => Some(e),
        };
        match reply_rx.recv() {
            Ok(result) => result,
            Err(_) => Err(own_error.unwrap_or_else(|| {
                StoreError::Unavailable("the transaction carrying this call did not commit".into())
            })),
        }
    }
}
