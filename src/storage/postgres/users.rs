//! users on PostgreSQL (stub: being written).
#![allow(unused)]
use super::PgConn;
use crate::storage::{Result, StoreError, Session};
use crate::domain::*;
use crate::domain::notify::*;
use crate::domain::metrics::*;
use crate::domain::time::Ts;
use serde_json::Value;

pub fn upsert(c: &mut PgConn, users: &[NewUser], now: Ts) -> Result<usize> {
    todo!()
}

pub fn get(c: &mut PgConn, id: &UserId) -> Result<User> {
    todo!()
}

pub fn list(
    c: &mut PgConn,
    q: Option<&str>,
    limit: usize,
    offset: usize,
) -> Result<(Vec<User>, i64)> {
    todo!()
}

pub fn soft_delete(c: &mut PgConn, id: &UserId, now: Ts) -> Result<()> {
    todo!()
}
