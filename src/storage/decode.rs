//! Reading stored text back into domain types, for both backends. A value the store
//! itself wrote can only fail to parse if the row was corrupted or written by something
//! else: that is an error naming the column, never a default (a fresh random id, a
//! `failed` status or an `all_users` audience would each act on the wrong thing).

use super::StoreError;
use crate::domain::notify::{Audience, BroadcastStatus};
use crate::domain::{JobId, JobStatus};

fn corrupt(column: &str, value: &str) -> StoreError {
    let shown: String = value.chars().take(64).collect();
    StoreError::Backend(format!("a stored row holds an invalid {column}: {shown:?}"))
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

pub fn audience(s: &str) -> Result<Audience, StoreError> {
    serde_json::from_str::<serde_json::Value>(s)
        .ok()
        .and_then(|v| Audience::parse(&v).ok())
        .ok_or_else(|| corrupt("audience", s))
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
        assert!(audience("{\"type\":\"everyone\"}").is_err());
        assert!(audience("{").is_err());
        assert_eq!(job_status("leased").unwrap(), JobStatus::Leased);
        assert!(matches!(
            audience("{\"type\":\"all_users\"}").unwrap(),
            Audience::AllUsers
        ));
    }
}
