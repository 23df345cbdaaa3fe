//! Group commit, for both backends: writer threads fed by one crossbeam channel. A writer
//! takes every operation waiting (up to a bound), runs each in its own savepoint inside one
//! transaction, commits once, and only then answers each caller — so many small writes
//! share one commit (one fsync), and a caller hears "done" only once its write is durable.
//! A failing operation rolls back to its savepoint and fails alone. An operation that
//! cannot leave a partial write behind may run without a savepoint ([`Isolation`]), and so
//! does the only operation of a group: if it fails, the whole transaction rolls back.
//!
//! SQLite has one writer thread (it allows one writer at a time anyway). PostgreSQL runs
//! several on one channel — several transactions in flight, each grouping many writes.

use super::{Result, StoreError};
use crossbeam_channel::{Receiver, Sender};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A connection the writer can drive transactions on.
pub trait TxConn: Send + 'static {
    fn begin(&mut self) -> Result<()>;
    fn commit(&mut self) -> Result<()>;
    fn rollback(&mut self);
    fn savepoint(&mut self) -> Result<()>;
    fn rollback_to_savepoint(&mut self) -> Result<()>;
    fn release_savepoint(&mut self) -> Result<()>;
    /// False once the transaction was lost underneath (rolled back by the database itself,
    /// or the connection broke): nothing of the group can commit any more.
    fn in_transaction(&mut self) -> bool;
    /// False when the connection cannot write at all (SQLite opened a read-only file
    /// read-only): the writer then opens a new one before its next group, so service
    /// returns by itself once the fault is cleared.
    fn usable(&mut self) -> bool {
        true
    }
}

/// What a writer's transaction has done so far that it acts on when it commits (job-count
/// moves, notifications), following its savepoints: an operation rolled back to its
/// savepoint takes its entries with it.
#[derive(Debug)]
pub struct SavepointLog<T> {
    items: Vec<T>,
    /// Where each open savepoint began, innermost last.
    marks: Vec<usize>,
}

impl<T> Default for SavepointLog<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            marks: Vec::new(),
        }
    }
}

impl<T> SavepointLog<T> {
    pub fn push(&mut self, item: T) {
        self.items.push(item);
    }

    /// The newest entry, if the innermost open savepoint made it.
    pub fn last_in_scope(&mut self) -> Option<&mut T> {
        let scope = self.marks.last().copied().unwrap_or(0);
        if self.items.len() > scope {
            self.items.last_mut()
        } else {
            None
        }
    }

    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.items.iter()
    }

    /// A savepoint opened.
    pub fn mark(&mut self) {
        self.marks.push(self.items.len());
    }

    /// Rolled back to the innermost savepoint: its entries go (it stays open).
    pub fn rollback_to_mark(&mut self) {
        if let Some(&m) = self.marks.last() {
            self.items.truncate(m);
        }
    }

    /// The innermost savepoint was released: its entries belong to the enclosing scope.
    pub fn release_mark(&mut self) {
        self.marks.pop();
    }

    /// The transaction ended: every entry, in order; the log is empty again.
    pub fn take(&mut self) -> Vec<T> {
        self.marks.clear();
        std::mem::take(&mut self.items)
    }
}

/// Makes (or remakes, after a broken connection) a writer's connection.
pub type Connect<C> = Box<dyn Fn() -> Result<C> + Send + Sync>;

/// Answers the caller once the transaction's fate is known (`Some(err)` if the commit failed).
pub type Reply = Box<dyn FnOnce(Option<StoreError>) + Send>;
/// An operation: runs on the writer's connection (or is told why it could not), says
/// whether it succeeded, and hands back how to answer.
pub type Op<C> = Box<dyn FnOnce(std::result::Result<&mut C, StoreError>) -> (bool, Reply) + Send>;

/// An operation's outcome and how to answer it: once the commit's fate is known, `send`
/// gets the outcome, or the commit's error when the operation succeeded but its
/// transaction did not.
pub fn answer<T: Send + 'static>(
    res: Result<T>,
    send: impl FnOnce(Result<T>) + Send + 'static,
) -> (bool, Reply) {
    let ok = res.is_ok();
    let reply: Reply = Box::new(move |commit_err| {
        send(match (res, commit_err) {
            (Ok(_), Some(e)) => Err(e),
            (r, _) => r,
        })
    });
    (ok, reply)
}

/// The most operations one transaction takes.
const MAX_GROUP: usize = 512;

/// How an operation is kept apart from the others in its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// In a savepoint of its own: if it fails, what it wrote is rolled back and the rest of
    /// the group commits.
    Savepoint,
    /// Without one (a savepoint costs the writer a copy of every page the operation
    /// changes): for an operation that writes nothing when it fails — a single write
    /// statement (SQLite undoes a failed statement by itself), or store calls that are each
    /// atomic on their own.
    Unguarded,
}

/// An operation queued for a writer.
struct Queued<C> {
    op: Op<C>,
    isolation: Isolation,
}

/// The writers' queue, shared with every [`Submitter`]; `None` once closed.
type Queue<C> = Arc<Mutex<Option<Sender<Queued<C>>>>>;

pub struct Writer<C: TxConn> {
    tx: Queue<C>,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

/// A handle that queues operations for a [`Writer`] without borrowing it (an operation can
/// queue the next one from the writer's thread). It does not keep the writers open: once
/// the writer is closed, what it submits is told so at once.
pub struct Submitter<C: TxConn>(Queue<C>);

impl<C: TxConn> Clone for Submitter<C> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<C: TxConn> Submitter<C> {
    /// Queues `op` (in a savepoint of its own when its group has others), as
    /// [`Writer::submit`] does.
    pub fn submit(&self, op: Op<C>) {
        submit_to(&self.0, Isolation::Savepoint, op)
    }
}

/// Queues `op` on `queue`; when the writer has stopped, `op` is told so (and answers its
/// caller) at once.
fn submit_to<C: TxConn>(queue: &Queue<C>, isolation: Isolation, op: Op<C>) {
    let sender = queue.lock().expect("writer lock").clone();
    let (op, why) = match sender {
        Some(s) => match s.send(Queued { op, isolation }) {
            Ok(()) => return,
            Err(refused) => (refused.0.op, "the writer has stopped"),
        },
        None => (op, "store closed"),
    };
    let (_, reply) = op(Err(StoreError::Unavailable(why.into())));
    reply(None);
}

impl<C: TxConn> Writer<C> {
    /// Starts one writer thread per connection, all taking from one queue. `reconnect`
    /// replaces a connection that broke.
    pub fn start(name: &str, conns: Vec<C>, reconnect: Option<std::sync::Arc<Connect<C>>>) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded::<Queued<C>>();
        let handles = conns
            .into_iter()
            .enumerate()
            .map(|(i, conn)| {
                let rx = rx.clone();
                let reconnect = reconnect.clone();
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || run(conn, rx, reconnect))
                    .expect("spawn a writer thread")
            })
            .collect();
        Self {
            tx: Arc::new(Mutex::new(Some(tx))),
            handles: Mutex::new(handles),
        }
    }

    /// A handle that queues operations for this writer.
    pub fn submitter(&self) -> Submitter<C> {
        Submitter(self.tx.clone())
    }

    /// Queues `op` for a writer's next transaction. When the writer has stopped, `op` is
    /// told so (and answers its caller) at once.
    pub fn submit(&self, op: Op<C>) {
        self.submit_with(Isolation::Savepoint, op)
    }

    /// `submit`, with the isolation the operation needs.
    pub fn submit_with(&self, isolation: Isolation, op: Op<C>) {
        submit_to(&self.tx, isolation, op)
    }

    /// Runs `f` in a writer's next transaction and waits until it has committed.
    pub fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut C) -> Result<T> + Send + 'static,
    {
        self.call_with(Isolation::Savepoint, f)
    }

    /// `call`, with the isolation `f` needs.
    pub fn call_with<T, F>(&self, isolation: Isolation, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut C) -> Result<T> + Send + 'static,
    {
        let (rtx, rrx) = crossbeam_channel::bounded::<Result<T>>(1);
        self.submit_with(
            isolation,
            Box::new(move |conn| {
                answer(conn.and_then(f), move |out| {
                    let _ = rtx.send(out);
                })
            }),
        );
        rrx.recv()
            .map_err(|_| StoreError::Backend("the write was abandoned by the writer".into()))?
    }

    /// Stops taking operations, finishes those queued, and joins the threads.
    pub fn close(&self) {
        self.tx.lock().expect("writer lock").take();
        let handles = std::mem::take(&mut *self.handles.lock().expect("writer lock"));
        for h in handles {
            // The store can be dropped by an operation running on a writer thread (it held
            // the last reference); that thread ends by itself once the queue is closed.
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

fn run<C: TxConn>(conn: C, rx: Receiver<Queued<C>>, reconnect: Option<std::sync::Arc<Connect<C>>>) {
    let mut conn = Some(conn);
    while let Ok(first) = rx.recv() {
        let mut group = Vec::with_capacity(16);
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(op) => group.push(op),
                Err(_) => break,
            }
        }
        if conn.is_none() {
            conn = reconnect.as_ref().and_then(|f| match f() {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "a writer could not reconnect");
                    None
                }
            });
        }
        let Some(c) = conn.as_mut() else {
            fail_all(group, || {
                StoreError::Unavailable("no database connection".into())
            });
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        if (!run_group(c, group) || !c.usable()) && reconnect.is_some() {
            conn = None;
        }
    }
}

fn fail_all<C: TxConn>(group: Vec<Queued<C>>, err: impl Fn() -> StoreError) {
    for q in group {
        let (_, reply) = (q.op)(Err(err()));
        reply(None);
    }
}

/// Runs one group in one transaction; false when the connection looks broken. A group of
/// one operation takes no savepoint: if the operation fails, the transaction is rolled
/// back instead, which undoes the same writes one round trip cheaper.
fn run_group<C: TxConn>(conn: &mut C, group: Vec<Queued<C>>) -> bool {
    if let Err(e) = conn.begin() {
        fail_all(group, || e.clone());
        return false;
    }
    let lost = super::lost_transaction;
    let alone = group.len() == 1;
    // The group's only operation failed: nothing of the transaction may commit.
    let mut undo = false;
    let mut replies: Vec<Reply> = Vec::with_capacity(group.len());
    let mut ops = group.into_iter();
    while let Some(op) = ops.next() {
        if !conn.in_transaction() {
            // Nothing of this group can commit now, so fail the rest without running them.
            fail_all(std::iter::once(op).chain(ops.by_ref()).collect(), lost);
            for reply in replies {
                reply(Some(lost()));
            }
            conn.rollback();
            return false;
        }
        let Queued { op, isolation } = op;
        let guarded = isolation == Isolation::Savepoint;
        let savepoint = guarded && !alone;
        if savepoint {
            if let Err(e) = conn.savepoint() {
                let (_, reply) = op(Err(e));
                replies.push(reply);
                continue;
            }
        }
        match std::panic::catch_unwind(AssertUnwindSafe(|| op(Ok(&mut *conn)))) {
            Ok((ok, reply)) => {
                if savepoint {
                    if !ok {
                        let _ = conn.rollback_to_savepoint();
                    }
                    let _ = conn.release_savepoint();
                } else if guarded && !ok {
                    undo = true;
                }
                replies.push(reply);
            }
            Err(_) => {
                // The caller's reply channel was dropped with the op; it sees an error. An
                // unguarded operation's store calls are each atomic (a panic inside one
                // rolls it back; calls it finished before the panic stay).
                if savepoint {
                    tracing::error!("a store write panicked; its changes were rolled back");
                    let _ = conn.rollback_to_savepoint();
                    let _ = conn.release_savepoint();
                } else if guarded {
                    tracing::error!("a store write panicked; its transaction was rolled back");
                    undo = true;
                } else {
                    tracing::error!(
                        "a store write panicked; the store call it was in was rolled back"
                    );
                }
            }
        }
    }
    let commit = if undo {
        // The failed operation's reply carries its own error.
        conn.rollback();
        Ok(())
    } else if conn.in_transaction() {
        conn.commit()
    } else {
        conn.rollback();
        Err(lost())
    };
    let healthy = commit.is_ok() || !matches!(commit, Err(StoreError::Unavailable(_)));
    for reply in replies {
        reply(commit.as_ref().err().cloned());
    }
    healthy
}
