//! Business rules. Services take domain types, hold the store through the async seam, and
//! return the service `Error`, which `http::error` maps to a response in one place.

pub mod auth;
pub mod broadcasts;
pub mod inbox;
pub mod jobs;
pub mod schedules;
pub mod streams;
pub mod telemetry;
pub mod users;
pub mod workers;

use crate::domain::{FieldError, JobConflict};
use crate::storage::StoreError;

/// What a service call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid input (400 `invalid_payload`).
    #[error("{message}")]
    Invalid {
        message: String,
        fields: Vec<FieldError>,
    },
    /// A resource that does not exist; the code names it (`job_not_found`, …).
    #[error("{1}")]
    NotFound(&'static str, String),
    /// A state conflict (409).
    #[error("{}", .0.code())]
    Conflict(JobConflict),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{1}")]
    Forbidden(&'static str, String),
    /// Too many attempts (429 `rate_limited`); try again after this many seconds.
    #[error("too many attempts; try again in {0} s")]
    RateLimited(u64),
    #[error("the store is unavailable")]
    Unavailable(#[source] StoreError),
    #[error("internal error")]
    Internal(#[source] StoreError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(fields: Vec<FieldError>) -> Self {
        let message = fields
            .iter()
            .map(|f| format!("{}: {}", f.field, f.message))
            .collect::<Vec<_>>()
            .join("; ");
        Error::Invalid { message, fields }
    }

    pub fn field(field: &str, message: &str) -> Self {
        Self::invalid(vec![FieldError::new(field, message)])
    }

    /// Maps a store error, naming what was not found.
    pub fn from_store(e: StoreError, not_found: &'static str) -> Self {
        match e {
            StoreError::NotFound => Error::NotFound(not_found, not_found.replace('_', " ")),
            StoreError::Conflict(c) => Error::Conflict(c),
            e @ (StoreError::Busy | StoreError::Unavailable(_)) => Error::Unavailable(e),
            e @ StoreError::Backend(_) => Error::Internal(e),
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::from_store(e, "not_found")
    }
}
