//! `/v1/admin/users*`: upsert one, batch upsert, list with search, get, soft delete, and
//! an admin view of any user's inbox.

use super::auth::Admin;
use super::error::{ApiError, ApiResult};
use super::extract::{
    page_limit, page_offset, parse_batch, refused, search_query, JsonBody, OffsetPage, QueryPairs,
    Search, UserIdPath,
};
use super::inbox::{inbox_view, InboxPage};
use super::openapi::{Access, Api};
use super::AppState;
use crate::domain::notify::{NewUser, User, UserBody};
use crate::domain::time::{serde_ts, Ts};
use crate::service::users::MAX_BATCH;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A user mirrored from the host application.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = User)]
pub struct UserView {
    id: String,
    email: Option<String>,
    #[schema(value_type = Object)]
    attributes: Value,
    is_active: bool,
    #[serde(with = "serde_ts")]
    #[schema(value_type = String, format = DateTime)]
    created_at: Ts,
    #[serde(with = "serde_ts")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: Ts,
    #[serde(with = "serde_ts::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    deleted_at: Option<Ts>,
}

/// A page of users by id.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = UserList)]
struct UserList {
    items: Vec<UserView>,
    total: i64,
    limit: usize,
    offset: usize,
    has_next: bool,
}

/// How many users a batch upserted.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Upserted)]
struct Upserted {
    upserted: usize,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        Self {
            id: u.id.as_str().to_string(),
            email: u.email,
            attributes: Value::Object(u.attributes.0),
            is_active: u.is_active,
            created_at: u.created_at,
            updated_at: u.updated_at,
            deleted_at: u.deleted_at,
        }
    }
}

async fn put_user(
    State(st): State<AppState>,
    _a: Admin,
    UserIdPath(id): UserIdPath,
    JsonBody(body): JsonBody<UserBody>,
) -> ApiResult<Json<UserView>> {
    let mut errs = Vec::new();
    match body.parse("", Some(id), &mut errs) {
        Some(user) if errs.is_empty() => Ok(Json(st.users.upsert(user).await?.into())),
        _ => Err(refused(errs)),
    }
}

/// 1 to 10 000 users, upserted in one transaction.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = UserBatch)]
struct BatchBody {
    #[schema(required = true, value_type = Vec<UserBody>, min_items = 1, max_items = 10000)]
    users: Option<Vec<Value>>,
}

/// The `batch` of `POST /v1/admin/users/batch`, which is routed on `/v1/admin/users/{user_id}`
/// so that a user called `batch` can still be read, replaced and deleted: any other value
/// there is a known route with the wrong method (405), decided before authentication.
struct BatchSegment;

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for BatchSegment {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let super::extract::PathString(segment) =
            super::extract::PathString::from_request_parts(parts, state).await?;
        if segment == "batch" {
            Ok(BatchSegment)
        } else {
            Err(ApiError::method_not_allowed())
        }
    }
}

async fn batch(
    _batch: BatchSegment,
    State(st): State<AppState>,
    _a: Admin,
    JsonBody(body): JsonBody<BatchBody>,
) -> ApiResult<Json<Upserted>> {
    let users: Vec<NewUser> = parse_batch(
        "users",
        body.users,
        MAX_BATCH,
        |u: UserBody, prefix, errs| u.parse(prefix, None, errs),
    )?;
    let n = st.users.upsert_many(users).await?;
    Ok(Json(Upserted { upserted: n }))
}

async fn list(State(st): State<AppState>, _a: Admin, q: QueryPairs) -> ApiResult<Json<UserList>> {
    let limit = page_limit(q.get("limit"))?;
    let offset = page_offset(q.get("offset"))?;
    let search = search_query(&q)?;
    let (users, total) = st.users.list(search, limit, offset).await?;
    let items: Vec<UserView> = users.into_iter().map(Into::into).collect();
    Ok(Json(UserList {
        items,
        total,
        limit,
        offset,
        has_next: (offset + limit) < total as usize,
    }))
}

async fn get_user(
    State(st): State<AppState>,
    _a: Admin,
    UserIdPath(id): UserIdPath,
) -> ApiResult<Json<UserView>> {
    Ok(Json(st.users.get(id).await?.into()))
}

async fn delete_user(
    State(st): State<AppState>,
    _a: Admin,
    UserIdPath(id): UserIdPath,
) -> ApiResult<StatusCode> {
    st.users.delete(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn user_inbox(
    State(st): State<AppState>,
    _a: Admin,
    UserIdPath(id): UserIdPath,
    q: QueryPairs,
) -> ApiResult<Json<InboxPage>> {
    inbox_view(&st, id, &q).await
}

pub fn router() -> Api {
    let a = Access::Admin;
    Api::new("users")
        .get(
            "/v1/admin/users",
            list,
            "List users (q searches id and email)",
            a,
        )
        .query::<OffsetPage>()
        .query::<Search>()
        .returns::<UserList>(200)
        .post_documented_as(
            "/v1/admin/users/batch",
            "/v1/admin/users/{user_id}",
            batch,
            "Upsert 1 to 10 000 users in one transaction",
            a,
        )
        .body::<BatchBody>()
        .returns::<Upserted>(200)
        .get(
            "/v1/admin/users/{user_id}",
            get_user,
            "One user (soft-deleted ones too)",
            a,
        )
        .returns::<UserView>(200)
        .put("/v1/admin/users/{user_id}", put_user, "Upsert one user", a)
        .body::<UserBody>()
        .returns::<UserView>(200)
        .delete(
            "/v1/admin/users/{user_id}",
            delete_user,
            "Soft-delete a user",
            a,
        )
        .no_content()
        .get(
            "/v1/admin/users/{user_id}/notifications",
            user_inbox,
            "Any user's inbox",
            a,
        )
        .query::<OffsetPage>()
        .returns::<InboxPage>(200)
}
