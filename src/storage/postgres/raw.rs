//! The raw PostgreSQL limits `wp-lite bench` compares against: the same schema, plain
//! statements on one connection, no wp-lite code in the way. Each runs in the schema its
//! URL names (`?schema=`), which the bench creates fresh and drops afterwards.

use super::{connect, parse_target};
use crate::storage::raw::payload;
use postgres::Client;
use std::time::{Duration, Instant};

type R<T> = anyhow::Result<T>;

fn client(url: &str) -> R<Client> {
    let target = parse_target(url)?;
    Ok(connect(&target)?)
}

/// A client on a schema that holds only the jobs tables (for the raw job scenarios).
fn jobs_schema(url: &str) -> R<Client> {
    let mut c = client(url)?;
    c.batch_execute(include_str!("../../../migrations/postgres/V1__jobs.sql"))?;
    Ok(c)
}

const INSERT: &str = "INSERT INTO jobs (id, type, status, priority, input, attempts,
    max_attempts, available_at, created_at, updated_at)
    VALUES ($1, 'bench', 'queued', 5, '{}', 0, 3, $2, $2, $2)";

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `ops` single-row INSERT transactions (autocommit: one commit, one WAL flush each).
pub fn insert_single(url: &str, ops: usize) -> R<Duration> {
    let mut c = jobs_schema(url)?;
    let st = c.prepare(INSERT)?;
    let start = Instant::now();
    for _ in 0..ops {
        c.execute(&st, &[&uuid::Uuid::now_v7().to_string(), &now_ms()])?;
    }
    Ok(start.elapsed())
}

/// `ops` rows in transactions of `batch` single-row INSERTs.
pub fn insert_batch(url: &str, ops: usize, batch: usize) -> R<Duration> {
    let mut c = jobs_schema(url)?;
    fill(&mut c, ops, batch)
}

fn fill(c: &mut Client, ops: usize, batch: usize) -> R<Duration> {
    let st = c.prepare(INSERT)?;
    let start = Instant::now();
    let mut left = ops;
    while left > 0 {
        let n = left.min(batch);
        let mut tx = c.transaction()?;
        for _ in 0..n {
            tx.execute(&st, &[&uuid::Uuid::now_v7().to_string(), &now_ms()])?;
        }
        tx.commit()?;
        left -= n;
    }
    Ok(start.elapsed())
}

/// Fills `ops` queued jobs, then the naive loop: claim one with `FOR UPDATE SKIP LOCKED`
/// and complete it, each statement its own transaction. Returns the drain time only.
pub fn claim_complete(url: &str, ops: usize) -> R<Duration> {
    let mut c = jobs_schema(url)?;
    fill(&mut c, ops, 1000)?;
    let claim = c.prepare(
        "UPDATE jobs SET status = 'leased', attempts = attempts + 1, lease_owner = 'raw',
             lease_until = $1, lease_token = md5(random()::text), updated_at = $1
         WHERE seq = (SELECT seq FROM jobs WHERE status = 'queued' AND available_at <= $1
                      ORDER BY priority, available_at, created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING seq",
    )?;
    let complete =
        c.prepare("UPDATE jobs SET status = 'succeeded', updated_at = $2 WHERE seq = $1")?;
    let start = Instant::now();
    loop {
        let now = now_ms() + 1000;
        let Some(row) = c.query_opt(&claim, &[&now])? else {
            break;
        };
        let seq: i64 = row.get(0);
        c.execute(&complete, &[&seq, &now])?;
    }
    Ok(start.elapsed())
}

/// A client on a schema holding the smallest table a queue can have (an integer key, a
/// JSON payload, a state, one partial index): the machine's own limit.
fn minimal_schema(url: &str) -> R<Client> {
    let mut c = client(url)?;
    c.batch_execute(
        "CREATE TABLE IF NOT EXISTS jobs_minimal (
             id          BIGSERIAL PRIMARY KEY,
             payload     TEXT    NOT NULL,
             state       INTEGER NOT NULL DEFAULT 0,
             lease_until BIGINT,
             created_at  BIGINT  NOT NULL
         );
         CREATE INDEX IF NOT EXISTS jobs_minimal_queued ON jobs_minimal (id) WHERE state = 0;",
    )?;
    Ok(c)
}

const MINIMAL_INSERT: &str = "INSERT INTO jobs_minimal (payload, created_at) VALUES ($1, $2)";

/// `ops` single-row INSERTs into the minimal table, each its own transaction.
pub fn minimal_insert_single(url: &str, ops: usize) -> R<Duration> {
    let mut c = minimal_schema(url)?;
    let st = c.prepare(MINIMAL_INSERT)?;
    let start = Instant::now();
    for i in 0..ops {
        c.execute(&st, &[&payload(i), &now_ms()])?;
    }
    Ok(start.elapsed())
}

/// `ops` rows into the minimal table in transactions of `batch` INSERTs.
pub fn minimal_insert_batch(url: &str, ops: usize, batch: usize) -> R<Duration> {
    let mut c = minimal_schema(url)?;
    minimal_fill(&mut c, ops, batch)
}

fn minimal_fill(c: &mut Client, ops: usize, batch: usize) -> R<Duration> {
    let st = c.prepare(MINIMAL_INSERT)?;
    let start = Instant::now();
    let mut i = 0;
    while i < ops {
        let end = (i + batch).min(ops);
        let mut tx = c.transaction()?;
        for j in i..end {
            tx.execute(&st, &[&payload(j), &now_ms()])?;
        }
        tx.commit()?;
        i = end;
    }
    Ok(start.elapsed())
}

/// Fills the minimal table, then claims one job (`FOR UPDATE SKIP LOCKED`, its own
/// transaction) and marks it done (its own transaction), one at a time. Drain time only.
pub fn minimal_claim_complete(url: &str, ops: usize) -> R<Duration> {
    let mut c = minimal_schema(url)?;
    minimal_fill(&mut c, ops, 1000)?;
    let claim = c.prepare(
        "UPDATE jobs_minimal SET state = 1, lease_until = $1
         WHERE id = (SELECT id FROM jobs_minimal WHERE state = 0 ORDER BY id LIMIT 1
                     FOR UPDATE SKIP LOCKED)
         RETURNING id, payload",
    )?;
    let done = c.prepare(
        "UPDATE jobs_minimal SET state = 2, lease_until = NULL WHERE id = $1 AND state = 1",
    )?;
    let start = Instant::now();
    loop {
        let Some(row) = c.query_opt(&claim, &[&(now_ms() + 30_000)])? else {
            break;
        };
        let (id, body): (i64, String) = (row.get(0), row.get(1));
        std::hint::black_box(serde_json::from_str::<serde_json::Value>(&body).ok());
        c.execute(&done, &[&id])?;
    }
    Ok(start.elapsed())
}

/// Adds `rows` finished jobs (for the history-growth drain scenario).
pub fn fill_finished(url: &str, rows: usize) -> R<()> {
    let mut c = client(url)?;
    c.execute(
        "INSERT INTO jobs (id, type, status, priority, input, attempts, max_attempts,
             available_at, created_at, updated_at)
         SELECT gen_random_uuid(), 'bench', 'succeeded', 5, '{}', 1, 3, $2, $2, $2
         FROM generate_series(1, $1::bigint)",
        &[&(rows as i64), &now_ms()],
    )?;
    Ok(())
}

/// Adds `n` active users (`user-0000000` …) in one statement.
pub fn fill_users(url: &str, n: usize) -> R<()> {
    let mut c = client(url)?;
    c.execute(
        "INSERT INTO users (id, email, attributes, is_active, created_at, updated_at)
         SELECT 'user-' || lpad(g::text, 7, '0'), NULL, '{}', 1, $2, $2
         FROM generate_series(0, $1::bigint - 1) g ORDER BY g",
        &[&(n as i64), &now_ms()],
    )?;
    Ok(())
}

/// The raw fanout limit: one plain `INSERT … SELECT` of every active user into
/// `inbox_items` (same columns and indexes), in one transaction. Returns (rows, time).
pub fn insert_select(url: &str) -> R<(usize, Duration)> {
    let mut c = client(url)?;
    let start = Instant::now();
    let n = c.execute(
        "INSERT INTO inbox_items (user_id, broadcast_id, created_at)
         SELECT id, 'raw-broadcast', $1 FROM users WHERE is_active = 1 AND deleted_at IS NULL ORDER BY seq",
        &[&now_ms()],
    )?;
    Ok((n as usize, start.elapsed()))
}

/// Drops a bench schema (best effort).
pub fn drop_schema(base_url: &str, schema: &str) {
    if let Ok(target) = parse_target(base_url) {
        if let Ok(mut c) = target.config.connect(postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"));
        }
    }
}

/// Writes every dirty buffer back (`CHECKPOINT`), for `storage::raw::settle`.
pub fn checkpoint(url: &str) -> R<()> {
    client(url)?.batch_execute("CHECKPOINT")?;
    Ok(())
}

/// The server's version, for the report.
pub fn server_version(url: &str) -> R<String> {
    let mut c = client(url)?;
    Ok(c.query_one("SHOW server_version", &[])?.get(0))
}
