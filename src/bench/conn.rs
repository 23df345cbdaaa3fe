//! The client of the HTTP throughput scenarios: one HTTP/1.1 connection per simulated
//! worker, driven by hyper directly. A general client (reqwest) parses each URL, looks a
//! connection up in a shared pool and wraps every request in its redirect and timeout
//! machinery; here that cost fell on the client's side of the same two cores the server
//! runs on. A connection of its own per worker, with the host and credentials encoded
//! once, leaves the client only what any HTTP worker must do: write the request, read
//! the answer.

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;

pub(super) struct Conn {
    send: SendRequest<Full<Bytes>>,
    host: HeaderValue,
    auth: HeaderValue,
}

impl Conn {
    /// Connects to `base` (`http://host:port`), sending `token` as the bearer token.
    pub(super) async fn open(base: &str, token: &str) -> anyhow::Result<Self> {
        let addr = base.strip_prefix("http://").context("an http:// address")?;
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self {
            send,
            host: HeaderValue::from_str(addr)?,
            auth: HeaderValue::from_str(&format!("Bearer {token}"))?,
        })
    }

    /// POSTs the JSON `body` to `path` and returns the answer's body; an answer that is
    /// not a success is an error naming `what`.
    pub(super) async fn post(
        &mut self,
        what: &str,
        path: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<Bytes> {
        self.send.ready().await?;
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, self.host.clone())
            .header(AUTHORIZATION, self.auth.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(Full::new(Bytes::from(body)))?;
        let res = self.send.send_request(req).await?;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        anyhow::ensure!(
            status.is_success(),
            "{what}: {status}: {}",
            String::from_utf8_lossy(&body)
        );
        Ok(body)
    }
}
