//! What both backends' broadcast delivery shares: the delivery state of a claimed
//! broadcast and reading its stored audience back.

use super::{Result, StoreError};
use crate::domain::notify::Audience;
use serde_json::Value;

/// The delivery state of a broadcast whose claim the caller holds.
pub(crate) struct Delivery {
    pub seq: i64,
    pub id: String,
    pub audience: Audience,
    pub snapshot_max: Option<i64>,
    pub cursor: i64,
}

/// A stored audience, read back for delivery. One that no longer parses is an error (the
/// broadcast fails) rather than a wider audience.
pub(crate) fn parse_stored_audience(raw: &str) -> Result<Audience> {
    serde_json::from_str::<Value>(raw)
        .ok()
        .and_then(|v| Audience::parse(&v).ok())
        .ok_or_else(|| {
            StoreError::Backend(format!("the stored audience cannot be read: {raw:.200}"))
        })
}
