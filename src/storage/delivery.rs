//! What both backends' broadcast delivery shares: the delivery state of a claimed
//! broadcast and reading its stored audience back.

use super::{Result, StoreError};
use crate::domain::notify::{Audience, Broadcast};
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
            StoreError::Backend(format!("the stored audience cannot be read: {raw:.200}").into())
        })
}

/// What a backend does with one claimed broadcast: prepare it for delivery (fix its
/// audience at the first claim) and load it, or mark it failed with a reason.
pub(crate) struct ClaimSteps<E, P, F> {
    /// Runs a statement without parameters (the savepoints).
    pub exec: E,
    pub prepare: P,
    pub fail: F,
}

/// Prepares each claimed broadcast in its own savepoint: one that cannot be prepared (its
/// audience cannot be resolved) is marked failed with the reason and left out, and the
/// others are delivered; a transient failure fails the whole claim.
pub(crate) fn prepare_claimed<C: ?Sized, E, P, F>(
    c: &mut C,
    ids: Vec<String>,
    steps: ClaimSteps<E, P, F>,
) -> Result<Vec<Broadcast>>
where
    E: Fn(&mut C, &str) -> Result<()>,
    P: Fn(&mut C, &str) -> Result<Broadcast>,
    F: Fn(&mut C, &str, &str) -> Result<bool>,
{
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        match super::isolated(c, &steps.exec, |c| (steps.prepare)(c, &id))? {
            Ok(b) => out.push(b),
            Err(e) => {
                tracing::error!(broadcast.id = %id, error = %e, "broadcast {id} cannot be delivered: marked failed");
                (steps.fail)(c, &id, &format!("cannot be delivered: {e}"))?;
            }
        }
    }
    Ok(out)
}
