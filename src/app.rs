//! Builds the application from a `Config` — store, queue, services, workers, router —
//! binds the listener first (port 0 in tests) and runs until told to stop.

use crate::clock::SharedClock;
use crate::config::{resolve_admin_token, Config, Secret};
use crate::http::{self, AppState};
use crate::queue::ReadyQueue;
use crate::service::auth::AuthService;
use crate::service::jobs::JobService;
use crate::storage::{self, Db, OpenOptions};
use crate::worker::maintenance::Maintenance;
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Opens the store named by `url` off the async runtime (opening blocks).
pub async fn open_store(url: &str, migrate: bool) -> anyhow::Result<Db> {
    let url = url.to_string();
    let store = tokio::task::spawn_blocking(move || storage::open(&url, &OpenOptions { migrate }))
        .await
        .context("opening the store")??;
    Ok(Db::new(store))
}

/// A running application.
pub struct App {
    addr: SocketAddr,
    state: AppState,
    admin_token: Secret,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    maintenance: JoinHandle<()>,
    shutdown_timeout: std::time::Duration,
}

impl App {
    /// Opens the store, builds the services, binds `config.bind` and starts serving.
    pub async fn start(config: Config, clock: SharedClock) -> anyhow::Result<App> {
        let admin_token = resolve_admin_token(
            &config.database_url,
            config.admin_token.as_ref().map(|s| s.expose()),
        )?;
        let db = open_store(&config.database_url, config.migrate).await?;
        let queue = Arc::new(ReadyQueue::new());
        let jobs = JobService::new(db.clone(), queue, clock.clone());
        let auth = AuthService::new(
            db.clone(),
            clock.clone(),
            admin_token.clone(),
            config.worker_token.clone(),
            chrono::Duration::from_std(config.session_ttl).unwrap_or(chrono::Duration::hours(12)),
        );
        let rebuilt = jobs.rebuild_queue().await?;
        tracing::debug!(ready = rebuilt, "ready queue rebuilt from the store");

        let state = AppState {
            jobs: jobs.clone(),
            auth: auth.clone(),
            db: db.clone(),
            clock: clock.clone(),
            max_body_bytes: config.max_body_bytes,
        };
        let listener = tokio::net::TcpListener::bind(&config.bind)
            .await
            .with_context(|| format!("binding {}", config.bind))?;
        let addr = listener.local_addr()?;
        let (stop, stop_rx) = watch::channel(false);

        let maintenance = tokio::spawn(
            Maintenance {
                jobs,
                auth,
                retention: config.job_retention,
            }
            .run(config.maintenance_interval, stop_rx.clone()),
        );
        let router = http::router(state.clone());
        let mut server_stop = stop_rx;
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = server_stop.wait_for(|s| *s).await;
                })
                .await
        });
        tracing::info!(%addr, database = %storage::redact_url(&config.database_url), "wp-lite serving");
        Ok(App {
            addr,
            state,
            admin_token,
            stop,
            server,
            maintenance,
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn admin_token(&self) -> &Secret {
        &self.admin_token
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Graceful stop: no new connections, requests in hand finish within the shutdown
    /// timeout, background loops stop, the store is closed.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let served = tokio::time::timeout(self.shutdown_timeout, self.server).await;
        let _ = tokio::time::timeout(self.shutdown_timeout, self.maintenance).await;
        let db = self.state.db.clone();
        tokio::task::spawn_blocking(move || db.store().close()).await?;
        match served {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(e.into()),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => {
                tracing::warn!("requests still running after the shutdown timeout were cut off");
                Ok(())
            }
        }
    }
}
