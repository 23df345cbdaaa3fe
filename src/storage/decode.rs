//! Reading stored text back into domain types, for both backends. A value the store
//! itself wrote can only fail to parse if the row was corrupted or written by something
//! else: that is an error naming the column, never a default (a fresh random id, a
//! `failed` status or an `all_users` audience would each act on the wrong thing).

use super::StoreError;
use crate::domain::notify::{Audience, BroadcastStatus};
use crate::domain::{JobId, JobStatus};

fn corrupt(column: &str, value: &str) -> StoreError {
    let shown: String = value.chars().take(64).collect();
    StoreError::Backend(format!("a stored row holds an invalid {column}: {shown:?}").into())
}

pub fn job_id(s: &str) -> Result<JobId, StoreError> {
    JobId::parse(s).ok_or_else(|| corrupt("job id", s))
}

pub fn job_status(s: &str) -> Result<JobStatus, StoreError> {
    s.parse().map_err(|()| corrupt("job status", s))
}

pub fn broadcast_id(s: &str) -> Result<uuid::Uuid, StoreError> {
    uuid::Uuid::parse_str(s).map_err(|_| corrupt("broadcast id", s))
}

pub fn broadcast_status(s: &str) -> Result<BroadcastStatus, StoreError> {
    s.parse().map_err(|()| corrupt("broadcast status", s))
}

/// A broadcast's audience for reading and listing. Delivery reads the stored audience
/// strictly (`storage::delivery`: one it cannot read fails that broadcast with the reason);
/// here a broadcast whose audience cannot be read must stay visible — listed with its
/// failure — instead of making every list fail, so it is shown as an empty list of users,
/// which reaches no one.
pub fn audience_for_display(s: &str) -> Audience {
    serde_json::from_str::<serde_json::Value>(s)
        .ok()
        .and_then(|v| Audience::parse(&v).ok())
        .unwrap_or(Audience::ExplicitUsers(Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_values_are_errors_not_defaults() {
        assert!(job_id("not-a-uuid").is_err());
        assert!(job_status("finished").is_err());
        assert!(broadcast_id("").is_err());
        assert!(broadcast_status("done").is_err());
        assert!(
            matches!(audience_for_display("{"), Audience::ExplicitUsers(ids) if ids.is_empty())
        );
        assert_eq!(job_status("leased").unwrap(), JobStatus::Leased);
        assert!(matches!(
            audience_for_display("{\"type\":\"all_users\"}"),
            Audience::AllUsers
        ));
    }
}
