//! Plain types, no I/O. Input becomes one of these at the edge ("parse, don't validate").

pub mod job;
pub mod metrics;
pub mod notify;
pub mod time;
pub mod worker;

pub use job::*;
pub use time::Ts;
pub use worker::WorkerProcess;

/// One invalid field of an input, reported in the `fields` list of a 400.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Checks a bounded string: `min..=max` characters (control characters are allowed in
/// free text; identifiers that forbid them check separately). NUL is refused everywhere:
/// PostgreSQL text cannot hold it, and both backends must accept the same input.
pub fn bounded_text(field: &str, value: &str, min: usize, max: usize) -> Result<(), FieldError> {
    if value.contains('\0') {
        return Err(FieldError::new(field, "must not contain NUL characters"));
    }
    let n = value.chars().count();
    if n < min {
        return Err(FieldError::new(
            field,
            format!("must be at least {min} characters"),
        ));
    }
    if n > max {
        return Err(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(())
}

/// Checks an integer range.
pub fn in_range(field: &str, value: i64, min: i64, max: i64) -> Result<i64, FieldError> {
    if value < min {
        Err(FieldError::new(field, format!("must be >= {min}")))
    } else if value > max {
        Err(FieldError::new(field, format!("must be <= {max}")))
    } else {
        Ok(value)
    }
}
