//! The raw SQLite limits `wp-lite bench` compares against: the same schema, the same
//! pragmas, one thread, no wp-lite code in the way.

use super::configure;
use crate::storage::raw::payload;
use rusqlite::{params, Connection};
use std::path::Path;
use std::time::{Duration, Instant};

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    configure(&conn)?;
    conn.execute_batch(include_str!("../../../migrations/sqlite/V1__jobs.sql"))?;
    Ok(conn)
}

const INSERT: &str = "INSERT INTO jobs (id, type, status, priority, input, attempts,
    max_attempts, available_at, created_at, updated_at)
    VALUES (?1, 'bench', 'queued', 5, '{}', 0, 3, ?2, ?2, ?2)";

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `ops` single-row INSERT transactions into a fresh database at `path`.
pub fn insert_single(path: &Path, ops: usize) -> rusqlite::Result<Duration> {
    let conn = open(path)?;
    let start = Instant::now();
    let mut st = conn.prepare_cached(INSERT)?;
    for _ in 0..ops {
        st.execute(params![uuid::Uuid::now_v7().to_string(), now_ms()])?;
    }
    Ok(start.elapsed())
}

/// `ops` rows in INSERT transactions of `batch` rows.
pub fn insert_batch(path: &Path, ops: usize, batch: usize) -> rusqlite::Result<Duration> {
    let mut conn = open(path)?;
    let start = Instant::now();
    let mut left = ops;
    while left > 0 {
        let n = left.min(batch);
        let tx = conn.transaction()?;
        {
            let mut st = tx.prepare_cached(INSERT)?;
            for _ in 0..n {
                st.execute(params![uuid::Uuid::now_v7().to_string(), now_ms()])?;
            }
        }
        tx.commit()?;
        left -= n;
    }
    Ok(start.elapsed())
}

/// Fills `ops` queued jobs, then claims one with `UPDATE … RETURNING` and completes it,
/// one job at a time, each statement its own transaction. Returns the drain time only.
pub fn claim_complete(path: &Path, ops: usize) -> rusqlite::Result<Duration> {
    insert_batch(path, ops, 1000)?;
    let conn = Connection::open(path)?;
    configure(&conn)?;
    let start = Instant::now();
    let mut claim = conn.prepare_cached(
        "UPDATE jobs SET status = 'leased', attempts = attempts + 1, lease_owner = 'raw',
             lease_until = ?1, lease_token = lower(hex(randomblob(16))), updated_at = ?1
         WHERE seq = (SELECT seq FROM jobs
                      WHERE status = 'queued' AND type = 'bench' AND available_at <= ?1
                      ORDER BY priority, available_at, created_at LIMIT 1)
         RETURNING seq",
    )?;
    let mut complete = conn
        .prepare_cached("UPDATE jobs SET status = 'succeeded', updated_at = ?2 WHERE seq = ?1")?;
    loop {
        let now = now_ms() + 1000;
        let seq: Option<i64> = claim.query_row([now], |r| r.get(0)).ok();
        let Some(seq) = seq else { break };
        complete.execute(params![seq, now])?;
    }
    Ok(start.elapsed())
}

/// Fills `jobs` with `rows` finished jobs (for the history-growth drain scenario).
pub fn fill_finished(path: &Path, rows: usize) -> rusqlite::Result<()> {
    let conn = Connection::open(path)?;
    configure(&conn)?;
    conn.execute_batch("BEGIN")?;
    {
        let mut st = conn.prepare(
            "INSERT INTO jobs (id, type, status, priority, input, attempts, max_attempts,
                 available_at, created_at, updated_at)
             VALUES (?1, 'bench', 'succeeded', 5, '{}', 1, 3, ?2, ?2, ?2)",
        )?;
        let now = now_ms();
        for _ in 0..rows {
            st.execute(params![uuid::Uuid::now_v7().to_string(), now])?;
        }
    }
    conn.execute_batch("COMMIT")?;
    Ok(())
}

/// Fills `users` with `n` active users (`user-0000001` …) in one transaction.
pub fn fill_users(path: &Path, n: usize) -> rusqlite::Result<()> {
    let conn = Connection::open(path)?;
    configure(&conn)?;
    conn.execute_batch("BEGIN")?;
    {
        let mut st = conn.prepare(
            "INSERT INTO users (id, email, attributes, is_active, created_at, updated_at)
             VALUES (?1, NULL, '{}', 1, ?2, ?2)",
        )?;
        let now = now_ms();
        for i in 0..n {
            st.execute(params![format!("user-{i:07}"), now])?;
        }
    }
    conn.execute_batch("COMMIT")?;
    Ok(())
}

/// The raw fanout limit: one plain `INSERT … SELECT` of every active user into
/// `inbox_items` (same columns and indexes), in one transaction. Returns (rows, time).
pub fn insert_select(path: &Path) -> rusqlite::Result<(usize, Duration)> {
    let conn = Connection::open(path)?;
    configure(&conn)?;
    let start = Instant::now();
    conn.execute_batch("BEGIN")?;
    let n = conn.execute(
        "INSERT INTO inbox_items (uid, user_id, broadcast_id, created_at)
         SELECT wp_uuid7(), id, 'raw-broadcast', ?1 FROM users WHERE is_active = 1 AND deleted_at IS NULL ORDER BY seq",
        [now_ms()],
    )?;
    conn.execute_batch("COMMIT")?;
    Ok((n, start.elapsed()))
}

/// The smallest table a queue can have (an integer key, a JSON payload, a state, one
/// partial index): the machine's own limit, beside the limits of wp-lite's schema.
fn open_minimal(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    configure(&conn)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS jobs_minimal (
             id          INTEGER PRIMARY KEY,
             payload     TEXT    NOT NULL,
             state       INTEGER NOT NULL DEFAULT 0,
             lease_until INTEGER,
             created_at  INTEGER NOT NULL
         );
         CREATE INDEX IF NOT EXISTS jobs_minimal_queued ON jobs_minimal (id) WHERE state = 0;",
    )?;
    Ok(conn)
}

const MINIMAL_INSERT: &str = "INSERT INTO jobs_minimal (payload, created_at) VALUES (?1, ?2)";

/// `ops` single-row INSERTs into the minimal table, each its own transaction.
pub fn minimal_insert_single(path: &Path, ops: usize) -> rusqlite::Result<Duration> {
    let conn = open_minimal(path)?;
    let mut st = conn.prepare_cached(MINIMAL_INSERT)?;
    let start = Instant::now();
    for i in 0..ops {
        st.execute(params![payload(i), now_ms()])?;
    }
    Ok(start.elapsed())
}

/// `ops` rows into the minimal table in transactions of `batch` INSERTs.
pub fn minimal_insert_batch(path: &Path, ops: usize, batch: usize) -> rusqlite::Result<Duration> {
    let mut conn = open_minimal(path)?;
    let start = Instant::now();
    let mut i = 0;
    while i < ops {
        let end = (i + batch).min(ops);
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut st = tx.prepare_cached(MINIMAL_INSERT)?;
            for j in i..end {
                st.execute(params![payload(j), now_ms()])?;
            }
        }
        tx.commit()?;
        i = end;
    }
    Ok(start.elapsed())
}

/// Fills the minimal table, then claims one job (`UPDATE … RETURNING`, its own
/// transaction), decodes its payload and marks it done (its own transaction), one job at
/// a time. Returns the drain time only.
pub fn minimal_claim_complete(path: &Path, ops: usize) -> rusqlite::Result<Duration> {
    minimal_insert_batch(path, ops, 1000)?;
    let conn = open_minimal(path)?;
    let mut claim = conn.prepare_cached(
        "UPDATE jobs_minimal SET state = 1, lease_until = ?1
         WHERE id = (SELECT id FROM jobs_minimal WHERE state = 0 ORDER BY id LIMIT 1)
         RETURNING id, payload",
    )?;
    let mut done = conn.prepare_cached(
        "UPDATE jobs_minimal SET state = 2, lease_until = NULL WHERE id = ?1 AND state = 1",
    )?;
    let start = Instant::now();
    loop {
        let job: Option<(i64, String)> = claim
            .query_row([now_ms() + 30_000], |r| Ok((r.get(0)?, r.get(1)?)))
            .ok();
        let Some((id, body)) = job else { break };
        std::hint::black_box(serde_json::from_str::<serde_json::Value>(&body).ok());
        done.execute([id])?;
    }
    Ok(start.elapsed())
}
