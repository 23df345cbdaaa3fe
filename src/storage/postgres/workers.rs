//! workers on PostgreSQL (stub: being written).
#![allow(unused)]
use super::PgConn;
use crate::storage::{Result, StoreError, Session};
use crate::domain::*;
use crate::domain::notify::*;
use crate::domain::metrics::*;
use crate::domain::time::Ts;
use serde_json::Value;

pub fn record(c: &mut PgConn, p: &WorkerProcess) -> Result<()> {
    todo!()
}

pub fn list(c: &mut PgConn, since: Ts) -> Result<Vec<WorkerProcess>> {
    todo!()
}
