//! broadcasts on PostgreSQL (stub: being written).
#![allow(unused)]
use super::PgConn;
use crate::storage::{Result, StoreError, Session};
use crate::domain::*;
use crate::domain::notify::*;
use crate::domain::metrics::*;
use crate::domain::time::Ts;
use serde_json::Value;

pub fn get(c: &mut PgConn, id: uuid::Uuid) -> Result<Broadcast> {
    todo!()
}

pub fn create(c: &mut PgConn, b: &Broadcast) -> Result<()> {
    todo!()
}

pub fn replace(c: &mut PgConn, id: uuid::Uuid, d: &BroadcastDraft, now: Ts) -> Result<Broadcast> {
    todo!()
}

pub fn schedule(c: &mut PgConn, id: uuid::Uuid, at: Ts, now: Ts) -> Result<Broadcast> {
    todo!()
}

pub fn cancel(c: &mut PgConn, id: uuid::Uuid, now: Ts) -> Result<Broadcast> {
    todo!()
}

pub fn delete(c: &mut PgConn, id: uuid::Uuid, now: Ts) -> Result<()> {
    todo!()
}

pub fn list(c: &mut PgConn, f: &BroadcastFilter) -> Result<BroadcastPage> {
    todo!()
}

pub fn claim_due(
    c: &mut PgConn,
    owner: &str,
    limit: usize,
    lease_until: Ts,
    now: Ts,
) -> Result<Vec<Broadcast>> {
    todo!()
}

pub fn deliver_chunk(
    c: &mut PgConn,
    id: uuid::Uuid,
    owner: &str,
    chunk: usize,
    lease_until: Ts,
    now: Ts,
) -> Result<ChunkOutcome> {
    todo!()
}

pub fn fail(
    c: &mut PgConn,
    id: uuid::Uuid,
    owner: &str,
    error: &str,
    now: Ts,
) -> Result<Option<Broadcast>> {
    todo!()
}
