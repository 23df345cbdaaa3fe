//! The raw database limits `wp-lite bench` measures beside each scenario, for whichever
//! backend the URL names.

use super::{parse_url, postgres, sqlite, Target};
use std::time::Duration;

type R<T> = anyhow::Result<T>;

/// The JSON payload of the `i`th row of the minimal queue table, on every backend.
pub fn payload(i: usize) -> String {
    serde_json::json!({ "n": i }).to_string()
}

pub fn insert_single(url: &str, ops: usize) -> R<Duration> {
    match parse_url(url)? {
        Target::Sqlite(p) => Ok(sqlite::raw::insert_single(&p, ops)?),
        Target::Postgres(u) => postgres::raw::insert_single(&u, ops),
    }
}

pub fn insert_batch(url: &str, ops: usize, batch: usize) -> R<Duration> {
    match parse_url(url)? {
        Target::Sqlite(p) => Ok(sqlite::raw::insert_batch(&p, ops, batch)?),
        Target::Postgres(u) => postgres::raw::insert_batch(&u, ops, batch),
    }
}

pub fn claim_complete(url: &str, ops: usize) -> R<Duration> {
    match parse_url(url)? {
        Target::Sqlite(p) => Ok(sqlite::raw::claim_complete(&p, ops)?),
        Target::Postgres(u) => postgres::raw::claim_complete(&u, ops),
    }
}

pub fn fill_finished(url: &str, rows: usize) -> R<()> {
    match parse_url(url)? {
        Target::Sqlite(p) => Ok(sqlite::raw::fill_finished(&p, rows)?),
        Target::Postgres(u) => postgres::raw::fill_finished(&u, rows),
    }
}

pub fn fill_users(url: &str, n: usize) -> R<()> {
    match parse_url(url)? {
        Target::Sqlite(p) => Ok(sqlite::raw::fill_users(&p, n)?),
        Target::Postgres(u) => postgres::raw::fill_users(&u, n),
    }
}

pub fn insert_select(url: &str) -> R<(usize, Duration)> {
    match parse_url(url)? {
        Target::Sqlite(p) => Ok(sqlite::raw::insert_select(&p)?),
        Target::Postgres(u) => postgres::raw::insert_select(&u),
    }
}

pub fn minimal_insert_single(url: &str, ops: usize) -> R<Duration> {
    match parse_url(url)? {
        Target::Sqlite(p) => Ok(sqlite::raw::minimal_insert_single(&p, ops)?),
        Target::Postgres(u) => postgres::raw::minimal_insert_single(&u, ops),
    }
}

pub fn minimal_insert_batch(url: &str, ops: usize, batch: usize) -> R<Duration> {
    match parse_url(url)? {
        Target::Sqlite(p) => Ok(sqlite::raw::minimal_insert_batch(&p, ops, batch)?),
        Target::Postgres(u) => postgres::raw::minimal_insert_batch(&u, ops, batch),
    }
}

pub fn minimal_claim_complete(url: &str, ops: usize) -> R<Duration> {
    match parse_url(url)? {
        Target::Sqlite(p) => Ok(sqlite::raw::minimal_claim_complete(&p, ops)?),
        Target::Postgres(u) => postgres::raw::minimal_claim_complete(&u, ops),
    }
}

/// Before a timed phase: on PostgreSQL a `CHECKPOINT`, so that writing back what earlier
/// work left dirty (an earlier scenario, this one's untimed fill) does not land in the
/// measurement — the peer harness checkpoints before its consumer phases too. It needs a
/// superuser or the `pg_checkpoint` role. Nothing on SQLite, whose writer checkpoints its
/// own WAL as it goes.
pub fn settle(url: &str) -> R<()> {
    match parse_url(url)? {
        Target::Sqlite(_) => Ok(()),
        Target::Postgres(u) => postgres::raw::checkpoint(&u),
    }
}
