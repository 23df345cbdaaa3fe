//! The SQLite backend: bundled SQLite, WAL, an r2d2 pool for reads and one writer thread.
//!
//! This file opens the store and implements [`Store`] (lifecycle, migrations); each feature
//! trait is implemented in the module of its name (`impl JobStore for SqliteStore` in
//! `jobs.rs`, `impl BroadcastStore for SqliteStore` in `broadcasts.rs`, …), reading through
//! `SqliteStore::read` (a pooled connection) and writing through `SqliteStore::write` (the
//! writer thread). A whole store call can also run on the writer thread
//! ([`Store::run_on_writer`]); its writes then run in place, on the writer's connection.

pub mod backup;
mod broadcasts;
mod checkpoint;
mod inbox;
mod jobs;
mod metrics;
pub mod raw;
mod schedules;
mod sessions;
mod users;
mod workers;

use super::{OpenError, OpenOptions, Result, Store, StoreError};
use crate::domain::JobStatus;
use crate::storage::counts::CountLog;
use crate::storage::writer::{Connect, Isolation, TxConn, Writer};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::Connection;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use uuid::Uuid;

mod embedded {
    refinery::embed_migrations!("migrations/sqlite");
}

const READ_POOL_SIZE: u32 = 8;

scoped_tls::scoped_thread_local! {
    /// The writer's connection while a store call runs on the writer's thread.
    static ON_WRITER: WriteConn
}

/// Tells stores apart, so a call on one store's writer never writes through another's.
static NEXT_STORE_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Pragmas every connection gets.
pub(crate) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    // Every statement the store uses stays prepared (the default cache holds only 16).
    conn.set_prepared_statement_cache_capacity(256);
    // The query planner stability guarantee: a cached statement keeps its plan when its
    // parameters are bound again. Without it, a statement whose parameter SQLite compared
    // with a partial index's condition is compiled anew on every call (`sqlite3Reprepare`).
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    register_functions(conn)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -16000;
         PRAGMA journal_size_limit = 67108864;",
    )?;
    Ok(())
}

/// SQL functions the schema uses: `wp_uuid7()` (a new UUID v7 as 16 bytes, for the
/// public id of a row) and `wp_uuid7_at(ms)` (one whose time part is `ms`, for rows
/// that existed before they had one).
fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    conn.create_scalar_function("wp_uuid7", 0, FunctionFlags::SQLITE_UTF8, |_| {
        Ok(Uuid::now_v7().as_bytes().to_vec())
    })?;
    conn.create_scalar_function("wp_uuid7_at", 1, FunctionFlags::SQLITE_UTF8, |ctx| {
        let ms = ctx.get::<i64>(0)?.max(0) as u64;
        let ts = uuid::Timestamp::from_unix(
            uuid::NoContext,
            ms / 1000,
            ((ms % 1000) * 1_000_000) as u32,
        );
        Ok(Uuid::new_v7(ts).as_bytes().to_vec())
    })
}

/// A UUID kept as 16 bytes.
pub(crate) fn uuid_from_blob(b: &[u8]) -> rusqlite::Result<Uuid> {
    Uuid::from_slice(b).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(16, rusqlite::types::Type::Blob, Box::new(e))
    })
}

pub struct SqliteStore {
    pool: r2d2::Pool<SqliteConnectionManager>,
    writer: Writer<WriteConn>,
    /// This store's mark on its writer's connections.
    id: u64,
    checkpointer: checkpoint::Checkpointer,
}

impl SqliteStore {
    pub fn open(path: &Path, opts: &OpenOptions) -> std::result::Result<Self, OpenError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| OpenError::Open(format!("{}: {e}", dir.display())))?;
        }
        let open_err = |e: rusqlite::Error| OpenError::Open(format!("{}: {e}", path.display()));
        let id = NEXT_STORE_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut conn = Connection::open(path).map_err(open_err)?;
        configure(&conn).map_err(open_err)?;
        if opts.migrate {
            migrate(&mut conn)?;
        }
        let manager = SqliteConnectionManager::file(path).with_init(|c| {
            configure(c)?;
            c.execute_batch("PRAGMA query_only = ON;")
        });
        let pool = r2d2::Pool::builder()
            .max_size(READ_POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(30))
            .build(manager)
            .map_err(|e| OpenError::Open(e.to_string()))?;
        // Checkpoints run beside the writer, never inside a commit.
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")
            .map_err(open_err)?;
        let checkpointer = checkpoint::Checkpointer::start(path).map_err(open_err)?;
        // A writer whose file went read-only (or whose connection broke) opens it again.
        let reopen_path = path.to_path_buf();
        let reopen: Arc<Connect<WriteConn>> = Arc::new(Box::new(move || {
            let conn = Connection::open(&reopen_path).map_err(map_err)?;
            configure(&conn).map_err(map_err)?;
            conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")
                .map_err(map_err)?;
            Ok(WriteConn::new(conn, id))
        }));
        Ok(Self {
            pool,
            writer: Writer::start(
                "wp-lite-sqlite-writer",
                vec![WriteConn::new(conn, id)],
                Some(reopen),
            ),
            id,
            checkpointer,
        })
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self
            .pool
            .get()
            .map_err(|e| StoreError::Unavailable(crate::storage::Cause::of(e)))?;
        f(&conn)
    }

    fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteConn) -> Result<T> + Send + 'static,
    {
        if self.on_writer() {
            // Already inside this store's transaction, on its writer's thread.
            return ON_WRITER.with(|c| c.atomic(f));
        }
        self.writer.call(move |c: &mut WriteConn| f(c))
    }

    /// `write` for a call whose only write is one statement, so that if it fails it has
    /// written nothing: it needs no savepoint of its own.
    fn write_single<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteConn) -> Result<T> + Send + 'static,
    {
        if self.on_writer() {
            return ON_WRITER.with(|c| {
                c.in_group()?;
                f(c)
            });
        }
        self.writer
            .call_with(Isolation::Unguarded, move |c: &mut WriteConn| f(c))
    }

    /// Whether this thread is this store's writer, running one of its operations.
    fn on_writer(&self) -> bool {
        ON_WRITER.is_set() && ON_WRITER.with(|c| c.store == self.id)
    }
}

/// Applies pending migrations. Two processes starting at once may race; the loser retries
/// and finds the work done.
fn migrate(conn: &mut Connection) -> std::result::Result<(), OpenError> {
    migrate_until(conn, None)
}

/// Applies the migrations up to `version` only (tests of upgrades from an older release).
pub fn migrate_to(path: &Path, version: u32) -> std::result::Result<(), OpenError> {
    let open_err = |e: rusqlite::Error| OpenError::Open(format!("{}: {e}", path.display()));
    let mut conn = Connection::open(path).map_err(open_err)?;
    configure(&conn).map_err(open_err)?;
    migrate_until(&mut conn, Some(version))
}

fn migrate_until(
    conn: &mut Connection,
    version: Option<u32>,
) -> std::result::Result<(), OpenError> {
    let target = version.map_or(refinery::Target::Latest, |v| {
        refinery::Target::Version(v as _)
    });
    let mut last = String::new();
    for attempt in 0..20 {
        match embedded::migrations::runner()
            .set_grouped(true)
            .set_target(target)
            .run(conn)
        {
            Ok(_) => return Ok(()),
            Err(e) => {
                last = e.to_string();
                std::thread::sleep(Duration::from_millis(50 * (attempt + 1)));
            }
        }
    }
    Err(OpenError::Migrate(last))
}

/// How long the writer keeps retrying a database locked by another process.
const BUSY_PATIENCE: Duration = Duration::from_secs(30);

pub(crate) fn exec(conn: &Connection, sql: &str) -> Result<()> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute([]))
        .map(|_| ())
        .map_err(map_err)
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

/// The writer's connection: the SQLite connection, and the job-count moves of the
/// transaction in progress (written into `job_counts` at commit).
pub(crate) struct WriteConn {
    conn: Connection,
    counts: std::cell::RefCell<CountLog>,
    /// The store whose writer this is.
    store: u64,
}

impl WriteConn {
    fn new(conn: Connection, store: u64) -> Self {
        Self {
            conn,
            counts: Default::default(),
            store,
        }
    }

    /// A job of `job_type` entered `to` and left `from` (None: inserted or deleted).
    pub(crate) fn moved(&self, job_type: &str, from: Option<JobStatus>, to: Option<JobStatus>) {
        self.counts.borrow_mut().moved(job_type, from, to);
    }

    fn open_savepoint(&self) -> Result<()> {
        exec(&self.conn, "SAVEPOINT op")?;
        self.counts.borrow_mut().mark();
        Ok(())
    }

    fn undo_savepoint(&self) -> Result<()> {
        self.counts.borrow_mut().rollback_to_mark();
        exec(&self.conn, "ROLLBACK TO op")
    }

    fn close_savepoint(&self) -> Result<()> {
        self.counts.borrow_mut().release_mark();
        exec(&self.conn, "RELEASE op")
    }

    /// Fails once the group's transaction is lost (SQLite rolled it back after an I/O
    /// error): a write now would run in a transaction of its own, outside the group.
    fn in_group(&self) -> Result<()> {
        if self.conn.is_autocommit() {
            return Err(crate::storage::lost_transaction());
        }
        Ok(())
    }

    /// Runs `f`, one store call, all or nothing: in a savepoint of its own, rolled back if
    /// `f` fails or panics. (Store calls made on the writer's thread run in operations
    /// without a savepoint, so that a call that needs none does not pay for one.)
    fn atomic<T>(&self, f: impl FnOnce(&WriteConn) -> Result<T>) -> Result<T> {
        self.in_group()?;
        /// Rolls the savepoint back if `f` unwinds.
        struct OnPanic<'a>(&'a WriteConn, bool);
        impl Drop for OnPanic<'_> {
            fn drop(&mut self) {
                if self.1 {
                    let _ = self.0.undo_savepoint();
                    let _ = self.0.close_savepoint();
                }
            }
        }
        self.open_savepoint()?;
        let mut guard = OnPanic(self, true);
        let out = f(self);
        guard.1 = false;
        if out.is_err() {
            // The call's own error is the answer. Undoing can fail too — after an I/O error
            // SQLite may have rolled the whole transaction back, savepoint and all — and
            // then the writer finds the transaction gone and fails the group.
            let _ = self.undo_savepoint();
            let _ = self.close_savepoint();
            return out;
        }
        self.close_savepoint()?;
        out
    }
}

impl std::ops::Deref for WriteConn {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

/// The writer's transactions, with the count log following its savepoints: `BEGIN
/// IMMEDIATE`, so `SQLITE_BUSY` from another process is met (and retried) here and never
/// reaches a client.
impl TxConn for WriteConn {
    fn begin(&mut self) -> Result<()> {
        self.counts.get_mut().clear();
        retry_busy(|| exec(&self.conn, "BEGIN IMMEDIATE"))
    }
    fn commit(&mut self) -> Result<()> {
        let sums = self.counts.get_mut().take();
        let res = jobs::add_counts(&self.conn, &sums)
            .and_then(|()| retry_busy(|| exec(&self.conn, "COMMIT")));
        if res.is_err() {
            self.rollback();
        }
        res
    }
    fn rollback(&mut self) {
        self.counts.get_mut().clear();
        if self.in_transaction() {
            let _ = exec(&self.conn, "ROLLBACK");
        }
    }
    fn savepoint(&mut self) -> Result<()> {
        self.open_savepoint()
    }
    fn rollback_to_savepoint(&mut self) -> Result<()> {
        self.undo_savepoint()
    }
    fn release_savepoint(&mut self) -> Result<()> {
        self.close_savepoint()
    }
    fn in_transaction(&mut self) -> bool {
        self.in_group().is_ok()
    }
    fn usable(&mut self) -> bool {
        !self.conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false)
    }
}

/// Typed column access for the shared row decoders (`storage::row`).
impl crate::storage::row::Columns for rusqlite::Row<'_> {
    fn int(&self, i: usize) -> Result<i64> {
        self.get(i).map_err(map_err)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        self.get(i).map_err(map_err)
    }
    fn text(&self, i: usize) -> Result<String> {
        self.get(i).map_err(map_err)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>> {
        self.get(i).map_err(map_err)
    }
    fn uuid(&self, i: usize) -> Result<Uuid> {
        let b: Vec<u8> = self.get(i).map_err(map_err)?;
        uuid_from_blob(&b).map_err(map_err)
    }
}

/// A stored value read back inside a row mapper (or a shared decoder of `storage::row` used
/// as one): a corrupt one is a conversion error of
/// column `col` (carrying the decoding error), never a default.
pub(crate) fn decoded<T>(col: usize, r: Result<T>) -> rusqlite::Result<T> {
    r.map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// Maps rusqlite errors to the backend-independent kinds.
pub(crate) fn map_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) =>
        {
            StoreError::Busy
        }
        rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
        // Faults of the file, not of the statement: the store is unavailable until they
        // clear (503 with Retry-After; the transaction was rolled back).
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                ErrorCode::DiskFull
                    | ErrorCode::ReadOnly
                    | ErrorCode::SystemIoFailure
                    | ErrorCode::CannotOpen
                    | ErrorCode::OutOfMemory
                    | ErrorCode::FileLockingProtocolFailed
            ) =>
        {
            StoreError::Unavailable(crate::storage::Cause::of(e))
        }
        _ => StoreError::Backend(crate::storage::Cause::of(e)),
    }
}

impl Store for SqliteStore {
    fn max_concurrency(&self) -> usize {
        // Reads use the pool; writes wait on the writer. Enough permits for many writers
        // to share one group commit.
        64
    }

    fn schema_version(&self) -> Result<i64> {
        self.read(|c| {
            c.query_row(
                "SELECT COALESCE(MAX(version), 0) FROM refinery_schema_history",
                [],
                |r| r.get(0),
            )
            .or(Ok(0))
        })
    }

    fn migrations(&self) -> Vec<(i64, String)> {
        crate::storage::migration_list(embedded::migrations::runner().get_migrations())
    }

    fn close(&self) {
        self.writer.close();
        self.checkpointer.close();
    }

    fn run_on_writer(
        &self,
        this: Arc<dyn Store>,
        task: crate::storage::WriterTask,
    ) -> Option<crate::storage::WriterTask> {
        // Unguarded: each store call the task makes is atomic by itself (`write`).
        self.writer.submit_with(
            Isolation::Unguarded,
            Box::new(move |conn| match conn {
                Ok(c) => ON_WRITER.set(c, || task(Ok(this.as_ref()))),
                Err(e) => task(Err(e)),
            }),
        );
        None
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.writer.close();
        self.checkpointer.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::AssertUnwindSafe;

    fn insert(c: &WriteConn, n: usize) -> Result<()> {
        for _ in 0..n {
            exec(c, "INSERT INTO t VALUES (zeroblob(3000))")?;
        }
        Ok(())
    }

    /// A disk that fills up in the middle of a store call: the call is answered with its
    /// own error (unavailable: a 503, not a 500), and a later call never writes outside the
    /// group's transaction.
    #[test]
    fn a_full_disk_inside_a_store_call_is_answered_with_its_own_error() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("full.db")).unwrap();
        conn.execute_batch("CREATE TABLE t (x BLOB); PRAGMA max_page_count = 30;")
            .unwrap();
        let mut w = WriteConn::new(conn, 0);
        TxConn::begin(&mut w).unwrap();
        w.atomic(|c| insert(c, 5)).unwrap();
        let full = w.atomic(|c| insert(c, 100));
        assert!(matches!(full, Err(StoreError::Unavailable(_))), "{full:?}");
        let next = w.atomic(|c| insert(c, 1));
        if w.is_autocommit() {
            // SQLite ended the transaction: the next call must not start one of its own.
            assert!(matches!(next, Err(StoreError::Unavailable(_))), "{next:?}");
            assert!(
                w.is_autocommit(),
                "a call wrote outside the group's transaction"
            );
        } else {
            next.unwrap();
            TxConn::commit(&mut w).unwrap();
            let rows: i64 = w
                .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .unwrap();
            assert_eq!(rows, 6, "the failed call's rows were not rolled back");
        }
    }

    /// A panic inside a store call rolls that call back and closes its savepoint, and the
    /// rest of the transaction commits.
    #[test]
    fn a_panic_inside_a_store_call_rolls_that_call_back() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x BLOB);").unwrap();
        let mut w = WriteConn::new(conn, 0);
        TxConn::begin(&mut w).unwrap();
        w.atomic(|c| insert(c, 1)).unwrap();
        let panicked = std::panic::catch_unwind(AssertUnwindSafe(|| {
            w.atomic::<()>(|c| {
                insert(c, 2)?;
                panic!("a bug in a store call")
            })
        }));
        assert!(panicked.is_err());
        w.atomic(|c| insert(c, 1)).unwrap();
        TxConn::commit(&mut w).unwrap();
        let rows: i64 = w
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 2);
    }
}
