//! Coalescing: many concurrent calls of one kind (job completions) handled by one
//! set-based statement inside one writer operation, so a batch costs a few round trips
//! instead of a few per call. Every caller still hears its answer only after the
//! transaction that carried its request has committed.
//!
//! A caller puts its request in a shared queue; a writer operation takes whatever is
//! queued when it runs. At most a few such operations (lanes) are queued or running at
//! once: a caller that finds a lane free submits one, and an operation whose transaction
//! has ended submits the next if requests wait. After its commit, the operation that
//! carried a batch hands each caller its own answer (or the commit's error).

use super::conn::OwnedQuery;
use super::jobs::{ClaimFlight, ClaimReq, CompleteFlight, CompleteReq, EnqueueFlight, EnqueueReq};
use super::PgConn;
use crate::domain::{Enqueued, Job};
use crate::storage::writer::{self, Submitter, Writer};
use crate::storage::{Result, StoreError};
use crossbeam_channel::{Receiver, Sender};
use postgres::Row;
use std::sync::atomic::{fence, AtomicUsize, Ordering};
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
    /// Writer operations of this coalescer queued or running (until their transaction has
    /// ended), at most `lanes`: a request queued while none can start waits for the next.
    in_flight: AtomicUsize,
    lanes: usize,
}

impl<Req: Clone + Send + 'static, T: Send + 'static> Coalescer<Req, T> {
    /// A coalescer whose requests go to the writers in at most `lanes` transactions at once.
    pub fn new(lanes: usize) -> Arc<Self> {
        let (tx, rx) = crossbeam_channel::unbounded();
        Arc::new(Self {
            tx,
            rx,
            in_flight: AtomicUsize::new(0),
            lanes: lanes.max(1),
        })
    }

    /// Takes a lane if one is free.
    fn take_lane(&self) -> bool {
        self.in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.lanes).then_some(n + 1)
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

    /// Queues `req` for a writer operation that carries every request queued when it runs;
    /// `reply` gets the answer after the commit, on the writer's thread. Nothing waits on
    /// anything but the writer. At most `lanes` such operations are queued or running at
    /// once: while they are, requests pile up, and when one's transaction ends it starts
    /// the next operation, which takes them all. So a writer's group holds one of them (it
    /// needs no savepoint), and on a busy node each transaction carries every request that
    /// came while the last one ran, instead of the writers splitting them into more, smaller
    /// transactions, each paying for its commit.
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
        // Either this sees a lane freed, or the operation freeing it sees this request
        // (`launch`'s reply): the queue and the count are read in opposite orders, each
        // after a full fence.
        fence(Ordering::SeqCst);
        if self.take_lane() {
            self.launch(writer.submitter(), run);
        }
    }

    /// Submits a writer operation that takes every request queued when it runs, holding a
    /// lane until its transaction has ended (see [`Lane`]).
    fn launch(self: &Arc<Self>, writer: Submitter<PgConn>, run: RunBatch<Req, T>) {
        let lane = Lane {
            coalescer: self.clone(),
            writer: writer.clone(),
            run,
        };
        writer.submit(Box::new(move |conn| {
            let (reqs, replies): (Vec<Req>, Vec<Reply<T>>) = lane.coalescer.rx.try_iter().unzip();
            tracing::trace!(batch = reqs.len(), "coalesced batch");
            // Without a connection (the store closed, the writer cannot connect) the
            // requests taken fail with the reason.
            let outcome = conn.and_then(|c| run_all(c, reqs, run));
            let ok = outcome.is_ok();
            let reply: writer::Reply = Box::new(move |commit_err| {
                match (outcome, commit_err) {
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
                }
                drop(lane);
            });
            (ok, reply)
        }));
    }
}

/// A lane held by a writer operation. Given back when dropped: after the operation has
/// answered its callers, or while a panic inside it unwinds (the writer catches it, and
/// the callers taken hear that their write was abandoned) — so a lane is never lost. If
/// requests wait then, it starts the next operation.
struct Lane<Req: Clone + Send + 'static, T: Send + 'static> {
    coalescer: Arc<Coalescer<Req, T>>,
    writer: Submitter<PgConn>,
    run: RunBatch<Req, T>,
}

impl<Req: Clone + Send + 'static, T: Send + 'static> Drop for Lane<Req, T> {
    fn drop(&mut self) {
        let c = &self.coalescer;
        c.in_flight.fetch_sub(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if !c.rx.is_empty() && c.take_lane() {
            c.launch(self.writer.clone(), self.run);
        }
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

/// A batch of requests of one kind, planned as statements that go out in one flight with
/// other batches' ([`PgConn::query_all`]) and read back from their rows.
pub trait Flight {
    type Out;
    /// The statements to send (taken: the next call gives none). A batch may have none:
    /// then `land` does all of its work.
    fn statements(&mut self) -> Vec<OwnedQuery>;
    /// One answer per request, in order, from the rows of the statements (one `Vec` each).
    /// The few requests a set-based statement leaves (a lost lease, a replayed key, a
    /// queue control in the way) are handled here, each in round trips of its own.
    fn land(self, c: &mut PgConn, rows: Vec<Vec<Row>>) -> Result<Vec<Result<Self::Out>>>;
}

/// Runs one batch: its statements in one flight, then its answers.
pub fn fly<F: Flight>(c: &mut PgConn, mut batch: F) -> Result<Vec<Result<F::Out>>> {
    let stmts = batch.statements();
    let rows = c.query_all(&stmts)?;
    batch.land(c, rows)
}

/// The rows of a flight of exactly one statement.
pub fn only(rows: Vec<Vec<Row>>) -> Result<Vec<Row>> {
    let n = rows.len();
    let mut rows = rows.into_iter();
    match (rows.next(), rows.next()) {
        (Some(r), None) => Ok(r),
        _ => Err(StoreError::Backend(
            format!("one statement's rows expected, got {n}").into(),
        )),
    }
}

/// One of the three writes workers make for every job, waiting for a writer's next cycle.
#[derive(Clone)]
pub enum QuickReq {
    Enqueue(EnqueueReq),
    Complete(CompleteReq),
    Claim(ClaimReq),
}

/// A [`QuickReq`]'s answer, of the variant of its request.
#[derive(Debug)]
pub enum QuickAns {
    Enqueued(Enqueued),
    Completed(Job),
    Claimed(Vec<Job>),
}

impl QuickAns {
    pub fn enqueued(self) -> Result<Enqueued> {
        match self {
            Self::Enqueued(e) => Ok(e),
            _ => Err(mismatch()),
        }
    }
    pub fn completed(self) -> Result<Job> {
        match self {
            Self::Completed(j) => Ok(j),
            _ => Err(mismatch()),
        }
    }
    pub fn claimed(self) -> Result<Vec<Job>> {
        match self {
            Self::Claimed(j) => Ok(j),
            _ => Err(mismatch()),
        }
    }
}

fn mismatch() -> StoreError {
    StoreError::Backend("a quick write got an answer of another kind".into())
}

/// Every enqueue, completion and claim taken by one writer operation: each kind as one
/// set-based statement (claims: one per set of job types, see `ClaimFlight`), all of them
/// sent in one flight,
/// so a writer cycle waits for one round trip, not one per kind. One answer per request, in
/// order. The statements run in the order sent, in one transaction: a claim may lease a job
/// enqueued in the same flight, and both commit together. If one statement fails, every
/// request of the flight fails with its error (they are rolled back together); a flight that
/// lost a deadlock is tried again by each caller.
pub fn quick_many(c: &mut PgConn, reqs: Vec<QuickReq>) -> Result<Vec<Result<QuickAns>>> {
    // The kinds, in the order their statements are sent.
    const ENQUEUES: usize = 0;
    const COMPLETIONS: usize = 1;
    const CLAIMS: usize = 2;
    let (mut enqueues, mut completes, mut claims) = (vec![], vec![], vec![]);
    // Where each request's answer comes from: (kind, index within the kind).
    let mut from = Vec::with_capacity(reqs.len());
    for r in reqs {
        match r {
            QuickReq::Enqueue(r) => {
                from.push((ENQUEUES, enqueues.len()));
                enqueues.push(r);
            }
            QuickReq::Complete(r) => {
                from.push((COMPLETIONS, completes.len()));
                completes.push(r);
            }
            QuickReq::Claim(r) => {
                from.push((CLAIMS, claims.len()));
                claims.push(r);
            }
        }
    }
    let mut enqueues = (!enqueues.is_empty()).then(|| EnqueueFlight::new(enqueues));
    let mut completes = (!completes.is_empty()).then(|| CompleteFlight::new(completes));
    let mut claims = (!claims.is_empty()).then(|| ClaimFlight::new(claims));
    let stmts = [
        statements(&mut enqueues),
        statements(&mut completes),
        statements(&mut claims),
    ];
    let lens = stmts.each_ref().map(Vec::len);
    let stmts: Vec<OwnedQuery> = stmts.into_iter().flatten().collect();
    let mut rows = c.query_all(&stmts)?.into_iter();
    let mut rows_of = |n: usize| rows.by_ref().take(n).collect::<Vec<_>>();
    let (e_rows, c_rows, l_rows) = (
        rows_of(lens[ENQUEUES]),
        rows_of(lens[COMPLETIONS]),
        rows_of(lens[CLAIMS]),
    );
    let answers: [Vec<Result<QuickAns>>; 3] = [
        land(c, enqueues, e_rows, QuickAns::Enqueued)?,
        land(c, completes, c_rows, QuickAns::Completed)?,
        land(c, claims, l_rows, QuickAns::Claimed)?,
    ];
    let mut answers = answers.map(|a| a.into_iter().map(Some).collect::<Vec<_>>());
    Ok(from
        .into_iter()
        .map(|(kind, i)| answers[kind][i].take().unwrap_or_else(|| Err(mismatch())))
        .collect())
}

fn statements<F: Flight>(batch: &mut Option<F>) -> Vec<OwnedQuery> {
    batch.as_mut().map(F::statements).unwrap_or_default()
}

fn land<F: Flight>(
    c: &mut PgConn,
    batch: Option<F>,
    rows: Vec<Vec<Row>>,
    wrap: fn(F::Out) -> QuickAns,
) -> Result<Vec<Result<QuickAns>>> {
    let Some(batch) = batch else {
        return Ok(Vec::new());
    };
    Ok(batch
        .land(c, rows)?
        .into_iter()
        .map(|r| r.map(wrap))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::postgres::listener::Channels;
    use std::sync::{Condvar, Mutex};

    /// A writer on `n` connections of `WP_LITE_TEST_POSTGRES_URL`; None (and a note that
    /// the test is skipped) when no PostgreSQL is configured.
    fn writer(n: usize) -> Option<Writer<PgConn>> {
        let Ok(url) = std::env::var("WP_LITE_TEST_POSTGRES_URL") else {
            eprintln!("batch tests: SKIPPED (WP_LITE_TEST_POSTGRES_URL is not set)");
            return None;
        };
        let channels = Arc::new(Channels::for_schema("batch_tests"));
        let config: tokio_postgres::Config = url.parse().expect("a URL");
        let conns = (0..n)
            .map(|_| PgConn::connect(&config, channels.clone()).expect("connect"))
            .collect();
        Some(Writer::start("batch-test", conns, None))
    }

    /// The batches `record` was given, in order, and whether the first may finish.
    static SEEN: Mutex<(Vec<Vec<u32>>, bool)> = Mutex::new((Vec::new(), false));
    static CHANGED: Condvar = Condvar::new();

    /// Records its batch; the batch holding request 1 waits until the test lets it go.
    fn record(_: &mut PgConn, reqs: Vec<u32>) -> Result<Vec<Result<u32>>> {
        let mut seen = SEEN.lock().unwrap();
        seen.0.push(reqs.clone());
        CHANGED.notify_all();
        while reqs.contains(&1) && !seen.1 {
            seen = CHANGED.wait(seen).unwrap();
        }
        Ok(reqs.into_iter().map(Ok).collect())
    }

    /// Panics on request 99; answers the others.
    fn explode(_: &mut PgConn, reqs: Vec<u32>) -> Result<Vec<Result<u32>>> {
        assert!(!reqs.contains(&99), "a batch panicked on purpose");
        Ok(reqs.into_iter().map(Ok).collect())
    }

    /// A batch that panics gives its lane back: its caller hears that its write was
    /// abandoned, and the next request is answered.
    #[test]
    fn a_batch_that_panics_gives_its_lane_back() {
        let Some(writer) = writer(1) else {
            return;
        };
        let lane: Arc<Coalescer<u32, u32>> = Coalescer::new(1);
        let call = |n: u32| {
            let (tx, rx) = crossbeam_channel::bounded(1);
            lane.submit(&writer, n, explode, Box::new(move |r| tx.send(r).unwrap()));
            // Bounded so that a lost lane fails the test instead of hanging it.
            rx.recv_timeout(std::time::Duration::from_secs(30))
        };
        assert!(
            matches!(
                call(99),
                Err(crossbeam_channel::RecvTimeoutError::Disconnected)
            ),
            "the panicked batch's caller is let go"
        );
        assert_eq!(call(100).expect("answered").unwrap(), 100);
        writer.close();
        assert_eq!(lane.in_flight.load(Ordering::SeqCst), 0);
    }

    /// With one lane and two idle writers, requests that come while a batch runs wait for
    /// it and then go together in the next one, which its end starts; every caller hears
    /// its own answer.
    #[test]
    fn requests_that_come_while_the_lane_is_busy_go_together_next() {
        let Some(writer) = writer(2) else {
            return;
        };
        let lane: Arc<Coalescer<u32, u32>> = Coalescer::new(1);
        let (tx, rx) = crossbeam_channel::unbounded();
        let ask = |n: u32| {
            let tx = tx.clone();
            lane.submit(
                &writer,
                n,
                record,
                Box::new(move |r| tx.send((n, r)).unwrap()),
            );
        };
        ask(1);
        {
            let mut seen = SEEN.lock().unwrap();
            while seen.0.is_empty() {
                seen = CHANGED.wait(seen).unwrap();
            }
        }
        for n in 2..=5 {
            ask(n);
        }
        assert_eq!(lane.in_flight.load(Ordering::SeqCst), 1, "one lane");
        assert_eq!(lane.rx.len(), 4, "the four wait for the running batch");
        SEEN.lock().unwrap().1 = true;
        CHANGED.notify_all();
        let mut answers: Vec<(u32, u32)> = (0..5)
            .map(|_| {
                let (n, r) = rx.recv().unwrap();
                (n, r.unwrap())
            })
            .collect();
        answers.sort_unstable();
        assert_eq!(answers, [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]);
        assert_eq!(SEEN.lock().unwrap().0, [vec![1], vec![2, 3, 4, 5]]);
        writer.close();
        assert_eq!(
            lane.in_flight.load(Ordering::SeqCst),
            0,
            "every lane given back"
        );
    }
}
