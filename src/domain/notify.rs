//! Users, broadcasts, audiences and inbox items.

use super::time::Ts;
use super::{bounded_text, FieldError};
use serde_json::{Map, Value};
use std::str::FromStr;

/// A user id of the host application: 1–128 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

impl UserId {
    pub fn parse(field: &str, s: &str) -> Result<Self, FieldError> {
        let n = s.chars().count();
        if n == 0 || n > 128 {
            return Err(FieldError::new(field, "must be 1 to 128 characters"));
        }
        if s.chars().any(char::is_control) {
            return Err(FieldError::new(
                field,
                "must not contain control characters",
            ));
        }
        Ok(Self(s.to_string()))
    }
    pub fn trusted(s: String) -> Self {
        Self(s)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A flat object of strings, numbers and booleans.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes(pub Map<String, Value>);

/// Attribute names: 1–64 characters of `[A-Za-z0-9_.-]` (they become JSON paths).
pub fn attribute_name(field: &str, k: &str) -> Result<(), FieldError> {
    if k.is_empty()
        || k.len() > 64
        || !k
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(FieldError::new(
            field,
            "attribute names are 1 to 64 characters of A-Z a-z 0-9 _ . -",
        ));
    }
    Ok(())
}

fn v_is_list(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::Array(_)))
}

fn scalar(v: &Value) -> bool {
    matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

impl Attributes {
    pub fn parse(field: &str, v: Option<Value>) -> Result<Self, FieldError> {
        match v {
            None | Some(Value::Null) => Ok(Self::default()),
            Some(Value::Object(m)) => {
                if m.len() > 100 {
                    return Err(FieldError::new(field, "at most 100 attributes"));
                }
                for (k, v) in &m {
                    attribute_name(field, k)?;
                    if !scalar(v) {
                        return Err(FieldError::new(
                            format!("{field}.{k}"),
                            "must be a string, number or boolean",
                        ));
                    }
                    if v.as_str().is_some_and(|s| s.chars().count() > 1000) {
                        return Err(FieldError::new(
                            format!("{field}.{k}"),
                            "must be at most 1000 characters",
                        ));
                    }
                }
                Ok(Self(m))
            }
            Some(_) => Err(FieldError::new(
                field,
                "must be an object of strings, numbers or booleans",
            )),
        }
    }
}

/// A user as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: UserId,
    pub email: Option<String>,
    pub attributes: Attributes,
    pub is_active: bool,
    pub created_at: Ts,
    pub updated_at: Ts,
    pub deleted_at: Option<Ts>,
}

/// A validated user upsert.
#[derive(Debug, Clone, PartialEq)]
pub struct NewUser {
    pub id: UserId,
    pub email: Option<String>,
    pub attributes: Attributes,
    pub is_active: bool,
}

/// A segment condition: the attribute equals one of these values.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub attribute: String,
    pub any_of: Vec<Value>,
}

/// Who a broadcast goes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Audience {
    AllUsers,
    /// Distinct ids in the order given.
    ExplicitUsers(Vec<UserId>),
    Segment(Vec<Condition>),
}

pub const MAX_EXPLICIT_USERS: usize = 100_000;
/// Bounds of a segment: attributes it filters on, values per attribute, bytes per value.
pub const MAX_SEGMENT_KEYS: usize = 20;
pub const MAX_SEGMENT_VALUES: usize = 100;
pub const MAX_SEGMENT_VALUE_BYTES: usize = 256;

/// Checks one value of a segment filter: a scalar, a bounded string without NUL.
fn segment_value(field: &str, v: &Value) -> Result<(), FieldError> {
    if !scalar(v) {
        return Err(FieldError::new(
            field,
            "must be a string, number, boolean or a list of them",
        ));
    }
    if let Some(s) = v.as_str() {
        if s.len() > MAX_SEGMENT_VALUE_BYTES {
            return Err(FieldError::new(
                field,
                format!("a value must be at most {MAX_SEGMENT_VALUE_BYTES} bytes"),
            ));
        }
        if s.contains('\0') {
            return Err(FieldError::new(field, "must not contain NUL characters"));
        }
    }
    Ok(())
}

impl Audience {
    /// Parses `{"type": …}`; errors name the problem.
    pub fn parse(v: &Value) -> Result<Self, FieldError> {
        let f = "audience";
        let obj = v
            .as_object()
            .ok_or_else(|| FieldError::new(f, "must be an object with a type"))?;
        match obj.get("type").and_then(Value::as_str) {
            Some("all_users") => Ok(Audience::AllUsers),
            Some("explicit_users") => {
                let ids = match obj.get("user_ids") {
                    None | Some(Value::Null) => {
                        return Err(FieldError::new(
                            "audience.user_ids",
                            "explicit_users audience requires user_ids",
                        ))
                    }
                    Some(Value::Array(a)) => a,
                    Some(_) => {
                        return Err(FieldError::new(
                            "audience.user_ids",
                            "must be a list of user ids",
                        ))
                    }
                };
                let mut seen = std::collections::HashSet::new();
                let mut out = Vec::new();
                for (i, id) in ids.iter().enumerate() {
                    let s = id.as_str().ok_or_else(|| {
                        FieldError::new(format!("audience.user_ids[{i}]"), "must be a string")
                    })?;
                    if s.trim().is_empty() {
                        continue;
                    }
                    let uid = UserId::parse(&format!("audience.user_ids[{i}]"), s)?;
                    if seen.insert(uid.clone()) {
                        out.push(uid);
                    }
                }
                if out.is_empty() {
                    return Err(FieldError::new(
                        "audience.user_ids",
                        "explicit_users audience requires at least one user id",
                    ));
                }
                if out.len() > MAX_EXPLICIT_USERS {
                    return Err(FieldError::new(
                        "audience.user_ids",
                        "at most 100000 user ids",
                    ));
                }
                Ok(Audience::ExplicitUsers(out))
            }
            Some("segment") => {
                let filters = match obj.get("filters") {
                    Some(Value::Object(m)) if !m.is_empty() => m,
                    _ => {
                        return Err(FieldError::new(
                            "audience.filters",
                            "segment audience requires a non-empty filters object",
                        ))
                    }
                };
                if filters.len() > MAX_SEGMENT_KEYS {
                    return Err(FieldError::new(
                        "audience.filters",
                        format!("at most {MAX_SEGMENT_KEYS} attributes"),
                    ));
                }
                let mut conds = Vec::new();
                for (k, v) in filters {
                    attribute_name("audience.filters", k)?;
                    let field = format!("audience.filters.{k}");
                    let any_of =
                        match v {
                            Value::Array(a) if a.is_empty() => return Err(FieldError::new(
                                field,
                                "a list must be non-empty and hold strings, numbers or booleans",
                            )),
                            Value::Array(a) if a.len() > MAX_SEGMENT_VALUES => {
                                return Err(FieldError::new(
                                    field,
                                    format!("a list holds at most {MAX_SEGMENT_VALUES} values"),
                                ))
                            }
                            Value::Array(a) => a.clone(),
                            v => vec![v.clone()],
                        };
                    for (i, v) in any_of.iter().enumerate() {
                        let f = if v_is_list(filters.get(k)) {
                            format!("{field}[{i}]")
                        } else {
                            field.clone()
                        };
                        segment_value(&f, v)?;
                    }
                    conds.push(Condition {
                        attribute: k.clone(),
                        any_of,
                    });
                }
                Ok(Audience::Segment(conds))
            }
            Some(other) => Err(FieldError::new(
                "audience.type",
                format!("unknown audience type '{other}' (all_users, explicit_users, segment)"),
            )),
            None => Err(FieldError::new("audience.type", "audience requires a type")),
        }
    }

    /// The JSON the API shows (and the store keeps).
    pub fn to_json(&self) -> Value {
        match self {
            Audience::AllUsers => serde_json::json!({ "type": "all_users" }),
            Audience::ExplicitUsers(ids) => serde_json::json!({
                "type": "explicit_users",
                "user_ids": ids.iter().map(|u| u.as_str()).collect::<Vec<_>>(),
            }),
            Audience::Segment(conds) => {
                let mut m = Map::new();
                for c in conds {
                    let v = if c.any_of.len() == 1 {
                        c.any_of[0].clone()
                    } else {
                        Value::Array(c.any_of.clone())
                    };
                    m.insert(c.attribute.clone(), v);
                }
                serde_json::json!({ "type": "segment", "filters": m })
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BroadcastStatus {
    Draft,
    Scheduled,
    Sending,
    Sent,
    Failed,
    Cancelled,
}

impl BroadcastStatus {
    pub const ALL: [BroadcastStatus; 6] = [
        BroadcastStatus::Draft,
        BroadcastStatus::Scheduled,
        BroadcastStatus::Sending,
        BroadcastStatus::Sent,
        BroadcastStatus::Failed,
        BroadcastStatus::Cancelled,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            BroadcastStatus::Draft => "draft",
            BroadcastStatus::Scheduled => "scheduled",
            BroadcastStatus::Sending => "sending",
            BroadcastStatus::Sent => "sent",
            BroadcastStatus::Failed => "failed",
            BroadcastStatus::Cancelled => "cancelled",
        }
    }
}

/// What an admin may do to a broadcast, and from which statuses (the rules of the
/// broadcast's state machine, as `domain::job` holds the job's). The stores apply them in
/// one guarded statement (`… AND status IN (allowed_from)`), so a concurrent change is
/// never overwritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BroadcastAction {
    /// Replace content, audience and schedule.
    Replace,
    /// Schedule at a time (or send now).
    Schedule,
    Cancel,
    Delete,
}

impl BroadcastAction {
    pub fn allowed_from(self) -> &'static [BroadcastStatus] {
        use BroadcastStatus::*;
        match self {
            BroadcastAction::Replace | BroadcastAction::Schedule => &[Draft, Scheduled],
            BroadcastAction::Cancel => &[Draft, Scheduled, Sending],
            BroadcastAction::Delete => &[Draft, Cancelled],
        }
    }

    /// The statuses as an SQL list of literals (`'draft', 'scheduled'`), the same in both
    /// dialects; they are fixed words, never input.
    pub fn sql_statuses(self) -> String {
        self.allowed_from()
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl FromStr for BroadcastStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|x| x.as_str() == s).ok_or(())
    }
}

/// A broadcast as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Broadcast {
    pub id: uuid::Uuid,
    pub title: String,
    pub body: String,
    pub audience: Audience,
    pub status: BroadcastStatus,
    pub created_by: String,
    pub created_at: Ts,
    pub updated_at: Ts,
    pub scheduled_at: Option<Ts>,
    pub started_at: Option<Ts>,
    pub finished_at: Option<Ts>,
    pub total: i64,
    pub sent: i64,
    pub failed: i64,
    pub skipped: i64,
    /// Why delivery failed, when it did.
    pub last_error: Option<String>,
}

/// Title, body, audience and schedule of a new or replaced broadcast.
#[derive(Debug, Clone)]
pub struct BroadcastDraft {
    pub title: String,
    pub body: String,
    pub audience: Audience,
    pub scheduled_at: Option<Ts>,
}

/// Filters of the broadcast list.
#[derive(Debug, Clone, Default)]
pub struct BroadcastFilter {
    pub statuses: Vec<BroadcastStatus>,
    pub q: Option<String>,
    pub limit: usize,
    pub offset: usize,
}

#[derive(Debug, Clone, Default)]
pub struct BroadcastPage {
    pub items: Vec<Broadcast>,
    /// Matching `statuses` and `q`.
    pub total: i64,
    /// Per status, under `q` only.
    pub status_counts: Vec<(BroadcastStatus, i64)>,
    /// Sum of `total` over the filtered broadcasts.
    pub recipients: i64,
}

/// How a delivery step went.
#[derive(Debug, Clone, PartialEq)]
pub enum ChunkOutcome {
    /// More to deliver.
    Progress(Broadcast),
    /// Delivery ended (sent or failed).
    Finished(Broadcast),
    /// The claim no longer holds (cancelled, or another worker took over).
    Stopped,
}

/// One inbox item.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxItem {
    /// A UUID (version 7): the public id. The row's sequence number stays inside the store.
    pub id: uuid::Uuid,
    pub title: String,
    pub message: String,
    /// `broadcast` or `direct`.
    pub kind: &'static str,
    pub created_at: Ts,
    pub read_at: Option<Ts>,
    pub meta: Option<Value>,
    pub event_id: String,
    pub broadcast_id: Option<String>,
}

/// An inbox item as the real-time feed reads it: with its user and the store's sequence
/// number (which orders items and is never shown to clients).
#[derive(Debug, Clone, PartialEq)]
pub struct FeedItem {
    pub seq: i64,
    pub user: UserId,
    pub item: InboxItem,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InboxPage {
    pub items: Vec<InboxItem>,
    pub total: i64,
    pub unread: i64,
}

/// A direct notification to one user (`notifications.send`).
#[derive(Debug, Clone)]
pub struct DirectNotification {
    pub user_id: UserId,
    pub title: String,
    pub body: String,
    pub meta: Option<Value>,
    pub event_id: Option<String>,
}

impl DirectNotification {
    /// Parses a direct notification from JSON: `user_id`, `title` (1–200 characters), the
    /// text under `text_key` (1–10 000), `meta` (an object), `event_id` (1–255) and `type`
    /// (1–64; kept as `meta.type` unless `meta` names one). Every field error at once.
    pub fn parse(input: &Value, text_key: &str) -> Result<Self, Vec<FieldError>> {
        let mut errs = Vec::new();
        let mut text = |k: &str, max: usize, required: bool| -> Option<String> {
            match input.get(k) {
                None | Some(Value::Null) if !required => None,
                Some(Value::String(s)) => match crate::domain::bounded_text(k, s, 1, max) {
                    Ok(()) => Some(s.clone()),
                    Err(e) => {
                        errs.push(e);
                        None
                    }
                },
                _ => {
                    errs.push(FieldError::new(k, "is required and must be a string"));
                    None
                }
            }
        };
        let user = text("user_id", 128, true);
        let title = text("title", 200, true);
        let body = text(text_key, 10_000, true);
        let event_id = text("event_id", 255, false);
        let kind = text("type", 64, false);
        let mut meta = match input.get("meta") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m.clone()),
            Some(_) => {
                errs.push(FieldError::new("meta", "must be an object"));
                None
            }
        };
        if let Some(kind) = kind {
            meta.get_or_insert_with(Map::new)
                .entry("type")
                .or_insert(Value::String(kind));
        }
        let user_id = match user.map(|u| UserId::parse("user_id", &u)) {
            Some(Ok(u)) => Some(u),
            Some(Err(e)) => {
                errs.push(e);
                None
            }
            None => None,
        };
        match (user_id, title, body) {
            (Some(user_id), Some(title), Some(body)) if errs.is_empty() => Ok(Self {
                user_id,
                title,
                body,
                meta: meta.map(Value::Object),
                event_id,
            }),
            _ => Err(errs),
        }
    }
}

/// What delivering a direct notification did.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    pub item_id: uuid::Uuid,
    /// False when an item with the same event id was already there.
    pub created: bool,
}

#[cfg(test)]
mod audience_bounds {
    use super::*;
    use serde_json::json;

    fn segment(filters: Value) -> Result<Audience, FieldError> {
        Audience::parse(&json!({ "type": "segment", "filters": filters }))
    }

    #[test]
    fn a_segment_is_bounded_at_creation() {
        let keys: Map<String, Value> = (0..20).map(|i| (format!("k{i}"), json!(1))).collect();
        assert!(segment(Value::Object(keys.clone())).is_ok());
        let mut more = keys;
        more.insert("k20".into(), json!(1));
        assert_eq!(
            segment(Value::Object(more)).unwrap_err().field,
            "audience.filters"
        );
        let list: Vec<Value> = (0..100).map(|i| json!(i)).collect();
        assert!(segment(json!({ "n": list })).is_ok());
        let list: Vec<Value> = (0..101).map(|i| json!(i)).collect();
        assert_eq!(
            segment(json!({ "n": list })).unwrap_err().field,
            "audience.filters.n"
        );
        assert!(segment(json!({ "c": "x".repeat(256) })).is_ok());
        assert_eq!(
            segment(json!({ "c": ["a", "x".repeat(257)] }))
                .unwrap_err()
                .field,
            "audience.filters.c[1]"
        );
        assert_eq!(
            segment(json!({ "c": "D\u{0}E" })).unwrap_err().field,
            "audience.filters.c"
        );
        assert!(segment(json!({ "c": [[1]] })).is_err());
    }
}

/// A user as the API (`PUT /v1/admin/users/{id}`, the batch) and the importer take it,
/// before it is checked.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[schema(as = User, example = json!({"id": "u1", "email": "u1@example.com", "attributes": {"plan": "pro"}}))]
pub struct UserBody {
    /// Required in a batch; in `PUT /v1/admin/users/{user_id}` the path names the user.
    #[schema(min_length = 1, max_length = 128)]
    pub id: Option<String>,
    pub email: Option<String>,
    /// A flat JSON object (segments filter on it).
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Value>,
    pub is_active: Option<bool>,
}

impl UserBody {
    /// Parses into a `NewUser`; `id` comes from the path when given.
    pub fn parse(
        self,
        prefix: &str,
        path_id: Option<UserId>,
        errs: &mut Vec<FieldError>,
    ) -> Option<NewUser> {
        let before = errs.len();
        let f = |n: &str| format!("{prefix}{n}");
        let id = match (path_id, self.id.as_deref()) {
            (Some(id), _) => Some(id),
            (None, Some(s)) => UserId::parse(&f("id"), s).map_err(|e| errs.push(e)).ok(),
            (None, None) => {
                errs.push(FieldError::new(f("id"), "is required"));
                None
            }
        };
        let email = self.email.filter(|e| !e.trim().is_empty());
        if let Some(e) = &email {
            if let Err(e) = bounded_text(&f("email"), e, 3, 320) {
                errs.push(e);
            } else if !e.contains('@') {
                errs.push(FieldError::new(f("email"), "must be an email address"));
            }
        }
        let attributes = Attributes::parse(&f("attributes"), self.attributes)
            .map_err(|e| errs.push(e))
            .ok();
        if errs.len() != before {
            return None;
        }
        Some(NewUser {
            id: id?,
            email,
            attributes: attributes?,
            is_active: self.is_active.unwrap_or(true),
        })
    }
}

#[cfg(test)]
mod broadcast_action_tests {
    use super::*;

    #[test]
    fn each_action_names_the_statuses_it_starts_from() {
        assert_eq!(
            BroadcastAction::Replace.sql_statuses(),
            "'draft', 'scheduled'"
        );
        assert_eq!(
            BroadcastAction::Schedule.sql_statuses(),
            "'draft', 'scheduled'"
        );
        assert_eq!(
            BroadcastAction::Cancel.sql_statuses(),
            "'draft', 'scheduled', 'sending'"
        );
        assert_eq!(
            BroadcastAction::Delete.sql_statuses(),
            "'draft', 'cancelled'"
        );
        // Nothing leaves a finished broadcast but delete of a cancelled one.
        for a in [
            BroadcastAction::Replace,
            BroadcastAction::Schedule,
            BroadcastAction::Cancel,
            BroadcastAction::Delete,
        ] {
            assert!(!a.allowed_from().contains(&BroadcastStatus::Sent));
            assert!(!a.allowed_from().contains(&BroadcastStatus::Failed));
        }
    }
}
