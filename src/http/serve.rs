//! The accept loop: HTTP/1.1 and HTTP/2 connections served by hyper with the time limits a
//! slow or idle client must not be able to escape, and a graceful stop.
//!
//! `axum::serve` sets no timer, so a client that sends half a header, or keeps a
//! connection open and silent, holds a task and a descriptor for ever. Here every
//! connection gets one deadline (`idle`) for a whole request head — counted from when the
//! connection opens or the previous response was sent, so it bounds keep-alive idleness
//! too — and each chunk of a request body must arrive within the same time (a body read
//! past it is a 400 to the handler that reads it).

use axum::extract::{ConnectInfo, Request};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// How long a client may take to send a request head, or stay idle between requests,
/// unless configured (`--idle-timeout`).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves `router` on `listener` until `stop` completes, then waits for the requests in
/// flight (the caller bounds that wait). Each request carries the peer's address as
/// `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    idle: Duration,
    stop: impl Future<Output = ()>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(idle);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(idle)
        .keep_alive_timeout(idle);
    let router = router.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(idle));
    let graceful = GracefulShutdown::new();
    // Told to connections that have not said anything yet: a stop does not wait for them.
    let (quiet_tx, quiet_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: give the process a moment instead
                    // of spinning on the same error.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        // Small JSON requests and answers: never wait for Nagle.
        let _ = tcp.set_nodelay(true);
        let service = router.clone().map_request(move |mut req: Request<_>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req
        });
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        let mut stopping = quiet_rx.clone();
        tokio::spawn(async move {
            // hyper's deadline starts once it knows the protocol, which needs the first
            // bytes: a client that sends nothing at all is dropped here, and so is one that
            // has sent nothing when the server stops (an HTTP client's spare pooled
            // connection, a browser's preconnect), instead of holding the stop up.
            let mut first = [0u8; 1];
            tokio::select! {
                peeked = tokio::time::timeout(idle, tcp.peek(&mut first)) => match peeked {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return,
                },
                _ = stopping.wait_for(|s| *s) => return,
            }
            let conn = builder.serve_connection_with_upgrades(
                TokioIo::new(tcp),
                TowerToHyperService::new(service),
            );
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = quiet_tx.send(true);
    graceful.shutdown().await;
}
