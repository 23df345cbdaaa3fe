//! The end user's inbox (`/v1/notifications*`, user JWT).

use super::auth::EndUser;
use super::error::{ApiError, ApiResult};
use super::extract::{page_limit, page_offset, OffsetPage, PathString, QueryPairs};
use super::openapi::{Access, Api};
use super::views::Updated;
use super::AppState;
use crate::domain::notify::{InboxItem, UserId};
use crate::domain::time::{serde_ts, Ts};
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use serde_json::Value;

/// One item of a user's inbox.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = InboxItem)]
pub struct ItemView {
    id: uuid::Uuid,
    title: String,
    message: String,
    /// `broadcast` or `direct`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "broadcast")]
    kind: &'static str,
    #[serde(with = "serde_ts")]
    #[schema(value_type = String, format = DateTime)]
    created_at: Ts,
    #[serde(with = "serde_ts::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    read_at: Option<Ts>,
    is_read: bool,
    #[schema(value_type = Option<Object>)]
    meta: Option<Value>,
    event_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    broadcast_id: Option<String>,
}

impl From<InboxItem> for ItemView {
    fn from(i: InboxItem) -> Self {
        Self {
            id: i.id,
            title: i.title,
            message: i.message,
            kind: i.kind,
            created_at: i.created_at,
            is_read: i.read_at.is_some(),
            read_at: i.read_at,
            meta: i.meta,
            event_id: i.event_id,
            broadcast_id: i.broadcast_id,
        }
    }
}

/// A page of a user's inbox, newest first, with the unread count.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = InboxPage)]
pub struct InboxPage {
    items: Vec<ItemView>,
    unread: i64,
    total: i64,
    has_more: bool,
    limit: usize,
    offset: usize,
}

/// How many items of the user's inbox are unread.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = UnreadCount)]
struct Unread {
    unread: i64,
}

/// One page of a user's inbox (also the admin view).
pub async fn inbox_view(st: &AppState, user: UserId, q: &QueryPairs) -> ApiResult<Json<InboxPage>> {
    let limit = page_limit(q.get("limit"))?;
    let offset = page_offset(q.get("offset"))?;
    let page = st.inbox.page(user, limit, offset).await?;
    let items: Vec<ItemView> = page.items.into_iter().map(Into::into).collect();
    Ok(Json(InboxPage {
        items,
        unread: page.unread,
        total: page.total,
        has_more: (offset + limit) < page.total as usize,
        limit,
        offset,
    }))
}

async fn list(
    State(st): State<AppState>,
    EndUser(user): EndUser,
    q: QueryPairs,
) -> ApiResult<Json<InboxPage>> {
    inbox_view(&st, user, &q).await
}

async fn read(
    State(st): State<AppState>,
    EndUser(user): EndUser,
    PathString(raw): PathString,
) -> ApiResult<Json<ItemView>> {
    let id =
        uuid::Uuid::parse_str(&raw).map_err(|_| ApiError::invalid_field("id", "must be a UUID"))?;
    Ok(Json(st.inbox.read(user, id).await?.into()))
}

async fn read_all(State(st): State<AppState>, EndUser(user): EndUser) -> ApiResult<Json<Updated>> {
    Ok(Json(Updated {
        updated: st.inbox.read_all(user).await?,
    }))
}

async fn unread_count(
    State(st): State<AppState>,
    EndUser(user): EndUser,
) -> ApiResult<Json<Unread>> {
    Ok(Json(Unread {
        unread: st.inbox.unread(user).await?,
    }))
}

pub fn router() -> Api {
    let u = Access::User;
    Api::new("inbox")
        .get(
            "/v1/notifications",
            list,
            "The user's inbox, newest first",
            u,
        )
        .query::<OffsetPage>()
        .returns::<InboxPage>(200)
        .post(
            "/v1/notifications/read/{id}",
            read,
            "Mark one item read (idempotent)",
            u,
        )
        .returns::<ItemView>(200)
        .post(
            "/v1/notifications/read-all",
            read_all,
            "Mark every item read",
            u,
        )
        .returns::<Updated>(200)
        .get(
            "/v1/notifications/unread-count",
            unread_count,
            "How many items are unread",
            u,
        )
        .returns::<Unread>(200)
}
