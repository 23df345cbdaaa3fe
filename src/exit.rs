//! How a command ends: the one place that decides an error's exit status. Usage and
//! configuration problems (a bad flag, URL, token or worker name) are 2, with a one-line
//! reason; everything else is a runtime failure, 1, with its cause chain logged.

use crate::config::ConfigError;
use crate::storage::copy::CopyError;
use crate::storage::OpenError;

/// A usage error with a one-line reason (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit status for an error: 2 for usage and configuration, 1 otherwise.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    let usage = e.downcast_ref::<UsageError>().is_some()
        || e.downcast_ref::<ConfigError>().is_some()
        || e.downcast_ref::<OpenError>()
            .is_some_and(OpenError::is_usage)
        || e.downcast_ref::<CopyError>()
            .is_some_and(CopyError::is_usage);
    if usage {
        2
    } else {
        1
    }
}
