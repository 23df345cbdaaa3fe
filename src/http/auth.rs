//! Authentication extractors and the login/logout routes.
//!
//! A request presents `Authorization: Bearer <admin or worker token>`, `X-Admin-Key:
//! <admin token>`, or the `access_token` session cookie. Cookie-authenticated mutations
//! must carry `X-CSRF-Token` equal to that session's CSRF token.

use super::error::{ApiError, ApiResult};
use super::extract::JsonBody;
use super::openapi::{Access, Api};
use super::AppState;
use crate::domain::time;
use crate::service::auth::{same_secret, Principal};
use crate::storage::Session;
use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

pub const SESSION_COOKIE: &str = "access_token";
pub const CSRF_COOKIE: &str = "XSRF-TOKEN";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The value of one cookie from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

fn is_mutation(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

fn csrf_ok(headers: &HeaderMap, session: &Session) -> bool {
    headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| same_secret(v.trim(), &session.csrf_token))
}

fn csrf_failed() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "csrf_failed",
        "a cookie-authenticated change needs the X-CSRF-Token header of its session",
    )
}

/// The token of an `Authorization: Bearer <token>` header (either case of the scheme);
/// None when there is no such header or it is not a bearer one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()
        .and_then(|s| {
            s.strip_prefix("Bearer ")
                .or_else(|| s.strip_prefix("bearer "))
        })
        .map(str::trim)
}

async fn authenticate(parts: &Parts, state: &AppState) -> ApiResult<Principal> {
    let headers = &parts.headers;
    if headers.contains_key(header::AUTHORIZATION) {
        return bearer(headers)
            .and_then(|t| state.auth.bearer(t))
            .ok_or_else(|| ApiError::unauthorized("invalid bearer token"));
    }
    if let Some(v) = headers.get("x-admin-key") {
        return match v.to_str() {
            Ok(k) if state.auth.admin_key(k.trim()) => Ok(Principal::Admin),
            _ => Err(ApiError::unauthorized("invalid X-Admin-Key")),
        };
    }
    if let Some(c) = cookie(headers, SESSION_COOKIE) {
        let session = state.auth.session(c).await?.ok_or_else(|| {
            ApiError::unauthorized("the session has expired or is unknown; log in again")
        })?;
        if is_mutation(&parts.method) && !csrf_ok(headers, &session) {
            return Err(csrf_failed());
        }
        return Ok(Principal::Admin);
    }
    Err(ApiError::unauthorized(
        "credentials required: Authorization: Bearer <token>, X-Admin-Key, or a session cookie",
    ))
}

/// The admin token, `X-Admin-Key`, or an admin session (+ CSRF on mutations).
pub struct Admin;

impl<S> FromRequestParts<S> for Admin
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match authenticate(parts, &AppState::from_ref(state)).await? {
            Principal::Admin => Ok(Admin),
            Principal::Worker => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the worker token may only call the worker job routes",
            )),
        }
    }
}

/// The worker token or anything an admin may use.
pub struct WorkerOrAdmin(pub Principal);

impl<S> FromRequestParts<S> for WorkerOrAdmin
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        authenticate(parts, &AppState::from_ref(state))
            .await
            .map(WorkerOrAdmin)
    }
}

/// The admin token, exchanged for a session cookie and a CSRF token.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = Login)]
struct LoginBody {
    #[schema(min_length = 1)]
    token: String,
}

/// A new session: the cookie is set; changes made with it send this CSRF token as
/// `X-CSRF-Token`.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = Session)]
struct LoginView {
    csrf_token: String,
    #[serde(with = "time::serde_ts")]
    #[schema(value_type = String, format = DateTime)]
    expires_at: time::Ts,
}

fn set_cookie(name: &str, value: &str, max_age: i64, http_only: bool, secure: bool) -> HeaderValue {
    let flags = match (http_only, secure) {
        (true, true) => "; HttpOnly; Secure",
        (true, false) => "; HttpOnly",
        (false, true) => "; Secure",
        (false, false) => "",
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Max-Age={max_age}; SameSite=Strict{flags}"
    ))
    .expect("cookie values are hex")
}

/// The client's address, when the server was started with connection info (not behind a
/// proxy header: `X-Forwarded-For` is not trusted).
pub struct ClientAddr(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    JsonBody(body): JsonBody<LoginBody>,
) -> ApiResult<Response> {
    let s = state.auth.login(&body.token, client).await?;
    let max_age = (s.expires_at - state.clock.now()).num_seconds().max(0);
    let mut resp = Json(LoginView {
        csrf_token: s.csrf_token.clone(),
        expires_at: s.expires_at,
    })
    .into_response();
    let h = resp.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(
            SESSION_COOKIE,
            &s.cookie,
            max_age,
            true,
            state.secure_cookies,
        ),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(
            CSRF_COOKIE,
            &s.csrf_token,
            max_age,
            false,
            state.secure_cookies,
        ),
    );
    Ok(resp)
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(c) = cookie(&headers, SESSION_COOKIE) {
        if let Some(session) = state.auth.session(c).await? {
            if !csrf_ok(&headers, &session) {
                return Err(csrf_failed());
            }
            state.auth.logout(&session).await?;
        }
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let h = resp.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", 0, true, state.secure_cookies),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(CSRF_COOKIE, "", 0, false, state.secure_cookies),
    );
    Ok(resp)
}

/// A live browser session (never its cookie).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = SessionInfo)]
struct SessionView {
    id: uuid::Uuid,
    #[serde(with = "time::serde_ts")]
    #[schema(value_type = String, format = DateTime)]
    created_at: time::Ts,
    #[serde(with = "time::serde_ts")]
    #[schema(value_type = String, format = DateTime)]
    expires_at: time::Ts,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = SessionList)]
struct SessionList {
    items: Vec<SessionView>,
}

async fn list_sessions(State(state): State<AppState>, _a: Admin) -> ApiResult<Json<SessionList>> {
    let items: Vec<SessionView> = state
        .auth
        .sessions()
        .await?
        .into_iter()
        .map(|s| SessionView {
            id: s.id,
            created_at: s.created_at,
            expires_at: s.expires_at,
        })
        .collect();
    Ok(Json(SessionList { items }))
}

async fn revoke_session(
    State(state): State<AppState>,
    _a: Admin,
    super::extract::PathString(raw): super::extract::PathString,
) -> ApiResult<StatusCode> {
    let id = uuid::Uuid::parse_str(&raw)
        .map_err(|_| ApiError::invalid_field("session_id", "must be a UUID"))?;
    state.auth.revoke(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub fn router() -> Api {
    Api::new("auth")
        .get(
            "/v1/admin/sessions",
            list_sessions,
            "Live browser sessions (newest first)",
            Access::Admin,
        )
        .returns::<SessionList>(200)
        .delete(
            "/v1/admin/sessions/{session_id}",
            revoke_session,
            "End one browser session",
            Access::Admin,
        )
        .no_content()
        .post(
            "/v1/auth/login",
            login,
            "Log in with the admin token: session cookie + CSRF token",
            Access::Public,
        )
        .body::<LoginBody>()
        .returns::<LoginView>(200)
        .post(
            "/v1/auth/logout",
            logout,
            "End the session (needs X-CSRF-Token)",
            Access::Public,
        )
        .no_content()
}

/// An end user, from `Authorization: Bearer <HS256 JWT>`.
pub struct EndUser(pub crate::domain::notify::UserId);

impl<S> FromRequestParts<S> for EndUser
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        state.auth.require_user_tokens()?;
        let token = bearer(&parts.headers).ok_or_else(|| {
            ApiError::unauthorized("a user token is required: Authorization: Bearer <JWT>")
        })?;
        Ok(EndUser(state.auth.verify_user(token)?))
    }
}
