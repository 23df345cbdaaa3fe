//! The observability page: files under `assets/ui`, embedded in the binary (works offline).

use super::AppState;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../../assets/ui/index.html");
const STYLE: &str = include_str!("../../assets/ui/style.css");
/// `(file name, contents)` of one of the page's ES modules in `assets/ui/js/`.
macro_rules! module {
    ($name:literal) => {
        ($name, include_str!(concat!("../../assets/ui/js/", $name)))
    };
}
/// The page's script: ES modules served under `/ui/js/`, entry point `main.js`.
const MODULES: &[(&str, &str)] = &[
    module!("main.js"),
    module!("api.js"),
    module!("overview.js"),
    module!("queues.js"),
    module!("jobs.js"),
    module!("schedules.js"),
    module!("broadcasts.js"),
];

fn file(content_type: &'static str, body: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    let mut r = file("text/html; charset=utf-8", INDEX);
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    r
}

/// Static files need no credentials; everything they show comes from authenticated calls.
pub fn router() -> Router<AppState> {
    let router = Router::new()
        .route("/", get(|| async { Redirect::temporary("/ui/") }))
        .route("/ui", get(|| async { Redirect::temporary("/ui/") }))
        .route("/ui/", get(index))
        .route("/ui/index.html", get(index))
        .route(
            "/ui/style.css",
            get(|| async { file("text/css; charset=utf-8", STYLE) }),
        );
    MODULES.iter().fold(router, |r, &(name, body)| {
        r.route(
            &format!("/ui/js/{name}"),
            get(move || async move { file("text/javascript; charset=utf-8", body) }),
        )
    })
}
