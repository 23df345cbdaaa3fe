//! Plain types, no I/O. Input becomes one of these at the edge ("parse, don't validate").

pub mod job;
pub mod metrics;
pub mod notify;
pub mod schedule;
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

/// How deeply JSON given by clients (`input`, `result`, `details`, `meta`) may nest.
pub const MAX_JSON_DEPTH: usize = 64;

/// The nesting depth of a JSON value: a scalar is 0, `{}` and `[]` are 1, `{"a": []}` 2.
/// Stops counting past `MAX_JSON_DEPTH + 1`, so it never recurses further than that.
pub fn json_depth(v: &serde_json::Value) -> usize {
    fn go(v: &serde_json::Value, level: usize) -> usize {
        if level > MAX_JSON_DEPTH {
            return level;
        }
        let children: Box<dyn Iterator<Item = &serde_json::Value>> = match v {
            serde_json::Value::Array(a) => Box::new(a.iter()),
            serde_json::Value::Object(m) => Box::new(m.values()),
            _ => return level,
        };
        children
            .map(|c| go(c, level + 1))
            .max()
            .unwrap_or(level + 1)
            .max(level + 1)
    }
    go(v, 0)
}

/// Refuses JSON nested deeper than `MAX_JSON_DEPTH`.
pub fn nesting_ok(field: &str, v: &serde_json::Value) -> Result<(), FieldError> {
    if json_depth(v) > MAX_JSON_DEPTH {
        return Err(FieldError::new(
            field,
            format!("must not nest deeper than {MAX_JSON_DEPTH} levels"),
        ));
    }
    Ok(())
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

#[cfg(test)]
mod depth_tests {
    use super::*;
    use serde_json::json;

    fn nested(levels: usize) -> serde_json::Value {
        (0..levels).fold(json!(1), |v, _| json!([v]))
    }

    #[test]
    fn depth_counts_levels_of_containers() {
        assert_eq!(json_depth(&json!(1)), 0);
        assert_eq!(json_depth(&json!({})), 1);
        assert_eq!(json_depth(&json!({"a": [1, {"b": {}}]})), 4);
        assert_eq!(json_depth(&nested(64)), 64);
        assert!(nesting_ok("input", &nested(64)).is_ok());
        assert!(nesting_ok("input", &nested(65)).is_err());
        assert!(json_depth(&nested(120)) > MAX_JSON_DEPTH);
    }
}
