//! The PostgreSQL backend: the `postgres` crate, an r2d2 pool for reads, group-commit
//! writer threads (several transactions in flight, each carrying many writes), and a
//! LISTEN/NOTIFY listener that wakes waiting leasers and workers on every node.
//!
//! Every call arrives through the one sync→async seam (`storage::Db`), so the sync client
//! never runs on a tokio worker thread. Claims use `FOR UPDATE SKIP LOCKED`, so several
//! nodes never lease one job twice and never wait on each other's claimed rows.
//!
//! This file opens the store and implements [`Store`] (lifecycle, migrations, wake-ups);
//! each feature trait is implemented in the module of its name (`impl JobStore for PgStore`
//! in `jobs.rs`, `impl BroadcastStore for PgStore` in `broadcasts.rs`, …), reading through
//! `PgStore::read` (a pooled connection) and writing through `PgStore::write` (the
//! group-commit writers).

mod batch;
mod broadcasts;
mod conn;
mod inbox;
mod jobs;
mod listener;
mod metrics;
pub mod raw;
mod schedules;
mod sessions;
mod users;
mod workers;

use super::{OpenError, OpenOptions, Result, Store, StoreError, WakeFn};
use crate::storage::writer::{Connect, Writer};
pub use conn::PgConn;
use conn::{map_err, Manager};
use listener::{Channels, Listener, Subscribers};
use postgres::{Client, Config, NoTls};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// Read connections per node.
const READ_POOL_SIZE: u32 = 16;
/// The most writer connections a node opens unless the URL asks for more (`?writers=N`).
const MAX_DEFAULT_WRITERS: usize = 4;
/// The most a URL may ask for.
const MAX_WRITERS: usize = 32;
/// Transactions at once carrying single enqueues, claims and completions (the writes of
/// the REST worker path): one. While it runs, the next requests gather, and the next
/// transaction carries them all; two at once split them into smaller transactions, each
/// paying for its `COMMIT` (http-roundtrip 2 650 against 3 000 jobs/s, BENCHMARKS.md). The
/// other writers stay free for everything else (batched acks, bulk actions, reclaims).
const QUICK_LANES: usize = 1;

/// A PostgreSQL URL split into the driver's config and wp-lite's own `schema` parameter.
pub struct PgTarget {
    pub config: Config,
    /// The same settings, for the store's own connections (`tokio-postgres`, pipelined).
    pub async_config: tokio_postgres::Config,
    pub schema: Option<String>,
    /// Writer connections: transactions in flight at once on this node, each a group commit.
    pub writers: usize,
}

/// Writer connections when the URL does not say: one per core of this machine, at least
/// two and at most four. On a small machine PostgreSQL shares the cores with wp-lite, and
/// fewer transactions in flight each carry a bigger group: on two cores, two writers drain
/// a fifth faster than four (BENCHMARKS.md). More than four is for the URL to ask for, with
/// PostgreSQL on a machine of its own.
fn default_writers() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, MAX_DEFAULT_WRITERS)
}

/// Parses `postgres://…[?schema=NAME][&writers=N]`. `schema` (letters, digits, `_`) puts
/// every table in that schema, created if missing — several wp-lite installs can share one
/// database. `writers` (1–32) sets how many writer connections this node opens.
pub fn parse_target(url: &str) -> std::result::Result<PgTarget, OpenError> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut schema = None;
    let mut writers = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("schema", v)) => schema = Some(v.to_string()),
            Some(("writers", v)) => writers = Some(v.to_string()),
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    let redacted = super::redact_url(&url);
    let writers = match writers {
        None => default_writers(),
        Some(w) => w
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_WRITERS).contains(n))
            .ok_or_else(|| {
                OpenError::Open(format!(
                    "writers '{w}' in {redacted}: use a whole number from 1 to {MAX_WRITERS}"
                ))
            })?,
    };
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| OpenError::Open(format!("{redacted}: {e}")))?;
    if let Some(s) = &schema {
        if s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(OpenError::Open(format!(
                "schema '{s}' in {redacted}: use letters, digits and _"
            )));
        }
        config.options(session_options(config.get_options(), s));
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        // Notice a connection that died silently (failover, partition) in about a minute
        // rather than two hours.
        config.keepalives_idle(Duration::from_secs(30));
    }
    if config.get_application_name().is_none() {
        config.application_name("wp-lite");
    }
    Ok(PgTarget {
        config: Config::from(config.clone()),
        async_config: config,
        schema,
        writers,
    })
}

/// The session options of wp-lite's connections in a schema: those of the URL, then the
/// schema's search path.
fn session_options(url_options: Option<&str>, schema: &str) -> String {
    match url_options.map(str::trim).filter(|o| !o.is_empty()) {
        Some(o) => format!("{o} -c search_path={schema}"),
        None => format!("-c search_path={schema}"),
    }
}

/// Connects one plain client (for migrations, copy and the raw benchmarks).
pub fn connect(target: &PgTarget) -> std::result::Result<Client, OpenError> {
    let mut client = target
        .config
        .connect(NoTls)
        .map_err(|e| OpenError::Open(format!("cannot connect to PostgreSQL: {e}")))?;
    if let Some(s) = &target.schema {
        // Under a lock: two nodes creating the schema at once would otherwise collide. The
        // statements of one simple query run in one implicit transaction, so the lock is a
        // transaction lock: it is held until the CREATE has committed (a session lock
        // released inside the batch would let the next node look before the commit).
        let sql = format!(
            "SELECT pg_advisory_xact_lock(hashtext('wp-lite schema {s}'));
             CREATE SCHEMA IF NOT EXISTS \"{s}\";"
        );
        client.batch_execute(&sql).map_err(|e| {
            let why = e
                .as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_string());
            OpenError::Open(format!("creating schema {s}: {why}"))
        })?;
    }
    Ok(client)
}

/// The read pool. An idle `postgres::Client` blocks on a runtime of its own when it is
/// dropped, which panics on a tokio thread — and the last handle on the store is often
/// dropped at the end of an async command (`serve`, `run`). So the pool is dropped on a
/// plain thread when a runtime is current.
struct ReadPool(Option<r2d2::Pool<Manager>>);

impl std::ops::Deref for ReadPool {
    type Target = r2d2::Pool<Manager>;
    fn deref(&self) -> &Self::Target {
        self.0
            .as_ref()
            .expect("the read pool lives as long as the store")
    }
}

impl Drop for ReadPool {
    fn drop(&mut self) {
        if let Some(pool) = self.0.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::spawn(move || drop(pool)).join();
            }
        }
    }
}

pub struct PgStore {
    pool: ReadPool,
    writer: Writer<PgConn>,
    config: Config,
    channels: Arc<Channels>,
    subscribers: Subscribers,
    listener: Mutex<Option<Listener>>,
    /// Single enqueues, completions and claims, carried by the writers' next cycles.
    quick: Arc<batch::Coalescer<batch::QuickReq, batch::QuickAns>>,
}

impl PgStore {
    pub fn open(url: &str, opts: &OpenOptions) -> std::result::Result<Self, OpenError> {
        let target = parse_target(url)?;
        let mut client = connect(&target)?;
        if opts.migrate {
            migrate(&mut client)?;
        }
        let schema: String = client
            .query_one("SELECT current_schema()", &[])
            .ok()
            .and_then(|r| r.get::<_, Option<String>>(0))
            .unwrap_or_else(|| "public".into());
        let channels = Arc::new(Channels::for_schema(&schema));
        drop(client);
        let manager = Manager {
            config: target.async_config.clone(),
            channels: channels.clone(),
        };
        let pool = r2d2::Pool::builder()
            .max_size(READ_POOL_SIZE)
            .min_idle(Some(2))
            .connection_timeout(Duration::from_secs(5))
            .build(manager)
            .map_err(|e| OpenError::Open(format!("PostgreSQL pool: {e}")))?;
        let config = target.async_config.clone();
        let ch = channels.clone();
        let reconnect: Arc<Connect<PgConn>> =
            Arc::new(Box::new(move || PgConn::connect(&config, ch.clone())));
        let mut conns = Vec::with_capacity(target.writers);
        for _ in 0..target.writers {
            conns.push(reconnect().map_err(|e| OpenError::Open(e.to_string()))?);
        }
        Ok(Self {
            pool: ReadPool(Some(pool)),
            writer: Writer::start("wp-lite-pg-writer", conns, Some(reconnect)),
            config: target.config,
            channels,
            subscribers: Arc::default(),
            listener: Mutex::new(None),
            quick: batch::Coalescer::new(QUICK_LANES),
        })
    }

    fn read<T>(&self, f: impl FnOnce(&mut PgConn) -> Result<T>) -> Result<T> {
        let mut conn = self
            .pool
            .get()
            .map_err(|e| StoreError::Unavailable(crate::storage::Cause::of(e)))?;
        f(&mut conn)
    }

    /// Runs `f` in a group-commit transaction. Several transactions run at once (writer
    /// threads, other nodes), each holding the locks of every operation in its group, so
    /// two of them can deadlock; PostgreSQL then fails one operation (`Busy`), whose
    /// savepoint is rolled back while the rest of its group commits. That operation runs
    /// again in a later transaction, after the other side has committed.
    fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&mut PgConn) -> Result<T> + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let mut attempt = 0;
        loop {
            let g = f.clone();
            match self.writer.call(move |c| g(c)) {
                Err(StoreError::Busy) if attempt < crate::storage::BUSY_RETRIES => {
                    attempt += 1;
                    std::thread::sleep(crate::storage::busy_backoff(attempt));
                }
                other => return other,
            }
        }
    }
}

/// Applies pending migrations under an advisory lock, so nodes starting at once take turns
/// and the later ones find the work done.
fn migrate(client: &mut Client) -> std::result::Result<(), OpenError> {
    migrate_until(client, None)
}

/// Applies the migrations up to `version` only (tests of upgrades from an older release).
pub fn migrate_to(url: &str, version: u32) -> std::result::Result<(), OpenError> {
    let mut client = connect(&parse_target(url)?)?;
    migrate_until(&mut client, Some(version))
}

fn migrate_until(client: &mut Client, version: Option<u32>) -> std::result::Result<(), OpenError> {
    let err = |e: postgres::Error| OpenError::Migrate(e.to_string());
    client
        .batch_execute("SELECT pg_advisory_lock(hashtext('wp-lite migrate ' || current_schema()))")
        .map_err(err)?;
    let target = version.map_or(refinery::Target::Latest, |v| {
        refinery::Target::Version(v as _)
    });
    let res = embedded::migrations::runner()
        .set_grouped(true)
        .set_target(target)
        .run(client)
        .map(|_| ())
        .map_err(|e| OpenError::Migrate(e.to_string()));
    let unlock = client
        .batch_execute(
            "SELECT pg_advisory_unlock(hashtext('wp-lite migrate ' || current_schema()))",
        )
        .map_err(err);
    res.and(unlock)
}

impl Store for PgStore {
    /// Single enqueues and completions join the coalesced batches with no blocking-pool
    /// thread waiting on them: the writer answers the caller itself after the commit.
    fn starts_writes(&self) -> bool {
        true
    }
    fn start_write(&self, w: crate::storage::QuickWrite) {
        use crate::storage::{Done, QuickWrite};
        use batch::{QuickAns, QuickReq};
        /// Answers `done` with the answer of its kind.
        fn reply<T: 'static>(
            done: Done<T>,
            pick: fn(QuickAns) -> Result<T>,
        ) -> batch::Reply<QuickAns> {
            Box::new(move |r| done(r.and_then(pick)))
        }
        let (req, reply) = match w {
            QuickWrite::Enqueue { job, now, done } => (
                QuickReq::Enqueue(jobs::EnqueueReq { job, now }),
                reply(done, QuickAns::enqueued),
            ),
            QuickWrite::Complete {
                id,
                fence,
                result,
                now,
                done,
            } => (
                QuickReq::Complete(jobs::CompleteReq {
                    id,
                    fence,
                    result,
                    now,
                }),
                reply(done, QuickAns::completed),
            ),
            QuickWrite::Claim { claim, now, done } => (
                QuickReq::Claim(jobs::ClaimReq { claim, now }),
                reply(done, QuickAns::claimed),
            ),
        };
        self.quick
            .submit(&self.writer, req, batch::quick_many, reply);
    }
    fn max_concurrency(&self) -> usize {
        64
    }

    fn schema_version(&self) -> Result<i64> {
        self.read(|c| {
            let exists = c
                .query_one(
                    "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
                    &[],
                )?
                .get::<_, bool>(0);
            if !exists {
                return Ok(0);
            }
            Ok(c.query_one(
                "SELECT COALESCE(MAX(version), 0)::BIGINT FROM refinery_schema_history",
                &[],
            )?
            .get(0))
        })
    }

    fn migrations(&self) -> Vec<(i64, String)> {
        crate::storage::migration_list(embedded::migrations::runner().get_migrations())
    }

    fn close(&self) {
        if let Some(l) = self.listener.lock().expect("listener lock").take() {
            l.close();
        }
        self.writer.close();
    }

    fn subscribe(&self, wake: WakeFn) {
        self.subscribers
            .lock()
            .expect("subscribers lock")
            .push(wake);
        let mut l = self.listener.lock().expect("listener lock");
        if l.is_none() {
            *l = Some(Listener::start(
                self.config.clone(),
                (*self.channels).clone(),
                self.subscribers.clone(),
            ));
        }
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_sets_the_writer_count_within_bounds() {
        let url = "postgres://u@127.0.0.1:5432/db";
        let default = parse_target(url).unwrap().writers;
        assert!((2..=MAX_DEFAULT_WRITERS).contains(&default), "{default}");
        let t = parse_target(&format!("{url}?writers=1&schema=s1")).unwrap();
        assert_eq!((t.writers, t.schema.as_deref()), (1, Some("s1")));
        assert_eq!(
            parse_target(&format!("{url}?schema=s1&writers=32"))
                .unwrap()
                .writers,
            32
        );
        for bad in ["0", "33", "two", ""] {
            let err = parse_target(&format!("{url}?writers={bad}")).err();
            assert!(
                matches!(&err, Some(OpenError::Open(m)) if m.contains("writers")),
                "{bad}: {err:?}"
            );
        }
    }

    /// A schema's search path goes after the URL's own options.
    #[test]
    fn the_session_options_keep_the_url_s_own() {
        let url = "postgres://u@127.0.0.1:5432/db";
        let options = |q: &str| {
            parse_target(&format!("{url}{q}"))
                .unwrap()
                .async_config
                .get_options()
                .map(str::to_string)
        };
        assert_eq!(options(""), None);
        assert_eq!(options("?schema=s1").as_deref(), Some("-c search_path=s1"));
        assert_eq!(
            options("?schema=s1&options=-c%20work_mem%3D8MB").as_deref(),
            Some("-c work_mem=8MB -c search_path=s1")
        );
    }
}
