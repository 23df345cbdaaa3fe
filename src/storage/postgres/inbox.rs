//! inbox on PostgreSQL (stub: being written).
#![allow(unused)]
use super::PgConn;
use crate::storage::{Result, StoreError, Session};
use crate::domain::*;
use crate::domain::notify::*;
use crate::domain::metrics::*;
use crate::domain::time::Ts;
use serde_json::Value;

pub fn deliver_direct(c: &mut PgConn, n: &DirectNotification, now: Ts) -> Result<Delivered> {
    todo!()
}

pub fn unread(c: &mut PgConn, user: &UserId) -> Result<i64> {
    todo!()
}

pub fn page(c: &mut PgConn, user: &UserId, limit: usize, offset: usize) -> Result<InboxPage> {
    todo!()
}

pub fn mark_read(c: &mut PgConn, user: &UserId, item: i64, now: Ts) -> Result<InboxItem> {
    todo!()
}

pub fn mark_all_read(c: &mut PgConn, user: &UserId, now: Ts) -> Result<usize> {
    todo!()
}

pub fn prune(
    c: &mut PgConn,
    before: Option<Ts>,
    max_per_user: Option<usize>,
    limit: usize,
) -> Result<usize> {
    todo!()
}
