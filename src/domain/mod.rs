//! Plain types, no I/O. Input becomes one of these at the edge ("parse, don't validate").

pub mod job;
pub mod metrics;
pub mod notify;
pub mod schedule;
pub mod time;
pub mod worker;
pub mod worker_input;

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

/// Why a JSON text was refused: the field it names (a type error), or the whole text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonRefused {
    pub field: Option<String>,
    pub message: String,
}

impl JsonRefused {
    fn whole(message: impl Into<String>) -> Self {
        Self {
            field: None,
            message: message.into(),
        }
    }
}

/// Parses JSON bytes into `T`, naming the field on a type error. Every body of this API is
/// a JSON object: an array is refused here (serde would read one as a struct's fields in
/// order), and so is anything after the value.
///
/// The whole body must be UTF-8 (also inside fields that are ignored), and no string in
/// it may hold a NUL character (`\u0000`): text from clients never does.
pub fn json_object<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonRefused> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        JsonRefused::whole(format!(
            "the body is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        ))
    })?;
    if text.trim_start().starts_with('[') {
        return Err(JsonRefused::whole("the body must be a JSON object"));
    }
    if escapes_nul(text) {
        return Err(JsonRefused::whole(
            "text must not hold a NUL character (\\u0000)",
        ));
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            JsonRefused::whole(format!("malformed JSON body: {inner}"))
        } else {
            JsonRefused {
                field: Some(path),
                message: inner.to_string(),
            }
        }
    })?;
    de.end()
        .map_err(|e| JsonRefused::whole(format!("malformed JSON body: {e}")))?;
    Ok(value)
}

/// Whether a JSON text holds the escape `\u0000` inside a string (an escaped backslash
/// followed by `u0000` is ordinary text). A raw NUL byte is not valid JSON at all.
fn escapes_nul(text: &str) -> bool {
    if !text.contains("u0000") {
        return false;
    }
    let b = text.as_bytes();
    let (mut i, mut in_string) = (0, false);
    while i < b.len() {
        match b[i] {
            b'"' => in_string = !in_string,
            b'\\' if in_string => {
                if b.get(i + 1) == Some(&b'u') && b.get(i + 2..i + 6) == Some(b"0000") {
                    return true;
                }
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    false
}
