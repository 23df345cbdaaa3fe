//! The HTTP API: the router, shared state and layers. Each feature file owns its DTOs and
//! a `router()`; errors become responses only in `error.rs`.

pub mod auth;
pub mod broadcasts;
pub mod conditional;
pub mod error;
pub mod extract;
pub mod health;
pub mod inbox;
pub mod jobs;
pub mod openapi;
pub mod schedules;
pub mod serve;
pub mod streams;
pub mod telemetry;
pub mod ui;
pub mod users;
pub mod views;
pub mod workers;

use crate::clock::SharedClock;
use crate::service::auth::AuthService;
use crate::service::jobs::JobService;
use crate::service::workers::WorkerService;
use crate::storage::Db;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderName;
use axum::Router;
use error::ApiError;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

/// What every handler can reach: the services, behind one reference count. axum clones the
/// state for each extractor of each request; a struct of services cloned field by field
/// cost a few dozen atomic increments and decrements per clone (a profile of
/// `http-roundtrip` put its clones and drops at about 5 % of the server's time).
#[derive(Clone)]
pub struct AppState(std::sync::Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> Self {
        Self(std::sync::Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The services and settings the handlers use (through [`AppState`]).
pub struct Services {
    pub jobs: JobService,
    pub schedules: crate::service::schedules::ScheduleService,
    pub auth: AuthService,
    pub workers: WorkerService,
    pub users: crate::service::users::UserService,
    pub broadcasts: crate::service::broadcasts::BroadcastService,
    pub inbox: crate::service::inbox::InboxService,
    /// This process's real-time inbox streams.
    pub streams: std::sync::Arc<crate::service::streams::Hub>,
    pub telemetry: crate::service::telemetry::TelemetryService,
    pub db: Db,
    pub clock: SharedClock,
    pub max_body_bytes: usize,
    /// Session cookies carry `Secure` (`--secure-cookies`).
    pub secure_cookies: bool,
    /// Closed while the database's schema is behind (`serve --no-migrate`).
    pub readiness: std::sync::Arc<health::Readiness>,
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// Every documented route (the API and `/openapi.json` itself).
pub fn api() -> openapi::Api {
    health::router()
        .merge(auth::router())
        .merge(jobs::router())
        .merge(schedules::router())
        .merge(workers::router())
        .merge(users::router())
        .merge(broadcasts::router())
        .merge(inbox::router())
        .merge(streams::router())
        .merge(telemetry::router())
        .get(
            "/openapi.json",
            openapi_json,
            "This document",
            openapi::Access::Public,
        )
        .answers(200, openapi::Answer::AnyJson)
}

async fn openapi_json() -> axum::Json<serde_json::Value> {
    let (_, docs) = api().into_parts();
    axum::Json(openapi::document(&docs))
}

/// The whole router with its layers.
pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let (routes, _) = api().into_parts();
    routes
        // Innermost, so the request metrics count a 304 as a 304.
        .route_layer(axum::middleware::from_fn(conditional::etag))
        .route_layer(axum::middleware::from_fn_with_state(
            state.readiness.clone(),
            health::require_schema,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.telemetry.telemetry().clone(),
            telemetry::track,
        ))
        .merge(ui::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::disable())
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}
