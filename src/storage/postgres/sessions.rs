//! sessions on PostgreSQL (stub: being written).
#![allow(unused)]
use super::PgConn;
use crate::storage::{Result, StoreError, Session};
use crate::domain::*;
use crate::domain::notify::*;
use crate::domain::metrics::*;
use crate::domain::time::Ts;
use serde_json::Value;

pub fn create(c: &mut PgConn, s: &Session) -> Result<()> {
    todo!()
}

pub fn find(c: &mut PgConn, token_hash: &str, now: Ts) -> Result<Option<Session>> {
    todo!()
}

pub fn delete(c: &mut PgConn, token_hash: &str) -> Result<()> {
    todo!()
}

pub fn prune(c: &mut PgConn, now: Ts) -> Result<usize> {
    todo!()
}
