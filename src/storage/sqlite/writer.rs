//! SQLite's one writer: a dedicated thread fed by a crossbeam channel. It takes every
//! operation waiting in the channel (up to a bound), runs each in its own savepoint inside
//! one `BEGIN IMMEDIATE` transaction, commits once, and only then answers each caller —
//! group commit, so many small writers share one commit, and a caller hears "done" only
//! once its write is durable. A failing operation rolls back to its savepoint and fails
//! alone. `SQLITE_BUSY` from another process is retried here and never reaches a client.

use super::super::{Result, StoreError};
use crossbeam_channel::{Receiver, Sender};
use rusqlite::Connection;
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Answers the caller once the transaction's fate is known (`Some(err)` if the commit failed).
type Reply = Box<dyn FnOnce(Option<StoreError>) + Send>;
/// An operation: runs on the writer's connection (or is told why it could not), says
/// whether it succeeded, and hands back how to answer.
type Op = Box<dyn FnOnce(std::result::Result<&Connection, StoreError>) -> (bool, Reply) + Send>;

/// The most operations one transaction takes.
const MAX_GROUP: usize = 512;
/// How long the writer keeps retrying a database locked by another process.
const BUSY_PATIENCE: Duration = Duration::from_secs(30);

pub struct Writer {
    tx: Mutex<Option<Sender<Op>>>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    pub fn start(conn: Connection) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded::<Op>();
        let handle = std::thread::Builder::new()
            .name("wp-lite-sqlite-writer".into())
            .spawn(move || run(conn, rx))
            .expect("spawn the SQLite writer thread");
        Self {
            tx: Mutex::new(Some(tx)),
            handle: Mutex::new(Some(handle)),
        }
    }

    /// Runs `f` in the writer's next transaction and waits until it has committed.
    pub fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (rtx, rrx) = crossbeam_channel::bounded::<Result<T>>(1);
        let op: Op = Box::new(move |conn| {
            let res = match conn {
                Ok(c) => f(c),
                Err(e) => Err(e),
            };
            let ok = res.is_ok();
            let reply: Reply = Box::new(move |commit_err| {
                let out = match (res, commit_err) {
                    (Ok(_), Some(e)) => Err(e),
                    (r, _) => r,
                };
                let _ = rtx.send(out);
            });
            (ok, reply)
        });
        let sender = self
            .tx
            .lock()
            .expect("writer lock")
            .clone()
            .ok_or_else(|| StoreError::Unavailable("store closed".into()))?;
        sender
            .send(op)
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        drop(sender);
        rrx.recv()
            .map_err(|_| StoreError::Backend("the write was abandoned by the writer".into()))?
    }

    /// Stops taking operations, finishes those queued, and joins the thread.
    pub fn close(&self) {
        self.tx.lock().expect("writer lock").take();
        if let Some(h) = self.handle.lock().expect("writer lock").take() {
            let _ = h.join();
        }
    }
}

fn run(conn: Connection, rx: Receiver<Op>) {
    while let Ok(first) = rx.recv() {
        let mut group = Vec::with_capacity(16);
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(op) => group.push(op),
                Err(_) => break,
            }
        }
        run_group(&conn, group);
    }
}

fn run_group(conn: &Connection, group: Vec<Op>) {
    if let Err(e) = begin_immediate(conn) {
        for op in group {
            let (_, reply) = op(Err(clone_err(&e)));
            reply(None);
        }
        return;
    }
    let mut replies: Vec<Reply> = Vec::with_capacity(group.len());
    let mut ops = group.into_iter();
    while let Some(op) = ops.next() {
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back itself (I/O error, disk full, …):
            // nothing of this group is committed, so fail the rest without running them.
            let lost = || StoreError::Backend("the transaction was rolled back by SQLite".into());
            for op in std::iter::once(op).chain(ops.by_ref()) {
                let (_, reply) = op(Err(lost()));
                reply(None);
            }
            for reply in replies {
                reply(Some(lost()));
            }
            return;
        }
        if let Err(e) = exec(conn, "SAVEPOINT op") {
            let (_, reply) = op(Err(e));
            replies.push(reply);
            continue;
        }
        match std::panic::catch_unwind(AssertUnwindSafe(|| op(Ok(conn)))) {
            Ok((ok, reply)) => {
                if !ok {
                    let _ = exec(conn, "ROLLBACK TO op");
                }
                let _ = exec(conn, "RELEASE op");
                replies.push(reply);
            }
            Err(_) => {
                // The caller's reply channel was dropped with the op; it sees an error.
                tracing::error!("a store write panicked; its changes were rolled back");
                let _ = exec(conn, "ROLLBACK TO op");
                let _ = exec(conn, "RELEASE op");
            }
        }
    }
    let commit = if conn.is_autocommit() {
        Err(StoreError::Backend(
            "the transaction was rolled back by SQLite".into(),
        ))
    } else {
        commit(conn)
    };
    for reply in replies {
        reply(commit.as_ref().err().map(clone_err));
    }
}

fn exec(conn: &Connection, sql: &str) -> Result<()> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute([]))
        .map(|_| ())
        .map_err(super::map_err)
}

fn begin_immediate(conn: &Connection) -> Result<()> {
    retry_busy(|| exec(conn, "BEGIN IMMEDIATE"))
}

fn commit(conn: &Connection) -> Result<()> {
    let res = retry_busy(|| exec(conn, "COMMIT"));
    if res.is_err() {
        let _ = exec(conn, "ROLLBACK");
    }
    res
}

/// Retries an operation that met `SQLITE_BUSY` (another process holds the write lock
/// beyond `busy_timeout`) until `BUSY_PATIENCE` runs out.
fn retry_busy(mut f: impl FnMut() -> Result<()>) -> Result<()> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        match f() {
            Err(StoreError::Busy) if start.elapsed() < BUSY_PATIENCE => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

fn clone_err(e: &StoreError) -> StoreError {
    match e {
        StoreError::NotFound => StoreError::NotFound,
        StoreError::Conflict(c) => StoreError::Conflict(*c),
        StoreError::Busy => StoreError::Busy,
        StoreError::Unavailable(s) => StoreError::Unavailable(s.clone()),
        StoreError::Backend(s) => StoreError::Backend(s.clone()),
    }
}
