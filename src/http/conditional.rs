//! Conditional GETs: every JSON answer to a `GET` carries a weak `ETag` (a hash of its
//! body), and a request whose `If-None-Match` names it gets `304 Not Modified` with no
//! body. The page polls its lists with it, so an unchanged list costs no transfer, parse
//! or re-render — only the (indexed, bounded) read that produced it.

use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::hash::{DefaultHasher, Hash, Hasher};

/// JSON answers larger than this are passed through without an `ETag`.
const MAX_TAGGED_BODY: usize = 4 << 20;

pub async fn etag(req: Request, next: Next) -> Response {
    if req.method() != Method::GET {
        return next.run(req).await;
    }
    let wanted = req.headers().get(header::IF_NONE_MATCH).cloned();
    let res = next.run(req).await;
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if res.status() != StatusCode::OK || !is_json {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    if body
        .size_hint()
        .upper()
        .is_none_or(|n| n > MAX_TAGGED_BODY as u64)
    {
        return Response::from_parts(parts, body);
    }
    // A body of known, bounded size; reading it cannot fail.
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    let tag = format!("W/\"{:016x}\"", h.finish());
    let tag = HeaderValue::from_str(&tag).expect("hex is a valid header value");
    if wanted.is_some_and(|w| matches(&w, &tag)) {
        let mut not_modified = Response::new(Body::empty());
        *not_modified.status_mut() = StatusCode::NOT_MODIFIED;
        for name in [header::CACHE_CONTROL, header::VARY] {
            if let Some(v) = parts.headers.get(&name) {
                not_modified.headers_mut().insert(name, v.clone());
            }
        }
        not_modified.headers_mut().insert(header::ETAG, tag);
        return not_modified;
    }
    parts.headers.insert(header::ETAG, tag);
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(bytes))
}

/// `If-None-Match`: `*`, or a list of tags compared weakly.
fn matches(wanted: &HeaderValue, tag: &HeaderValue) -> bool {
    let Ok(wanted) = wanted.to_str() else {
        return false;
    };
    let tag = tag.to_str().unwrap_or_default();
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_string();
    wanted
        .split(',')
        .any(|w| w.trim() == "*" || bare(w) == bare(tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_compare_weakly_in_lists() {
        let tag = HeaderValue::from_static("W/\"00ff\"");
        for yes in ["W/\"00ff\"", "\"00ff\"", "\"a\", W/\"00ff\"", "*"] {
            assert!(matches(&HeaderValue::from_static(yes), &tag), "{yes}");
        }
        for no in ["W/\"00fe\"", "", "00ff"] {
            assert!(!matches(&HeaderValue::from_static(no), &tag), "{no}");
        }
    }
}
