//! metrics on PostgreSQL (stub: being written).
#![allow(unused)]
use super::PgConn;
use crate::storage::{Result, StoreError, Session};
use crate::domain::*;
use crate::domain::notify::*;
use crate::domain::metrics::*;
use crate::domain::time::Ts;
use serde_json::Value;

pub fn add(c: &mut PgConn, d: &MetricDeltas) -> Result<()> {
    todo!()
}

pub fn totals(c: &mut PgConn) -> Result<MetricTotals> {
    todo!()
}

pub fn broadcast_stats(c: &mut PgConn) -> Result<BroadcastStats> {
    todo!()
}
