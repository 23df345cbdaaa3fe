//! Timestamps: RFC 3339 in UTC with a `Z` out, an explicit offset required in.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

pub type Ts = DateTime<Utc>;

/// Formats as `2025-09-26T12:00:00.123Z`.
pub fn format(ts: &Ts) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an input timestamp; a naive time (no offset) is refused.
pub fn parse(value: &str) -> Option<Ts> {
    DateTime::parse_from_rfc3339(value.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Milliseconds since the epoch, how the stores keep time.
pub fn to_ms(ts: &Ts) -> i64 {
    ts.timestamp_millis()
}

pub fn from_ms(ms: i64) -> Ts {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// serde helpers that write `Ts` in the API's format.
pub mod serde_ts {
    use super::*;
    use serde::Serializer;

    pub fn serialize<S: Serializer>(ts: &Ts, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(ts))
    }

    pub mod option {
        use super::*;
        pub fn serialize<S: Serializer>(ts: &Option<Ts>, s: S) -> Result<S::Ok, S::Error> {
            match ts {
                Some(t) => s.serialize_str(&format(t)),
                None => s.serialize_none(),
            }
        }
    }
}
