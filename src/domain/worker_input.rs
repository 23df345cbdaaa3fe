//! What a worker sends with a lease, heartbeat, complete, fail or release, checked: the
//! defaults and limits of those fields live here, not in the HTTP layer, so every caller
//! (REST, the Python client's server, tests) gets the same rules. Each function checks one
//! field and names it in its error.

use super::{bounded_text, in_range, nesting_ok, FieldError, LeaseToken, WorkerId};
use serde_json::Value;

/// Seconds a lease lasts when none is asked for, and the bounds.
pub const LEASE_SECONDS_DEFAULT: i64 = 600;
pub const LEASE_SECONDS_MAX: i64 = 3600;
/// Jobs one lease may take, at most.
pub const LEASE_LIMIT_MAX: i64 = 100;
/// How long a lease may wait for work (long poll), at most, in milliseconds.
pub const WAIT_MS_MAX: i64 = 30_000;

/// `worker_id`: required, 1–200 characters.
pub fn worker_id(v: Option<String>) -> Result<WorkerId, FieldError> {
    let w = v.ok_or_else(|| FieldError::new("worker_id", "is required"))?;
    bounded_text("worker_id", &w, 1, WorkerId::MAX_CHARS)?;
    Ok(WorkerId::checked(w))
}

/// `lease_token`: optional, at most 200 characters.
pub fn lease_token(v: Option<String>) -> Result<Option<LeaseToken>, FieldError> {
    lease_token_at("lease_token", v)
}

/// A lease token sent under another name (an ack item's `items[i].lease_token`).
pub fn lease_token_at(field: &str, v: Option<String>) -> Result<Option<LeaseToken>, FieldError> {
    match v {
        None => Ok(None),
        Some(t) => bounded_text(field, &t, 0, 200).map(|()| Some(LeaseToken::checked(t))),
    }
}

/// `lease_seconds`: 1–3600, default 600.
pub fn lease_seconds(v: Option<i64>) -> Result<chrono::Duration, FieldError> {
    in_range(
        "lease_seconds",
        v.unwrap_or(LEASE_SECONDS_DEFAULT),
        1,
        LEASE_SECONDS_MAX,
    )
    .map(chrono::Duration::seconds)
}

/// A lease's `limit`: 1–100, default 1.
pub fn lease_limit(v: Option<i64>) -> Result<usize, FieldError> {
    in_range("limit", v.unwrap_or(1), 1, LEASE_LIMIT_MAX).map(|n| n as usize)
}

/// A lease's `wait_ms`: 0–30 000, default 0.
pub fn wait_ms(v: Option<i64>) -> Result<std::time::Duration, FieldError> {
    in_range("wait_ms", v.unwrap_or(0), 0, WAIT_MS_MAX)
        .map(|ms| std::time::Duration::from_millis(ms as u64))
}

/// A failure's `error`: required, 1 to 10 000 characters.
pub fn failure_message(field: &str, v: Option<String>) -> Result<String, FieldError> {
    let e = v.ok_or_else(|| FieldError::new(field, "is required"))?;
    bounded_text(field, &e, 1, 10_000)?;
    Ok(e)
}

/// An optional JSON object (`result`, `details`): absent or null is None.
pub fn optional_object(field: &str, v: Option<Value>) -> Result<Option<Value>, FieldError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => nesting_ok(field, &v).map(|()| Some(v)),
        Some(_) => Err(FieldError::new(field, "must be a JSON object or null")),
    }
}

/// Collects the field errors of one input so that all of them are reported at once.
#[derive(Debug, Default)]
pub struct Fields(Vec<FieldError>);

impl Fields {
    /// The value of a checked field, or None with its error kept.
    pub fn take<T>(&mut self, r: Result<T, FieldError>) -> Option<T> {
        r.map_err(|e| self.0.push(e)).ok()
    }

    pub fn push(&mut self, e: FieldError) {
        self.0.push(e);
    }

    /// Every error found, or the value `built` from the fields (None only when a field
    /// failed, which the errors then say).
    pub fn finish<T>(self, built: Option<T>) -> Result<T, Vec<FieldError>> {
        match built {
            Some(v) if self.0.is_empty() => Ok(v),
            _ => Err(self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bounds() {
        assert_eq!(lease_seconds(None).unwrap(), chrono::Duration::seconds(600));
        assert!(lease_seconds(Some(0)).is_err());
        assert!(lease_seconds(Some(3601)).is_err());
        assert_eq!(lease_limit(None).unwrap(), 1);
        assert!(lease_limit(Some(101)).is_err());
        assert_eq!(wait_ms(None).unwrap(), std::time::Duration::ZERO);
        assert!(wait_ms(Some(30_001)).is_err());
        assert_eq!(worker_id(None).unwrap_err().message, "is required");
        assert!(worker_id(Some(String::new())).is_err());
        assert!(lease_token(Some("t".repeat(201))).is_err());
        assert!(optional_object("result", Some(Value::from(3))).is_err());
        assert_eq!(optional_object("result", Some(Value::Null)).unwrap(), None);
    }

    #[test]
    fn fields_report_every_error_at_once() {
        let mut f = Fields::default();
        let w = f.take(worker_id(None));
        let l = f.take(lease_seconds(Some(0)));
        let r = f.finish(w.zip(l));
        assert_eq!(r.unwrap_err().len(), 2);
        let mut f = Fields::default();
        let w = f.take(worker_id(Some("w".into())));
        assert_eq!(f.finish(w).unwrap().as_str(), "w");
    }
}
