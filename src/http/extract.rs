//! Extractors that turn requests into typed input, every failure in our error shape:
//! a JSON body (415 without a JSON content type, 413 over the limit, 400 when malformed
//! or mistyped, naming the field), query strings and path ids.

use super::error::ApiError;
use super::AppState;
use crate::domain::JobId;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

/// Parses item `i` of the list `field` (a batch): it must be an object, since serde would
/// also fill a struct from an array of its fields.
pub fn object_item<T: DeserializeOwned>(
    field: &str,
    i: usize,
    v: serde_json::Value,
) -> Result<T, crate::domain::FieldError> {
    use crate::domain::FieldError;
    if !v.is_object() {
        return Err(FieldError::new(
            format!("{field}[{i}]"),
            "must be an object",
        ));
    }
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        FieldError::new(format!("{field}[{i}].{path}"), e.into_inner().to_string())
    })
}

/// A JSON request body parsed into `T`.
pub struct JsonBody<T>(pub T);

fn is_json(content_type: Option<&header::HeaderValue>) -> bool {
    let Some(ct) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body is larger than {limit} bytes"),
    )
}

/// Parses a JSON request body into `T` (`domain::json_object`: an object, UTF-8, no NUL
/// character in any string, nothing after the value), naming the field on a type error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    crate::domain::json_object(bytes).map_err(|e| match e.field {
        Some(f) => ApiError::invalid_field(&f, &e.message),
        None => ApiError::invalid(e.message),
    })
}

/// Refuses a NUL character in text taken from a query string or a path.
pub fn no_nul(field: &str, v: &str) -> Result<(), ApiError> {
    if v.contains('\0') {
        return Err(ApiError::invalid_field(
            field,
            "must not hold a NUL character",
        ));
    }
    Ok(())
}

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = AppState::from_ref(state).max_body_bytes;
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be JSON (Content-Type: application/json)",
            ));
        }
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large(limit));
        }
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|e| {
                let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
                while let Some(s) = src {
                    if s.is::<http_body_util::LengthLimitError>() {
                        return too_large(limit);
                    }
                    src = s.source();
                }
                ApiError::invalid(format!("could not read the request body: {e}"))
            })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// A query string parsed into `T`.
pub struct QueryParams<T>(pub T);

impl<T, S> FromRequestParts<S> for QueryParams<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        query_without_nul(parts)?;
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| QueryParams(t))
            .map_err(|e| ApiError::invalid(format!("invalid query string: {}", e.body_text())))
    }
}

/// A job id from the path; anything but a UUID is a 400.
pub struct JobIdPath(pub JobId);

impl<S: Send + Sync> FromRequestParts<S> for JobIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid(format!("invalid path: {}", e.body_text())))?;
        JobId::parse(&raw)
            .map(JobIdPath)
            .ok_or_else(|| ApiError::invalid_field("job_id", "must be a UUID"))
    }
}

/// Parses a paging `limit` (1–200, default 50) given as a query string value.
/// The paging parameters of the offset-paged lists (documentation of what `page_limit` and
/// `page_offset` read).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct OffsetPage {
    /// Items per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// Items to skip, 0 to 10 000 (default 0).
    #[param(minimum = 0, maximum = 10_000)]
    offset: Option<i64>,
}

/// The search of the searchable lists (documentation of what `search_query` reads).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct Search {
    /// A case-insensitive search, at most 200 characters: users by id and email,
    /// broadcasts by title and body.
    #[param(max_length = 200)]
    q: Option<String>,
}

pub fn page_limit(v: Option<&str>) -> Result<usize, ApiError> {
    match v {
        None | Some("") => Ok(50),
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=200).contains(n))
            .map(|n| n as usize)
            .ok_or_else(|| ApiError::invalid_field("limit", "must be an integer from 1 to 200")),
    }
}

/// The deepest `offset` a list takes: past it a page would walk that many index entries
/// to skip them, so deeper reads narrow the list instead (`q`, `statuses`).
pub const MAX_OFFSET: i64 = 10_000;

/// Parses a paging `offset` (0–10 000, default 0).
pub fn page_offset(v: Option<&str>) -> Result<usize, ApiError> {
    match v {
        None | Some("") => Ok(0),
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| (0..=MAX_OFFSET).contains(n))
            .map(|n| n as usize)
            .ok_or_else(|| {
                ApiError::invalid_field(
                    "offset",
                    "must be an integer from 0 to 10000 (narrow the list with a search to reach further)",
                )
            }),
    }
}

/// A user id from the path (percent-decoded); 1–128 characters, no control characters.
pub struct UserIdPath(pub crate::domain::notify::UserId);

impl<S: Send + Sync> FromRequestParts<S> for UserIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid(format!("invalid path: {}", e.body_text())))?;
        crate::domain::notify::UserId::parse("user_id", &raw)
            .map(UserIdPath)
            .map_err(|e| ApiError::invalid_field(&e.field, &e.message))
    }
}

/// Every key/value of the query string, repeated keys kept (`statuses=a&statuses=b`).
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let pairs: Vec<(String, String)> =
            form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        for (k, v) in &pairs {
            no_nul(k, k)?;
            no_nul(k, v)?;
        }
        Ok(QueryPairs(pairs))
    }
}

/// Refuses a query string whose decoded text holds a NUL character.
fn query_without_nul(parts: &Parts) -> Result<(), ApiError> {
    let q = parts.uri.query().unwrap_or("");
    if !q.contains("%00") {
        return Ok(());
    }
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        no_nul(&k, &k)?;
        no_nul(&k, &v)?;
    }
    Ok(())
}

impl QueryPairs {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A single path parameter as text, with our error shape on a bad path.
pub struct PathString(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathString {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid(format!("invalid path: {}", e.body_text())))
            .and_then(|Path(s)| no_nul("path", &s).map(|()| PathString(s)))
    }
}

/// Turns collected field errors into one 400 (the first 50 are listed).
pub fn fields_ok(errs: Vec<crate::domain::FieldError>) -> Result<(), ApiError> {
    if errs.is_empty() {
        return Ok(());
    }
    Err(refused(errs))
}

/// The 400 of an input refused field by field (the first 50 listed). Called with no
/// field error only when a value could not be built for a reason no field names.
pub fn refused(mut errs: Vec<crate::domain::FieldError>) -> ApiError {
    if errs.is_empty() {
        return ApiError::invalid("invalid input");
    }
    errs.truncate(50);
    crate::service::Error::invalid(errs).into()
}

/// Parses the items of a batch (`{"<field>": [ … 1 to max objects … ]}`), each with `parse`,
/// collecting every item's field errors under `<field>[i].`.
pub fn parse_batch<B, T>(
    field: &str,
    items: Option<Vec<serde_json::Value>>,
    max: usize,
    mut parse: impl FnMut(B, &str, &mut Vec<crate::domain::FieldError>) -> Option<T>,
) -> Result<Vec<T>, ApiError>
where
    B: DeserializeOwned,
{
    let items = items.unwrap_or_default();
    if items.is_empty() || items.len() > max {
        return Err(ApiError::invalid_field(
            field,
            &format!("must hold 1 to {max} items"),
        ));
    }
    let mut errs = Vec::new();
    let out = items
        .into_iter()
        .enumerate()
        .filter_map(|(i, v)| match object_item::<B>(field, i, v) {
            Ok(b) => parse(b, &format!("{field}[{i}]."), &mut errs),
            Err(e) => {
                errs.push(e);
                None
            }
        })
        .collect();
    fields_ok(errs)?;
    Ok(out)
}

/// The `q` search parameter: trimmed, empty = none, at most 200 characters.
pub fn search_query(q: &QueryPairs) -> Result<Option<String>, ApiError> {
    let search = q
        .get("q")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from);
    if search.as_deref().is_some_and(|s| s.chars().count() > 200) {
        return Err(ApiError::invalid_field(
            "q",
            "must be at most 200 characters",
        ));
    }
    Ok(search)
}

/// An optional JSON object field (`null` and absent are none).
pub fn optional_object(
    errs: &mut Vec<crate::domain::FieldError>,
    field: &str,
    v: Option<serde_json::Value>,
) -> Option<serde_json::Value> {
    crate::domain::worker_input::optional_object(field, v)
        .map_err(|e| errs.push(e))
        .ok()
        .flatten()
}
