//! Builds the application from a `Config` — store, queue, services, workers, router —
//! binds the listener first (port 0 in tests) and runs until told to stop.

use crate::clock::SharedClock;
use crate::config::{resolve_admin_token, Config, ConfigError, Secret, WorkerSelection};
use crate::http::{self, AppState};
use crate::queue::ReadyQueue;
use crate::service::auth::AuthService;
use crate::service::jobs::JobService;
use crate::storage::{self, Db, OpenOptions};
use crate::worker::runner::run_worker;
use crate::worker::{maintenance, Built, Registry, WorkerEnv};
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Opens the store named by `url` off the async runtime (opening blocks).
pub async fn open_store(url: &str, migrate: bool) -> anyhow::Result<Db> {
    Ok(Db::open(url, OpenOptions { migrate }).await?)
}

/// A running application.
pub struct App {
    addr: SocketAddr,
    state: AppState,
    admin_token: Secret,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    /// The workers and the metrics flusher (started once the schema is current).
    work: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
    shutdown_timeout: std::time::Duration,
}

impl App {
    /// Opens the store, builds the services, binds `config.bind` and starts serving, with
    /// the built-in workers.
    pub async fn start(config: Config, clock: SharedClock) -> anyhow::Result<App> {
        Self::start_with(config, clock, Registry::builtin()).await
    }

    /// Like `start`, with the workers of `registry` to choose from.
    pub async fn start_with(
        config: Config,
        clock: SharedClock,
        registry: Registry,
    ) -> anyhow::Result<App> {
        let admin_token = resolve_admin_token(
            &config.database_url,
            config.admin_token.as_ref().map(|s| s.expose()),
        )?;
        let db = open_store(&config.database_url, config.migrate).await?;
        let queue = Arc::new(ReadyQueue::new());
        let broadcast_wake = Arc::new(tokio::sync::Notify::new());
        let telemetry = crate::telemetry::Telemetry::new();
        let jobs = JobService::new(db.clone(), queue, clock.clone())
            .with_telemetry(telemetry.clone())
            .with_long_poll_limit(config.max_long_polls);
        let auth = AuthService::new(
            db.clone(),
            clock.clone(),
            admin_token.clone(),
            config.worker_token.clone(),
            config.jwt_secret.clone(),
            chrono::Duration::from_std(config.session_ttl).unwrap_or(chrono::Duration::hours(12)),
        )
        .with_login_metric(telemetry.login_refused())
        .with_jwt_audience(config.jwt_audience.clone());
        let (stop, stop_rx) = watch::channel(false);
        let hub = Arc::new(crate::service::streams::Hub::new(
            config.max_streams,
            telemetry.streams(),
            stop_rx.clone(),
        ));
        let env = WorkerEnv {
            jobs: jobs.clone(),
            db: db.clone(),
            clock: clock.clone(),
            options: config.worker_options.clone(),
            broadcast_wake: broadcast_wake.clone(),
            hub: Some(hub.clone()),
        };
        env.subscribe_wakes();
        let chosen = choose_workers(&registry, &config.workers, &env)?;
        // `--no-migrate` on a database that is behind: serve anyway, the API closed
        // (503) until another process migrates it; the workers start then.
        let pending = db.call(|s| s.pending_migrations()).await?;
        let readiness = http::health::Readiness::new(pending.clone());
        if pending.is_empty() {
            let rebuilt = jobs.rebuild_queue().await?;
            tracing::debug!(ready = rebuilt, "ready queue rebuilt from the store");
        } else {
            tracing::warn!(
                pending = %pending.join(", "),
                "the database schema is behind and --no-migrate was given: every API route answers 503 until `wp-lite migrate` runs"
            );
        }

        let state = AppState::new(crate::http::Services {
            jobs: jobs.clone(),
            schedules: crate::service::schedules::ScheduleService::new(
                db.clone(),
                clock.clone(),
                jobs.clone(),
            ),
            auth,
            workers: crate::service::workers::WorkerService::new(db.clone(), clock.clone()),
            users: crate::service::users::UserService::new(db.clone(), clock.clone()),
            broadcasts: crate::service::broadcasts::BroadcastService::new(
                db.clone(),
                clock.clone(),
                broadcast_wake.clone(),
            )
            .with_signal(env.inbox_signal()),
            inbox: env.inbox(),
            streams: hub.clone(),
            telemetry: crate::service::telemetry::TelemetryService::new(
                db.clone(),
                clock.clone(),
                telemetry.clone(),
            ),
            db: db.clone(),
            clock: clock.clone(),
            max_body_bytes: config.max_body_bytes,
            secure_cookies: config.secure_cookies,
            readiness: readiness.clone(),
        });
        let listener = tokio::net::TcpListener::bind(&config.bind)
            .await
            .with_context(|| format!("binding {}", config.bind))?;
        let addr = listener.local_addr()?;

        let work = {
            let (env, mut stop, telemetry) = (env.clone(), stop_rx.clone(), telemetry.clone());
            tokio::spawn(async move {
                if !readiness.is_ready() {
                    if !wait_for_schema(&env.db, &readiness, &mut stop).await {
                        return;
                    }
                    match env.jobs.rebuild_queue().await {
                        Ok(n) => tracing::debug!(ready = n, "ready queue rebuilt from the store"),
                        Err(e) => {
                            tracing::warn!(error = %e, "could not rebuild the ready queue; the workers poll the store")
                        }
                    }
                    readiness.set_ready();
                    tracing::info!(
                        "the database is migrated: serving the API and starting the workers"
                    );
                }
                // Counters and stage timings reach the store every few seconds and on stop.
                let mut handles = vec![telemetry.spawn_flusher(
                    env.db.clone(),
                    crate::telemetry::FLUSH_EVERY,
                    stop.clone(),
                )];
                handles.extend(chosen.into_iter().map(|w| {
                    let (env, stop) = (env.clone(), stop.clone());
                    tokio::spawn(async move { run_worker(w, &env, false, stop).await })
                }));
                for h in handles {
                    let _ = h.await;
                }
            })
        };
        let router = http::router(state.clone());
        let metrics_listener = match &config.metrics_bind {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the metrics listener {addr}"))?,
            ),
            None => None,
        };
        let idle = config.idle_timeout;
        let mut background = vec![tokio::spawn(crate::service::streams::run_fan_in(
            hub,
            db.clone(),
            stop_rx.clone(),
        ))];
        if let Some(l) = metrics_listener {
            let (r, mut stop) = (
                http::telemetry::metrics_router(state.clone()),
                stop_rx.clone(),
            );
            tracing::info!(addr = %l.local_addr()?, "serving /metrics without auth");
            background.push(tokio::spawn(async move {
                http::serve::serve(l, r, idle, async move {
                    crate::shutdown::stopped(&mut stop).await
                })
                .await;
            }));
        }
        let mut server_stop = stop_rx;
        let server = tokio::spawn(async move {
            http::serve::serve(listener, router, idle, async move {
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
            work,
            background,
            shutdown_timeout: config.worker_options.shutdown_timeout,
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
        tracing::debug!("stopping: the HTTP server has stopped");
        // Workers get the shutdown timeout for work in hand, then release what they hold.
        let _ = tokio::time::timeout(
            self.shutdown_timeout + std::time::Duration::from_secs(5),
            self.work,
        )
        .await;
        tracing::debug!("stopping: the workers have stopped");
        for b in self.background {
            let _ = b.await;
        }
        tracing::debug!("stopping: the background loops have stopped");
        let db = self.state.db.clone();
        if let Err(e) = self.state.telemetry.telemetry().flush(&db).await {
            tracing::warn!(error = %e, "could not flush metrics on stop");
        }
        db.close().await;
        tracing::debug!("stopping: the store is closed");
        match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => {
                tracing::warn!("requests still running after the shutdown timeout were cut off");
                Ok(())
            }
        }
    }
}

/// How often a `serve` whose database is behind looks whether it was migrated.
const SCHEMA_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Waits until the database has every migration this build carries (true), or until
/// the stop (false).
async fn wait_for_schema(
    db: &Db,
    readiness: &http::health::Readiness,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SCHEMA_POLL) => {}
            _ = crate::shutdown::stopped(stop) => return false,
        }
        match db.call(|s| s.pending_migrations()).await {
            Ok(p) if p.is_empty() => return true,
            Ok(p) => readiness.set_pending(p),
            Err(e) => tracing::debug!(error = %e, "schema check failed; trying again"),
        }
    }
}

/// The workers `serve` runs: always jobs.maintenance, plus the selection.
fn choose_workers(
    registry: &Registry,
    selection: &WorkerSelection,
    env: &WorkerEnv,
) -> Result<Vec<Built>, ConfigError> {
    let mut names: Vec<&str> = vec![maintenance::NAME];
    match selection {
        WorkerSelection::None => {}
        WorkerSelection::Default => names.extend(
            registry
                .entries()
                .iter()
                .filter(|e| e.in_serve_by_default && e.name != maintenance::NAME)
                .map(|e| e.name),
        ),
        WorkerSelection::Named(list) => names.extend(
            list.iter()
                .map(String::as_str)
                .filter(|n| *n != maintenance::NAME),
        ),
    }
    names
        .into_iter()
        .map(|name| {
            let reg = registry
                .get(name)
                .ok_or_else(|| ConfigError::UnknownWorker {
                    name: name.to_string(),
                    known: registry.names().join(", "),
                })?;
            reg.build(env).map_err(|e| ConfigError::Worker {
                name: name.to_string(),
                reason: e.0,
            })
        })
        .collect()
}
