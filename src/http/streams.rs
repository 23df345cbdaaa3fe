//! The real-time inbox over HTTP — `GET /v1/notifications/stream` (Server-Sent Events) and
//! `GET /v1/notifications/ws` (WebSocket) — and direct sends
//! (`POST /v1/admin/notifications/send`, also at the original platform's
//! `/v1/notifications/admin/send`).
//!
//! Both streams carry the same events: `unread` (`{"unread": n}`) when the stream opens and
//! after every change to the user's inbox, and `notification` (the inbox item). They end
//! when the user's JWT expires and when the process stops.

use super::auth::{bearer, cookie, Admin, SESSION_COOKIE};
use super::error::{ApiError, ApiResult};
use super::extract::{refused, JsonBody, QueryPairs};
use super::inbox::ItemView;
use super::openapi::{Access, Answer, Api};
use super::AppState;
use crate::domain::notify::{DirectNotification, FeedItem, UserId};
use crate::domain::Ts;
use crate::service::streams::{Next, Push, Refused, Subscription};
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

/// Items a reconnecting client is sent from before it reconnected, at most.
const REPLAY: usize = 100;
/// A comment (SSE) or a ping (WebSocket) this often keeps proxies from closing the stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The WebSocket close code for "no valid user".
const CLOSE_UNAUTHORIZED: u16 = 4401;

/// The user a stream is for, and when its token expires.
struct StreamUser {
    user: UserId,
    until: Ts,
}

/// The token from `?token=`, `Authorization: Bearer`, or the `access_token` cookie (which
/// is how a browser's WebSocket can carry one).
fn authenticate(st: &AppState, headers: &HeaderMap, q: &QueryPairs) -> ApiResult<StreamUser> {
    st.auth.require_user_tokens()?;
    let token = q
        .get("token")
        .or_else(|| bearer(headers))
        .or_else(|| cookie(headers, SESSION_COOKIE))
        .ok_or_else(|| {
            ApiError::unauthorized(
                "a user token is required: ?token=<JWT>, Authorization: Bearer <JWT> or the access_token cookie",
            )
        })?;
    let (user, until) = st.auth.verify_user_until(token)?;
    Ok(StreamUser { user, until })
}

/// What a stream sends.
enum Out {
    Unread(i64),
    Item(Box<FeedItem>),
}

impl Out {
    fn sse(&self) -> Event {
        match self {
            Out::Unread(n) => Event::default()
                .event("unread")
                .data(json!({ "unread": n }).to_string()),
            Out::Item(f) => Event::default()
                .event("notification")
                .id(f.item.id.to_string())
                .data(item_json(f).to_string()),
        }
    }

    fn ws(&self) -> String {
        match self {
            Out::Unread(n) => json!({ "type": "unread", "unread": n }).to_string(),
            Out::Item(f) => json!({ "type": "notification", "item": item_json(f) }).to_string(),
        }
    }
}

fn item_json(f: &FeedItem) -> Value {
    serde_json::to_value(ItemView::from(f.item.clone())).unwrap_or(Value::Null)
}

/// One open stream: what it sends first, then what the hub pushes, until the token
/// expires or the process stops.
struct Feed {
    inbox: crate::service::inbox::InboxService,
    clock: crate::clock::SharedClock,
    sub: Subscription,
    first: VecDeque<Out>,
    /// The items replayed; a push of one of them is dropped.
    replayed: std::collections::HashSet<i64>,
    /// The sequence number of the `Last-Event-ID` item: the client has it and everything
    /// before it, so a push at or below it (the fan-in can still be catching up on items
    /// made before the stream opened) is dropped too.
    seen_upto: i64,
    deadline: tokio::time::Instant,
    /// A resynchronisation was asked for and not yet sent.
    resync: bool,
}

impl Feed {
    /// Registers the stream (within the limits), then reads what it sends first: the
    /// unread count and, after `last` (`Last-Event-ID`), the items the client missed.
    async fn open(
        st: &AppState,
        who: StreamUser,
        last: Option<uuid::Uuid>,
    ) -> Result<Feed, Opening> {
        let sub = st.streams.subscribe(&who.user).map_err(Opening::Refused)?;
        let unread = st.inbox.unread(who.user.clone()).await?;
        sub.opened_with(unread);
        let (anchor, replay) = match last {
            Some(id) => st.inbox.after(who.user.clone(), id, REPLAY).await?,
            None => (None, Vec::new()),
        };
        let replayed = replay.iter().map(|f| f.seq).collect();
        let mut first = VecDeque::from([Out::Unread(unread)]);
        first.extend(replay.into_iter().map(|f| Out::Item(Box::new(f))));
        let left = (who.until - st.clock.now())
            .to_std()
            .unwrap_or(Duration::ZERO);
        Ok(Feed {
            inbox: st.inbox.clone(),
            clock: st.clock.clone(),
            sub,
            first,
            replayed,
            seen_upto: anchor.unwrap_or(0),
            deadline: tokio::time::Instant::now() + left,
            resync: false,
        })
    }

    /// The next thing to send; `None` when the stream ends. Cancel-safe.
    async fn next(&mut self) -> Option<Out> {
        if let Some(o) = self.first.pop_front() {
            return Some(o);
        }
        loop {
            if self.resync {
                let user = self.sub.user().clone();
                if let Ok(n) = self.inbox.unread(user).await {
                    self.resync = false;
                    return Some(Out::Unread(n));
                }
            }
            let next = tokio::select! {
                n = self.sub.next() => n,
                _ = tokio::time::sleep_until(self.deadline) => return None,
            };
            match next {
                Next::Push(Push::Item(f))
                    if f.seq > self.seen_upto && !self.replayed.contains(&f.seq) =>
                {
                    self.sub.sent_item(f.item.created_at, self.clock.now());
                    return Some(Out::Item(f));
                }
                Next::Push(Push::Item(_)) => {}
                Next::Push(Push::Unread(n)) => return Some(Out::Unread(n)),
                Next::Resync => self.resync = true,
                Next::Stopping => return None,
            }
        }
    }

    fn expired(&self) -> bool {
        tokio::time::Instant::now() >= self.deadline
    }
}

/// Why a stream could not open.
enum Opening {
    Refused(Refused),
    Failed(ApiError),
}

impl From<crate::service::Error> for Opening {
    fn from(e: crate::service::Error) -> Self {
        Opening::Failed(e.into())
    }
}

impl From<Opening> for ApiError {
    fn from(o: Opening) -> Self {
        match o {
            Opening::Refused(r) => ApiError::unavailable(r.message()),
            Opening::Failed(e) => e,
        }
    }
}

/// `Last-Event-ID`: the id of the last item the client saw.
fn last_event_id(headers: &HeaderMap) -> ApiResult<Option<uuid::Uuid>> {
    let Some(v) = headers.get("last-event-id") else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(|s| uuid::Uuid::parse_str(s.trim()).ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::invalid_field("Last-Event-ID", "must be an inbox item id (a UUID)")
        })
}

async fn sse(State(st): State<AppState>, headers: HeaderMap, q: QueryPairs) -> ApiResult<Response> {
    let who = authenticate(&st, &headers, &q)?;
    let last = last_event_id(&headers)?;
    let mut feed = Feed::open(&st, who, last).await?;
    let events = async_stream::stream! {
        while let Some(out) = feed.next().await {
            yield Ok::<Event, Infallible>(out.sse());
        }
    };
    let mut res = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response();
    // Proxies that buffer responses (nginx) pass this one through as it comes.
    res.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(res)
}

async fn ws(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: QueryPairs,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let who = authenticate(&st, &headers, &q);
    let upgrade = match (upgrade, &who) {
        (Ok(u), _) => u,
        // Not a WebSocket handshake: a plain answer, credentials first.
        (Err(_), Err(e)) => return e.clone().into_response(),
        (Err(e), Ok(_)) => {
            return ApiError::invalid(format!(
            "this route is a WebSocket: {} (use /v1/notifications/stream for Server-Sent Events)",
            e.body_text()
        ))
            .into_response()
        }
    };
    // A browser cannot read the status of a refused handshake, so every refusal of a
    // handshake is a close code on an accepted socket.
    upgrade.on_upgrade(move |socket| serve_socket(st, socket, who))
}

async fn close(mut socket: WebSocket, code: u16, reason: &str) {
    // A close frame's reason is at most 123 bytes.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame {
        code,
        reason: reason[..end].to_string().into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// Sends a frame; false when the socket failed or the client did not take it within a
/// keep-alive period (a client that does not read cannot hold its socket past its token's
/// expiry or a stop).
async fn send_within(socket: &mut WebSocket, msg: Message) -> bool {
    matches!(
        tokio::time::timeout(KEEP_ALIVE, socket.send(msg)).await,
        Ok(Ok(()))
    )
}

async fn serve_socket(st: AppState, socket: WebSocket, who: ApiResult<StreamUser>) {
    let who = match who {
        Ok(w) => w,
        Err(e) => return close(socket, CLOSE_UNAUTHORIZED, &e.message).await,
    };
    let mut feed = match Feed::open(&st, who, None).await {
        Ok(f) => f,
        Err(Opening::Refused(r)) => return close(socket, close_code::AGAIN, r.message()).await,
        Err(Opening::Failed(e)) => return close(socket, close_code::ERROR, &e.message).await,
    };
    let mut socket = socket;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    loop {
        tokio::select! {
            out = feed.next() => match out {
                Some(o) => {
                    if !send_within(&mut socket, Message::Text(o.ws().into())).await {
                        return;
                    }
                }
                None if feed.expired() => {
                    return close(socket, CLOSE_UNAUTHORIZED, "the user token has expired").await
                }
                None => return close(socket, close_code::AWAY, "the server is stopping").await,
            },
            // Client frames are read (pings are answered) and otherwise ignored.
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) => {
                    let _ = send_within(&mut socket, Message::Close(None)).await;
                    return;
                }
                Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if !send_within(&mut socket, Message::Ping(Vec::new().into())).await {
                    return;
                }
            }
        }
    }
}

/// `POST /v1/admin/notifications/send`: one notification to one user's inbox.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[schema(as = DirectSend, example = json!({"user_id": "u1", "title": "Your report is ready", "message": "It is in Reports.", "event_id": "report:42"}))]
#[allow(dead_code)] // read as JSON by `DirectNotification::parse`; the fields document it
struct SendBody {
    #[schema(min_length = 1, max_length = 128)]
    user_id: String,
    #[schema(min_length = 1, max_length = 200)]
    title: String,
    #[schema(min_length = 1, max_length = 10000)]
    message: String,
    /// A category for the host application; kept as `meta.type` unless `meta` has one.
    #[serde(rename = "type")]
    #[schema(min_length = 1, max_length = 64)]
    kind: Option<String>,
    meta: Option<serde_json::Map<String, Value>>,
    /// Delivering the same `event_id` to the same user again returns the first item.
    #[schema(min_length = 1, max_length = 255)]
    event_id: Option<String>,
}

async fn send(
    State(st): State<AppState>,
    _a: Admin,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Response> {
    let n = DirectNotification::parse(&body, "message").map_err(refused)?;
    let user = n.user_id.clone();
    let delivered = st.inbox.deliver(n).await?;
    let item = st.inbox.item(user, delivered.item_id).await?;
    let mut res = Json(ItemView::from(item)).into_response();
    if delivered.created {
        *res.status_mut() = StatusCode::CREATED;
    } else {
        res.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(res)
}

pub fn router() -> Api {
    let u = Access::User;
    Api::new("inbox")
        .get(
            "/v1/notifications/stream",
            sse,
            "The user's inbox as Server-Sent Events (text/event-stream): `unread` and `notification` events; `Last-Event-ID` replays missed items; the token may also come as ?token=",
            u,
        )
        .answers(200, Answer::Media("text/event-stream"))
        .get(
            "/v1/notifications/ws",
            ws,
            "The user's inbox over a WebSocket: {\"type\": \"unread\"|\"notification\"} frames; the token as ?token=, Bearer or the access_token cookie; close 4401 without a valid user, 1013 past the stream limits",
            u,
        )
        .answers(101, Answer::Empty)
        .post(
            "/v1/admin/notifications/send",
            send,
            "Deliver one notification to one user's inbox (201; 200 with Idempotent-Replayed when its event_id was delivered already)",
            Access::Admin,
        )
        .body::<SendBody>()
        .returns::<ItemView>(201)
        .returns::<ItemView>(200)
        .post(
            "/v1/notifications/admin/send",
            send,
            "The same as POST /v1/admin/notifications/send (the original platform's path)",
            Access::Admin,
        )
        .body::<SendBody>()
        .returns::<ItemView>(201)
        .returns::<ItemView>(200)
}
