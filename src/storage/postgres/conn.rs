//! A PostgreSQL connection with a per-connection statement cache, the r2d2 manager that
//! hands them out, and the writer's transaction control.
//!
//! The connection is `tokio-postgres`'s, driven by a small runtime of its own (what the
//! `postgres` crate does inside): store code stays synchronous, and what the writer holds
//! back (`BEGIN`, the last operation's `RELEASE SAVEPOINT`, this operation's `SAVEPOINT`)
//! goes out pipelined with the operation's first statement — one round trip, not two.

use super::listener::Channels;
use crate::domain::JobStatus;
use crate::storage::counts::CountLog;
use crate::storage::writer::{SavepointLog, TxConn};
use crate::storage::Wake;
use crate::storage::{Cause, Result, StoreError};
use postgres::types::ToSql;
use postgres::{NoTls, Row, Statement};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::Client;

/// Query parameters.
pub type Params<'a> = [&'a (dyn ToSql + Sync)];

/// A statement with the parameters it owns, to be sent with others in one flight
/// ([`PgConn::query_all`]).
pub struct OwnedQuery {
    pub sql: &'static str,
    pub params: Vec<Box<dyn ToSql + Sync + Send>>,
}

/// The parameters of an [`OwnedQuery`], each value moved into a box.
macro_rules! owned_params {
    ($($p:expr),* $(,)?) => {
        vec![$(Box::new($p) as Box<dyn postgres::types::ToSql + Sync + Send>),*]
    };
}
pub(crate) use owned_params;

/// One connection; every statement the store runs stays prepared on it.
pub struct PgConn {
    /// The server process serving this connection.
    pid: Option<i32>,
    /// `None` only while the connection is being closed.
    client: Option<Client>,
    /// Runs the connection's task, on this thread, while a request is awaited.
    rt: tokio::runtime::Runtime,
    /// The connection's task: it ends once the client is dropped and `Terminate` is sent.
    task: Option<tokio::task::JoinHandle<()>>,
    channels: Arc<Channels>,
    stmts: HashMap<String, Statement>,
    broken: bool,
    /// The writer began a transaction that has sent nothing yet: `BEGIN` goes out in front
    /// of the first request (in the same message, or pipelined with it), and a transaction
    /// that sends nothing costs no round trip.
    begin_pending: bool,
    /// An operation's savepoint is still to be released: the release goes out with the
    /// next message (the next operation's first statement, or the commit).
    release_pending: bool,
    /// The running operation's savepoint is still to be opened: it goes out with the
    /// operation's first statement, or never if the operation sends none.
    savepoint_pending: bool,
    /// The job-count moves of the writer's transaction in progress.
    counts: CountLog,
    /// The notifications the transaction in progress sends when it commits, as
    /// (channel, payload): they go out with the `COMMIT`.
    notes: SavepointLog<(String, String)>,
}

/// Prepared statements kept per connection.
const MAX_PREPARED: usize = 256;

/// Sends the request `$req` makes with the client `$c`, with whatever the transaction held
/// back (`BEGIN`, a release, a savepoint) pipelined in front of it, and waits for the
/// answer. A macro, not a method, because the request borrows the client while the
/// runtime drives it.
macro_rules! send {
    ($conn:expr, |$c:ident| $req:expr) => {{
        let conn: &mut PgConn = $conn;
        let (pending, release) = conn.take_pending();
        let held = {
            let $c = conn.client.as_ref().expect("an open connection");
            if pending.is_empty() {
                Ok(conn.rt.block_on($req))
            } else {
                let (held, out) = conn
                    .rt
                    .block_on(async { tokio::join!($c.batch_execute(&pending), $req) });
                held.map(|()| out)
            }
        };
        conn.finish(held, release)
    }};
}

/// The planner's cost of a random page read on wp-lite's connections, unless the URL's
/// `options` set one: PostgreSQL's default (4) is made for spinning disks. The statements of
/// the job path look their rows up in indexes, and PostgreSQL keeps each one's generic plan
/// on a connection for as long as the connection lives. Planned while the job table is
/// small and has no statistics yet (a new database, the first minutes of a queue, a server
/// without autovacuum), a lookup by id costs about as much as reading the whole table
/// (PostgreSQL assumes ten pages), and a completion was planned as a sequential scan and
/// kept that plan as the table grew: every completion read every job. At 1.1, the usual
/// figure for SSDs and for data in memory, the lookup costs about half as much as the scan
/// (`hot_statements_seek_their_indexes`). Set with `set_config`, not as a startup option,
/// which a connection pooler may refuse.
const RANDOM_PAGE_COST: &str = "1.1";

impl PgConn {
    /// Opens a connection.
    pub fn connect(config: &tokio_postgres::Config, channels: Arc<Channels>) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Unavailable(Cause::of(e)))?;
        let (client, connection) = rt.block_on(config.connect(NoTls)).map_err(map_err)?;
        // The connection's future logs notices; its end (an error or a close) shows in
        // the client's next request.
        let task = rt.spawn(async move {
            let _ = connection.await;
        });
        // Unknown if the query fails: then this process is woken by its own enqueues too.
        // The same round trip sets the session's random page cost (`RANDOM_PAGE_COST`).
        let page_cost = (!config
            .get_options()
            .is_some_and(|o| o.contains("random_page_cost")))
        .then_some(RANDOM_PAGE_COST);
        let pid = rt
            .block_on(client.query_one(
                "SELECT pg_backend_pid(),
                        CASE WHEN $1::text IS NOT NULL
                             THEN set_config('random_page_cost', $1::text, false) END",
                &[&page_cost],
            ))
            .ok()
            .map(|r| r.get::<_, i32>(0));
        if let Some(pid) = pid {
            channels.own_connection(pid, true);
        }
        Ok(Self {
            pid,
            client: Some(client),
            rt,
            task: Some(task),
            channels,
            stmts: HashMap::new(),
            broken: false,
            begin_pending: false,
            release_pending: false,
            savepoint_pending: false,
            counts: CountLog::default(),
            notes: SavepointLog::default(),
        })
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("an open connection")
    }

    /// What the transaction holds back, as the text of one simple query (empty: nothing),
    /// and whether it releases the last operation's savepoint. Taken: it is sent next.
    fn take_pending(&mut self) -> (String, bool) {
        let mut sql = String::new();
        if std::mem::take(&mut self.begin_pending) {
            sql.push_str("BEGIN; ");
        }
        let release = std::mem::take(&mut self.release_pending);
        if release {
            sql.push_str("RELEASE SAVEPOINT op; ");
        }
        if std::mem::take(&mut self.savepoint_pending) {
            sql.push_str("SAVEPOINT op; ");
        }
        (sql, release)
    }

    /// Ends a request sent by `send!`: a failure of what was held back in front of it
    /// (`held`) loses the transaction — a failed release means the last operation left it
    /// aborted — so nothing more of the group runs or commits.
    fn finish<T>(
        &mut self,
        held: std::result::Result<std::result::Result<T, postgres::Error>, postgres::Error>,
        release: bool,
    ) -> Result<T> {
        let closed = self.client().is_closed();
        match held {
            Ok(out) => {
                self.broken |= closed;
                out.map_err(map_err)
            }
            Err(e) => {
                self.broken = true;
                Err(if release && !closed {
                    crate::storage::lost_transaction()
                } else {
                    map_err(e)
                })
            }
        }
    }

    /// A job of `job_type` entered `to` and left `from` (None: inserted or deleted).
    pub fn moved(&mut self, job_type: &str, from: Option<JobStatus>, to: Option<JobStatus>) {
        self.counts.moved(job_type, from, to);
    }

    /// The statement, prepared on this connection once.
    fn prepared(&mut self, sql: &str) -> Result<Statement> {
        if let Some(s) = self.stmts.get(sql) {
            return Ok(s.clone());
        }
        let s = send!(self, |c| c.prepare(sql))?;
        // Bounded: statements whose text varies (audience filters) must not pile up on
        // the server for the life of the connection.
        if self.stmts.len() >= MAX_PREPARED {
            self.stmts.clear();
        }
        self.stmts.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    pub fn query(&mut self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>> {
        let s = self.prepared(sql)?;
        send!(self, |c| c.query(&s, params))
    }

    /// Sends every statement of `stmts` in one flight — pipelined, behind what the
    /// transaction held back — and waits for all their answers: the rows of each, in
    /// order. If one fails, this fails with its error (the statements after it fail too:
    /// the transaction is aborted). One round trip for all of them, where `query` takes one
    /// each.
    pub fn query_all(&mut self, stmts: &[OwnedQuery]) -> Result<Vec<Vec<Row>>> {
        let prepared = stmts
            .iter()
            .map(|s| self.prepared(s.sql))
            .collect::<Result<Vec<_>>>()?;
        let params: Vec<Vec<&(dyn ToSql + Sync)>> = stmts
            .iter()
            .map(|s| s.params.iter().map(|p| p.as_ref() as _).collect())
            .collect();
        let answers: Result<Vec<std::result::Result<Vec<Row>, postgres::Error>>> =
            send!(self, |c| async {
                let each = prepared.iter().zip(&params).map(|(s, p)| c.query(s, p));
                Ok::<_, postgres::Error>(futures_util::future::join_all(each).await)
            });
        answers?
            .into_iter()
            .collect::<std::result::Result<_, _>>()
            .map_err(map_err)
    }

    /// `query` without the statement cache: PostgreSQL plans the statement with this
    /// call's parameter values every time (a cached statement may run on a generic plan),
    /// at the cost of one more round trip.
    pub fn query_planned(&mut self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>> {
        send!(self, |c| c.query(sql, params))
    }

    /// Exactly one row, or `NotFound`.
    pub fn query_one(&mut self, sql: &str, params: &Params<'_>) -> Result<Row> {
        self.query_opt(sql, params)?.ok_or(StoreError::NotFound)
    }

    pub fn query_opt(&mut self, sql: &str, params: &Params<'_>) -> Result<Option<Row>> {
        let s = self.prepared(sql)?;
        send!(self, |c| c.query_opt(&s, params))
    }

    pub fn execute(&mut self, sql: &str, params: &Params<'_>) -> Result<u64> {
        let s = self.prepared(sql)?;
        send!(self, |c| c.execute(&s, params))
    }

    /// Statements without parameters or results, in one round trip (with what the
    /// transaction held back in front, in the same message).
    pub fn batch(&mut self, sql: &str) -> Result<()> {
        let (pending, release) = self.take_pending();
        let sql = if pending.is_empty() {
            std::borrow::Cow::Borrowed(sql)
        } else {
            std::borrow::Cow::Owned(format!("{pending}{sql}"))
        };
        let r = self.rt.block_on(self.client().batch_execute(&sql));
        match r {
            Ok(()) => Ok(()),
            Err(e) if pending.is_empty() => Err(map_err(e)),
            // The held-back part may be what failed: the transaction cannot commit now.
            Err(e) => self.finish(Err(e), release),
        }
    }

    /// Wakes listeners on every node once this transaction commits (sent with the
    /// `COMMIT`; once per channel and transaction).
    pub fn notify(&mut self, w: Wake) -> Result<()> {
        let name = self.channels.name(w);
        if !self.notes.iter().any(|(c, p)| c == name && p.is_empty()) {
            self.notes.push((name.to_string(), String::new()));
        }
        Ok(())
    }

    /// Tells every node's real-time feed that items `lo..=hi` exist once this transaction
    /// commits.
    pub fn notify_inbox(&mut self, lo: i64, hi: i64) -> Result<()> {
        let name = self.channels.inbox.clone();
        self.notes.push((name, format!("{lo} {hi}")));
        Ok(())
    }

    /// The transaction ended, or begins: nothing is pending.
    fn reset_tx_state(&mut self) {
        self.counts.clear();
        self.notes.take();
        self.release_pending = false;
        self.savepoint_pending = false;
        self.begin_pending = false;
    }

    /// A transaction-control statement: if it fails, nothing more of the transaction runs.
    fn control(&mut self, sql: &str) -> Result<()> {
        if self.broken {
            return Err(crate::storage::lost_transaction());
        }
        let r = self.batch(sql);
        if r.is_err() {
            self.broken = true;
        }
        r
    }
}

impl TxConn for PgConn {
    /// Sends nothing yet (`begin_pending`).
    fn begin(&mut self) -> Result<()> {
        self.broken = false;
        self.reset_tx_state();
        self.begin_pending = true;
        Ok(())
    }
    /// One round trip: the transaction's job-count sums appended to `job_count_deltas`
    /// (an append never waits on another writer), its notifications and the `COMMIT`, as
    /// prepared statements pipelined behind whatever the transaction held back (its
    /// `BEGIN`, the last operation's release). Prepared once per connection, so PostgreSQL
    /// parses and plans none of them again (a simple query of literal values was parsed and
    /// planned at every commit). In a transaction an operation left aborted (it swallowed
    /// an SQL error) the first of them fails, and so does the commit: a `COMMIT` alone
    /// would quietly roll it back and report success. With nothing else to send, `SELECT 1`
    /// is that first statement. PostgreSQL delivers the notifications when it commits. A
    /// transaction that has sent nothing yet sends its `BEGIN` in the same flight, or
    /// nothing at all when it has nothing to write.
    fn commit(&mut self) -> Result<()> {
        debug_assert!(
            !self.savepoint_pending,
            "an operation's savepoint left open"
        );
        self.savepoint_pending = false;
        let mut flight = Vec::with_capacity(3);
        flight.extend(deltas_insert(self.counts.take()));
        flight.extend(notifications(self.notes.take()));
        if flight.is_empty() {
            if self.begin_pending {
                // Nothing was sent and nothing is to be: no round trip at all.
                self.reset_tx_state();
                return Ok(());
            }
            flight.push(OwnedQuery {
                sql: "SELECT 1",
                params: Vec::new(),
            });
        }
        flight.push(OwnedQuery {
            sql: "COMMIT",
            params: Vec::new(),
        });
        // The flight took what was held back, and the counts and notes were taken above:
        // a commit leaves nothing pending.
        let r = self.query_all(&flight).map(|_| ());
        if r.is_err() {
            self.rollback();
        }
        r
    }
    fn rollback(&mut self) {
        let begun = !self.begin_pending;
        self.reset_tx_state();
        if begun {
            let _ = self.rt.block_on(self.client().batch_execute("ROLLBACK"));
        }
    }
    /// Sends nothing yet: the savepoint goes out with the operation's first statement
    /// (after the last operation's release, which fails there if that operation left the
    /// transaction aborted: then nothing of the group can commit). An operation that sends
    /// nothing opens none.
    fn savepoint(&mut self) -> Result<()> {
        self.savepoint_pending = true;
        self.counts.mark();
        self.notes.mark();
        Ok(())
    }
    fn rollback_to_savepoint(&mut self) -> Result<()> {
        self.counts.rollback_to_mark();
        self.notes.rollback_to_mark();
        if std::mem::take(&mut self.savepoint_pending) {
            // The operation sent nothing: there is nothing to undo.
            return Ok(());
        }
        self.control("ROLLBACK TO SAVEPOINT op")
    }
    /// Sent with the next message (the next operation's first statement or the commit),
    /// and fails there (losing the transaction) if the operation left it aborted, so an
    /// operation that swallowed an SQL error can never be reported committed.
    fn release_savepoint(&mut self) -> Result<()> {
        self.counts.release_mark();
        self.notes.release_mark();
        if !std::mem::take(&mut self.savepoint_pending) {
            self.release_pending = true;
        }
        Ok(())
    }
    fn in_transaction(&mut self) -> bool {
        !self.broken && !self.client().is_closed()
    }
}

impl Drop for PgConn {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            self.channels.own_connection(pid, false);
        }
        // Dropping the client makes the connection's task say goodbye (`Terminate`) and
        // end; it gets a moment to do so, as the `postgres` crate's client does.
        self.client.take();
        if let Some(task) = self.task.take() {
            // Made inside the runtime: a timer needs one.
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(1), task).await });
        }
    }
}

/// The insert of the transaction's job-count sums into `job_count_deltas` (none when
/// there are none).
fn deltas_insert(sums: Vec<(String, JobStatus, i64)>) -> Option<OwnedQuery> {
    if sums.is_empty() {
        return None;
    }
    let mut types = Vec::with_capacity(sums.len());
    let mut statuses = Vec::with_capacity(sums.len());
    let mut ns = Vec::with_capacity(sums.len());
    for (t, s, n) in sums {
        types.push(t);
        statuses.push(s.as_str());
        ns.push(n);
    }
    Some(OwnedQuery {
        sql: "INSERT INTO job_count_deltas (type, status, n)
              SELECT * FROM unnest($1::text[], $2::text[], $3::int8[])",
        params: owned_params![types, statuses, ns],
    })
}

/// The `pg_notify` calls for `notes` as (channel, payload), in order (none when there are
/// none).
fn notifications(notes: Vec<(String, String)>) -> Option<OwnedQuery> {
    if notes.is_empty() {
        return None;
    }
    let (channels, payloads): (Vec<String>, Vec<String>) = notes.into_iter().unzip();
    Some(OwnedQuery {
        sql: "SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS n(c, p, k)
              ORDER BY k",
        params: owned_params![channels, payloads],
    })
}

/// The r2d2 manager, handing out [`PgConn`]s.
pub struct Manager {
    pub config: tokio_postgres::Config,
    pub channels: Arc<Channels>,
}

impl r2d2::ManageConnection for Manager {
    type Connection = PgConn;
    type Error = StoreError;

    fn connect(&self) -> Result<PgConn> {
        PgConn::connect(&self.config, self.channels.clone())
    }

    fn is_valid(&self, conn: &mut PgConn) -> Result<()> {
        conn.batch("")
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.broken || conn.client().is_closed()
    }
}

/// Typed column access for the shared row decoders (`storage::row`).
impl crate::storage::row::Columns for Row {
    fn int(&self, i: usize) -> Result<i64> {
        self.try_get(i).map_err(map_err)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        self.try_get(i).map_err(map_err)
    }
    fn text(&self, i: usize) -> Result<String> {
        self.try_get(i).map_err(map_err)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>> {
        self.try_get(i).map_err(map_err)
    }
    /// UUID columns are read as text (the `postgres` crate is built without its uuid
    /// feature; queries cast them with `::text`).
    fn uuid(&self, i: usize) -> Result<uuid::Uuid> {
        let s = self.text(i)?;
        uuid::Uuid::parse_str(&s).map_err(|e| {
            StoreError::Backend(Cause::with_message(format!("{s:?} is not a UUID"), e))
        })
    }
    /// New tables keep flags as `boolean`; the first ones as 0/1 integers.
    fn flag(&self, i: usize) -> Result<bool> {
        match self.try_get::<_, bool>(i) {
            Ok(b) => Ok(b),
            Err(_) => Ok(self.int(i)? != 0),
        }
    }
}

/// Maps PostgreSQL errors to the backend-independent kinds.
pub fn map_err(e: postgres::Error) -> StoreError {
    use postgres::error::SqlState;
    if e.is_closed() {
        return StoreError::Unavailable(Cause::of(e));
    }
    match e.code() {
        Some(c)
            if *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::LOCK_NOT_AVAILABLE =>
        {
            StoreError::Busy
        }
        Some(c)
            if *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
                || *c == SqlState::TOO_MANY_CONNECTIONS
                || *c == SqlState::DISK_FULL
                || *c == SqlState::INSUFFICIENT_RESOURCES
                || *c == SqlState::OUT_OF_MEMORY
                || *c == SqlState::IO_ERROR
                || *c == SqlState::READ_ONLY_SQL_TRANSACTION
                || c.code().starts_with("08") =>
        {
            StoreError::Unavailable(Cause::of(e))
        }
        None if std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()) => {
            StoreError::Unavailable(Cause::of(e))
        }
        _ => StoreError::Backend(Cause::with_message(db_message(&e), e)),
    }
}

fn db_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::writer::Writer;
    use postgres::Client;

    /// A writer on one connection of `WP_LITE_TEST_POSTGRES_URL` with a temporary table
    /// `t` of its own, and its channels; None (and a note that the test is skipped) when no
    /// PostgreSQL is configured.
    fn writer_and_channels() -> Option<(Writer<PgConn>, Arc<Channels>)> {
        let Ok(url) = std::env::var("WP_LITE_TEST_POSTGRES_URL") else {
            eprintln!("conn tests: SKIPPED (WP_LITE_TEST_POSTGRES_URL is not set)");
            return None;
        };
        let channels = Arc::new(Channels::for_schema("conn_tests"));
        let mut conn =
            PgConn::connect(&url.parse().expect("a URL"), channels.clone()).expect("connect");
        conn.batch("CREATE TEMP TABLE t (x int PRIMARY KEY)")
            .unwrap();
        Some((Writer::start("conn-test", vec![conn], None), channels))
    }

    fn writer() -> Option<Writer<PgConn>> {
        writer_and_channels().map(|(w, _)| w)
    }

    fn rows(w: &Writer<PgConn>) -> i64 {
        w.call(|c: &mut PgConn| {
            let r = c.query("SELECT COUNT(*) FROM t", &[])?;
            Ok(r[0].get::<_, i64>(0))
        })
        .unwrap()
    }

    type GroupOp = Box<dyn FnOnce(&mut PgConn) -> Result<()> + Send>;

    /// An operation inserting `xs` into `t`, one statement each, stopping at the first error.
    fn insert(xs: &'static [i32]) -> GroupOp {
        Box::new(move |c: &mut PgConn| {
            for x in xs {
                c.execute("INSERT INTO t VALUES ($1)", &[x])?;
            }
            Ok(())
        })
    }

    /// Runs `ops` as one group (a first operation holds the writer until all of them are
    /// queued behind it); their answers, in order.
    fn in_one_group(w: &Writer<PgConn>, ops: Vec<GroupOp>) -> Vec<Result<()>> {
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let (done, answers) = std::sync::mpsc::channel::<(usize, Result<()>)>();
        w.submit(Box::new(move |_: Result<&mut PgConn>| {
            let _ = wait.recv();
            crate::storage::writer::answer(Ok(()), |_: Result<()>| {})
        }));
        let n = ops.len();
        for (i, f) in ops.into_iter().enumerate() {
            let done = done.clone();
            w.submit(Box::new(move |c: Result<&mut PgConn>| {
                crate::storage::writer::answer(c.and_then(f), move |r: Result<()>| {
                    let _ = done.send((i, r));
                })
            }));
        }
        go.send(()).unwrap();
        let mut got: Vec<(usize, Result<()>)> = (0..n).map(|_| answers.recv().unwrap()).collect();
        got.sort_by_key(|(i, _)| *i);
        got.into_iter().map(|(_, r)| r).collect()
    }

    /// Notifications go out with the commit, once per channel, and an operation rolled back
    /// to its savepoint sends none. A `jobs` wake-up is known as this store's own (and not
    /// delivered back to it) while the connection that sent it is open.
    #[test]
    fn notifications_go_out_with_the_commit_and_not_for_a_rolled_back_operation() {
        use postgres::fallible_iterator::FallibleIterator;
        let Some((w, channels)) = writer_and_channels() else {
            return;
        };
        let url = std::env::var("WP_LITE_TEST_POSTGRES_URL").unwrap();
        let mut listener = Client::connect(&url, NoTls).expect("connect");
        let ch = Channels::for_schema("conn_tests");
        for c in [&ch.jobs, &ch.broadcasts, &ch.inbox] {
            listener.batch_execute(&format!("LISTEN \"{c}\"")).unwrap();
        }
        let answers = in_one_group(
            &w,
            vec![
                Box::new(|c: &mut PgConn| {
                    c.notify(Wake::Jobs)?;
                    c.execute("INSERT INTO t VALUES (1)", &[])?;
                    c.execute("INSERT INTO t VALUES (1)", &[]).map(|_| ())
                }),
                Box::new(|c: &mut PgConn| {
                    c.notify(Wake::Broadcasts)?;
                    c.notify(Wake::Broadcasts)
                }),
            ],
        );
        assert!(answers[0].is_err() && answers[1].is_ok(), "{answers:?}");
        // A later commit's notification: once it arrives, the group's have (PostgreSQL
        // delivers them in commit order).
        w.call(|c: &mut PgConn| {
            c.notify(Wake::Jobs)?;
            c.notify_inbox(7, 9)
        })
        .unwrap();
        // And one from a connection of another process.
        Client::connect(&url, NoTls)
            .unwrap()
            .batch_execute(&format!("NOTIFY \"{}\"", ch.jobs))
            .unwrap();
        let mut got = vec![];
        let mut pids = vec![];
        let mut n = listener.notifications();
        let mut it = n.timeout_iter(std::time::Duration::from_secs(10));
        while let Some(m) = it.next().unwrap() {
            got.push((m.channel().to_string(), m.payload().to_string()));
            pids.push(m.process_id());
            if got.len() == 4 {
                break;
            }
        }
        let none = String::new();
        assert_eq!(
            got,
            [
                (ch.broadcasts.clone(), none.clone()),
                (ch.jobs.clone(), none.clone()),
                (ch.inbox.clone(), "7 9".to_string()),
                (ch.jobs.clone(), none),
            ]
        );
        let own = |i: usize| channels.sent_by_this_store(&got[i].0, pids[i]);
        assert_eq!(
            (own(0), own(1), own(2), own(3)),
            (false, true, false, false)
        );
        w.close();
        drop(w);
        assert!(
            !own(1),
            "a closed connection's process is still counted as this store's"
        );
    }

    /// The writer's `BEGIN` goes out with a transaction's first message, yet an operation's
    /// statements still share one transaction (one transaction id), so do a group's
    /// operations, a transaction that sends nothing leaves nothing open, and each
    /// transaction after it is a new one.
    #[test]
    fn a_deferred_begin_still_makes_one_transaction_of_each_group() {
        let Some(w) = writer() else {
            return;
        };
        let xids = Arc::new(std::sync::Mutex::new(Vec::<i64>::new()));
        let record = |xids: &Arc<std::sync::Mutex<Vec<i64>>>| {
            let xids = xids.clone();
            move |c: &mut PgConn| -> Result<()> {
                for _ in 0..2 {
                    let x: i64 = c.query("SELECT txid_current()", &[])?[0].get(0);
                    xids.lock().unwrap().push(x);
                }
                Ok(())
            }
        };
        w.call(|_: &mut PgConn| Ok(())).unwrap();
        w.call(record(&xids)).unwrap();
        let got = in_one_group(&w, vec![Box::new(record(&xids)), Box::new(record(&xids))]);
        assert!(got.iter().all(|r| r.is_ok()), "{got:?}");
        w.call(|_: &mut PgConn| Ok(())).unwrap();
        w.call(record(&xids)).unwrap();
        let x = xids.lock().unwrap().clone();
        assert_eq!(x.len(), 8);
        assert_eq!(x[0], x[1], "one operation's statements: {x:?}");
        assert!(x[2..6].iter().all(|v| *v == x[2]), "one group: {x:?}");
        assert_eq!(x[6], x[7], "{x:?}");
        assert!(
            x[0] < x[2] && x[2] < x[6],
            "a transaction was left open: {x:?}"
        );
        w.close();
    }

    /// Savepoints go out with an operation's first statement: an operation that fails is
    /// still rolled back alone, one that sends nothing opens none (failing or not), and the
    /// rest of the group commits.
    #[test]
    fn held_back_savepoints_still_isolate_each_operation() {
        let Some(w) = writer() else {
            return;
        };
        let got = in_one_group(
            &w,
            vec![
                insert(&[20]),
                insert(&[21, 20]), // a duplicate key: fails after a first insert
                Box::new(|_: &mut PgConn| Ok(())),
                Box::new(|_: &mut PgConn| Err(StoreError::NotFound)),
                insert(&[22]),
            ],
        );
        let ok: Vec<bool> = got.iter().map(|r| r.is_ok()).collect();
        assert_eq!(ok, [true, false, true, false, true], "{got:?}");
        let kept = w
            .call(|c: &mut PgConn| {
                let r = c.query("SELECT x FROM t ORDER BY x", &[])?;
                Ok(r.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>())
            })
            .unwrap();
        assert_eq!(kept, [20, 22]);
        w.close();
    }

    /// An operation that swallowed an SQL error (which left the transaction aborted) is
    /// answered with an error, never as committed, and nothing it wrote stays: alone in its
    /// group (no savepoint; the commit's first statement fails) and in a group (its
    /// savepoint's release, sent with the next operation's first statement or the commit,
    /// fails).
    #[test]
    fn an_operation_that_swallows_an_sql_error_is_never_reported_committed() {
        let Some(w) = writer() else {
            return;
        };
        // In a group (each operation in a savepoint).
        let got = in_one_group(
            &w,
            vec![
                Box::new(|c: &mut PgConn| {
                    c.execute("INSERT INTO t VALUES (9)", &[])?;
                    let _ = c.execute("INSERT INTO t VALUES (9)", &[]); // duplicate key, ignored
                    Ok(())
                }),
                Box::new(|c: &mut PgConn| c.execute("INSERT INTO t VALUES (10)", &[]).map(|_| ())),
            ],
        );
        assert!(
            got[0].is_err(),
            "the swallowing operation was reported committed"
        );
        assert_eq!(rows(&w), 0);

        let swallowed = w.call(|c: &mut PgConn| {
            c.execute("INSERT INTO t VALUES (1)", &[])?;
            let _ = c.execute("INSERT INTO t VALUES (1)", &[]); // duplicate key, ignored
            Ok(())
        });
        assert!(swallowed.is_err(), "reported committed: {swallowed:?}");
        assert_eq!(rows(&w), 0);

        // An operation that fails is rolled back alone; one that succeeds commits.
        let failed = w.call(|c: &mut PgConn| {
            c.execute("INSERT INTO t VALUES (2)", &[])?;
            c.execute("INSERT INTO t VALUES (2)", &[]).map(|_| ())
        });
        assert!(failed.is_err());
        w.call(|c: &mut PgConn| c.execute("INSERT INTO t VALUES (3)", &[]).map(|_| ()))
            .unwrap();
        assert_eq!(rows(&w), 1);
        w.close();
    }
}
