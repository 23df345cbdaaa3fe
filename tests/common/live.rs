//! Clients of the real-time inbox for tests: a Server-Sent Events reader and a WebSocket
//! reader, each waiting at most a bounded time for the next event (never sleeping).

#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// How long a test waits for an event it expects.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// One event: `unread` or `notification`, with its SSE id and its JSON data.
#[derive(Debug, Clone)]
pub struct Ev {
    pub event: String,
    pub id: Option<String>,
    pub data: Value,
}

impl Ev {
    pub fn title(&self) -> &str {
        self.data["title"].as_str().unwrap_or_default()
    }
}

pub struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    /// `GET /v1/notifications/stream` with the token as `?token=`; panics unless it is a 200.
    pub async fn open(base: &str, token: &str, last_event_id: Option<&str>) -> Sse {
        let r = Self::request(base, &format!("?token={token}"), None, last_event_id).await;
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
        Self::from(r)
    }

    /// The raw answer to a stream request (`query` starts with `?` or is empty).
    pub async fn request(
        base: &str,
        query: &str,
        bearer: Option<&str>,
        last_event_id: Option<&str>,
    ) -> reqwest::Response {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let mut req = client.get(format!("{base}/v1/notifications/stream{query}"));
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        req.send().await.expect("stream request")
    }

    pub fn from(resp: reqwest::Response) -> Sse {
        Sse {
            resp,
            buf: String::new(),
        }
    }

    /// The next event, or None when the server ended the stream. Panics after PATIENCE.
    pub async fn next(&mut self) -> Option<Ev> {
        tokio::time::timeout(PATIENCE, self.next_unbounded())
            .await
            .expect("an SSE event within the patience")
    }

    async fn next_unbounded(&mut self) -> Option<Ev> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (None, None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                // A comment (keep-alive) has no event.
                if let Some(event) = event {
                    let data = serde_json::from_str(&data).expect("SSE data is JSON");
                    return Some(Ev { event, id, data });
                }
                continue;
            }
            match self.resp.chunk().await {
                Ok(Some(bytes)) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(None) | Err(_) => return None,
            }
        }
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Ws {
    socket: Socket,
}

/// How a WebSocket ended.
#[derive(Debug, PartialEq)]
pub enum Ended {
    Closed(u16),
    Dropped,
}

impl Ws {
    /// Connects to `GET /v1/notifications/ws{query}`.
    pub async fn open(base: &str, query: &str) -> Ws {
        let url = format!(
            "{}/v1/notifications/ws{query}",
            base.replacen("http", "ws", 1)
        );
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("WebSocket handshake");
        Ws { socket }
    }

    /// The next event frame; Err with how the socket ended. Panics after PATIENCE.
    pub async fn next(&mut self) -> Result<Ev, Ended> {
        tokio::time::timeout(PATIENCE, async {
            loop {
                match self.socket.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let v: Value = serde_json::from_str(&t).expect("a JSON frame");
                        let event = v["type"].as_str().expect("a type").to_string();
                        let data = if event == "notification" {
                            v["item"].clone()
                        } else {
                            v.clone()
                        };
                        let id = data["id"].as_str().map(String::from);
                        return Ok(Ev { event, id, data });
                    }
                    Some(Ok(Message::Close(f))) => {
                        return Err(Ended::Closed(f.map_or(1005, |f| f.code.into())))
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return Err(Ended::Dropped),
                }
            }
        })
        .await
        .expect("a WebSocket frame within the patience")
    }

    /// Sends a frame the server should ignore.
    pub async fn say(&mut self, text: &str) {
        self.socket
            .send(Message::Text(text.to_string().into()))
            .await
            .expect("send a frame");
    }
}

/// What both kinds of stream offer a test.
#[allow(async_fn_in_trait)]
pub trait Events {
    /// The next event; None once the stream has ended.
    async fn event(&mut self) -> Option<Ev>;

    /// The next `notification`, skipping `unread` events.
    async fn item(&mut self) -> Ev {
        loop {
            let e = self.event().await.expect("the stream is open");
            if e.event == "notification" {
                return e;
            }
        }
    }

    /// The next `unread` count, skipping items.
    async fn unread(&mut self) -> i64 {
        loop {
            let e = self.event().await.expect("the stream is open");
            if e.event == "unread" {
                return e.data["unread"].as_i64().unwrap();
            }
        }
    }

    /// Waits for an `unread` event with this count.
    async fn unread_becomes(&mut self, n: i64) {
        while self.unread().await != n {}
    }
}

impl Events for Sse {
    async fn event(&mut self) -> Option<Ev> {
        self.next().await
    }
}

impl Events for Ws {
    async fn event(&mut self) -> Option<Ev> {
        self.next().await.ok()
    }
}
