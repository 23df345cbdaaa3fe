//! jobs on PostgreSQL (stub: being written).
#![allow(unused)]
use super::PgConn;
use crate::storage::{Result, StoreError, Session};
use crate::domain::*;
use crate::domain::notify::*;
use crate::domain::metrics::*;
use crate::domain::time::Ts;
use serde_json::Value;

pub fn get(c: &mut PgConn, id: JobId) -> Result<Job> {
    todo!()
}

pub fn enqueue(c: &mut PgConn, new: Vec<NewJob>, now: Ts) -> Result<Vec<Enqueued>> {
    todo!()
}

pub fn claim(c: &mut PgConn, claim: &Claim, now: Ts) -> Result<Vec<Job>> {
    todo!()
}

pub fn heartbeat(c: &mut PgConn, id: JobId, fence: &Fence, until: Ts, now: Ts) -> Result<Job> {
    todo!()
}

pub fn complete(
    c: &mut PgConn,
    id: JobId,
    fence: &Fence,
    result: Option<Value>,
    now: Ts,
) -> Result<Job> {
    todo!()
}

pub fn fail(c: &mut PgConn, id: JobId, fence: &Fence, failure: &Failure, now: Ts) -> Result<Job> {
    todo!()
}

pub fn cancel(c: &mut PgConn, id: JobId, now: Ts) -> Result<Job> {
    todo!()
}

pub fn retry(c: &mut PgConn, id: JobId, now: Ts) -> Result<Job> {
    todo!()
}

pub fn release(c: &mut PgConn, id: JobId, fence: &Fence, now: Ts) -> Result<Job> {
    todo!()
}

pub fn list(c: &mut PgConn, f: &JobFilter) -> Result<JobPage> {
    todo!()
}

pub fn events(c: &mut PgConn, id: JobId) -> Result<Vec<JobEvent>> {
    todo!()
}

pub fn queue_stats(c: &mut PgConn, now: Ts) -> Result<Vec<QueueStats>> {
    todo!()
}

pub fn ready_ids(c: &mut PgConn, now: Ts, limit: usize) -> Result<Vec<(JobId, String)>> {
    todo!()
}

pub fn reclaim_expired(c: &mut PgConn, now: Ts, limit: usize) -> Result<Vec<Reclaimed>> {
    todo!()
}

pub fn prune_finished(c: &mut PgConn, before: Ts, limit: usize) -> Result<usize> {
    todo!()
}
