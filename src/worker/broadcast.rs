//! `notifications.broadcast`: claims due broadcasts and delivers them in chunks.
//!
//! Configured by environment variables (invalid values are a startup error):
//! `NOTIFICATIONS_BROADCAST_INTERVAL` (30 s), `_JITTER` (5 s), `_BATCH_LIMIT` (5),
//! `_IMMEDIATE` (1) and `_LEASE` (60 s). A claim is atomic and lasts `LEASE` seconds,
//! renewed with every chunk; a broadcast whose worker died is claimed again once its lease
//! has expired and resumed from its cursor.

use super::{BoxFuture, Built, Periodic, PeriodicSpec, Worker, WorkerConfigError, WorkerEnv};
use crate::domain::notify::{Broadcast, BroadcastStatus, ChunkOutcome};
use crate::service::broadcasts::BroadcastService;
use crate::service::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

pub const NAME: &str = "notifications.broadcast";
pub const DESCRIPTION: &str =
    "delivers due notification broadcasts into every targeted user's inbox, in resumable chunks";

/// Recipients per chunk: one transaction each.
pub const CHUNK: usize = 10_000;

/// The worker's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub interval: Duration,
    pub jitter: Duration,
    pub batch_limit: usize,
    pub immediate: bool,
    pub lease: Duration,
}

fn seconds(name: &str, raw: &str, min: f64) -> Result<Duration, WorkerConfigError> {
    let v: f64 = raw
        .trim()
        .parse()
        .map_err(|_| WorkerConfigError(format!("{name}='{raw}' is not a number")))?;
    // At most a day: anything longer is a typo, and a huge value must not overflow.
    if !v.is_finite() || v < min || v > 86_400.0 {
        return Err(WorkerConfigError(format!(
            "{name}='{raw}' must be a number of seconds from {min} to 86400"
        )));
    }
    Ok(Duration::from_secs_f64(v))
}

impl Settings {
    /// Reads the settings from a variable lookup (the environment in production).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, WorkerConfigError> {
        let var = |n: &str| get(n).filter(|v| !v.trim().is_empty());
        let interval = match var("NOTIFICATIONS_BROADCAST_INTERVAL") {
            Some(v) => seconds("NOTIFICATIONS_BROADCAST_INTERVAL", &v, 0.1)?,
            None => Duration::from_secs(30),
        };
        let jitter = match var("NOTIFICATIONS_BROADCAST_JITTER") {
            Some(v) => seconds("NOTIFICATIONS_BROADCAST_JITTER", &v, 0.0)?,
            None => Duration::from_secs(5),
        };
        let lease = match var("NOTIFICATIONS_BROADCAST_LEASE") {
            Some(v) => seconds("NOTIFICATIONS_BROADCAST_LEASE", &v, 0.1)?,
            None => Duration::from_secs(60),
        };
        let batch_limit = match var("NOTIFICATIONS_BROADCAST_BATCH_LIMIT") {
            Some(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| {
                    WorkerConfigError(format!(
                        "NOTIFICATIONS_BROADCAST_BATCH_LIMIT='{v}' must be an integer from 1 to 1000"
                    ))
                })?,
            None => 5,
        };
        let immediate = match var("NOTIFICATIONS_BROADCAST_IMMEDIATE") {
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" => true,
                "0" | "false" => false,
                _ => {
                    return Err(WorkerConfigError(format!(
                        "NOTIFICATIONS_BROADCAST_IMMEDIATE='{v}' must be 0, 1, true or false"
                    )))
                }
            },
            None => true,
        };
        Ok(Self {
            interval,
            jitter,
            batch_limit,
            immediate,
            lease,
        })
    }
}

pub struct BroadcastWorker {
    broadcasts: BroadcastService,
    settings: Settings,
    owner: String,
    wake: Arc<Notify>,
    telemetry: Arc<crate::telemetry::Telemetry>,
}

pub fn build(env: &WorkerEnv) -> Result<Built, WorkerConfigError> {
    let settings = Settings::from_lookup(|n| std::env::var(n).ok())?;
    Ok(Built::Periodic(Arc::new(BroadcastWorker::new(
        env, settings,
    ))))
}

impl BroadcastWorker {
    pub fn new(env: &WorkerEnv, settings: Settings) -> Self {
        Self {
            broadcasts: BroadcastService::new(
                env.db.clone(),
                env.clock.clone(),
                env.broadcast_wake.clone(),
            )
            .with_signal(env.inbox_signal()),
            settings,
            owner: format!(
                "{NAME}@{}:{}:{}",
                super::liveness::host_name(),
                std::process::id(),
                uuid::Uuid::now_v7()
            ),
            wake: env.broadcast_wake.clone(),
            telemetry: env.jobs.telemetry().clone(),
        }
    }

    fn lease(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.settings.lease).unwrap_or(chrono::Duration::seconds(60))
    }

    /// Delivers one claimed broadcast to the end (or until its claim no longer holds).
    async fn deliver(&self, b: Broadcast) -> anyhow::Result<()> {
        let started = Instant::now();
        let id = b.id;
        loop {
            let step = self
                .broadcasts
                .deliver_chunk(id, self.owner.clone(), CHUNK, self.lease())
                .await;
            match step {
                Ok(ChunkOutcome::Progress(_)) => tokio::task::yield_now().await,
                Ok(ChunkOutcome::Finished(done)) => {
                    self.telemetry.jobs(
                        if done.status == BroadcastStatus::Sent {
                            "completed"
                        } else {
                            "failed"
                        },
                        1,
                    );
                    self.telemetry.stage(NAME, started.elapsed());
                    if done.total == 0 {
                        tracing::warn!(worker = NAME, broadcast.id = %id, "the audience of broadcast {id} resolved to no users");
                    }
                    tracing::info!(
                        worker = NAME,
                        broadcast.id = %id,
                        duration_ms = started.elapsed().as_millis() as u64,
                        "broadcast {} completed status={} total={} sent={} failed={}",
                        id,
                        done.status.as_str(),
                        done.total,
                        done.sent,
                        done.failed
                    );
                    return Ok(());
                }
                Ok(ChunkOutcome::Stopped) => {
                    // Cancelled while sending (or taken over after our claim expired): this
                    // unit of work ends here.
                    self.telemetry.jobs("canceled", 1);
                    tracing::info!(worker = NAME, broadcast.id = %id, "broadcast {id} stopped (cancelled or claimed elsewhere)");
                    return Ok(());
                }
                Err(e @ Error::Unavailable(_)) => {
                    // Transient: the claim expires and a later tick resumes from the cursor.
                    return Err(anyhow::Error::new(e)
                        .context(format!("delivering broadcast {id}; it will resume")));
                }
                Err(e) => {
                    // The reason the store gave (a stored audience it cannot read, …), not
                    // the service's "internal error".
                    let msg = match &e {
                        Error::Internal(cause) => cause.to_string(),
                        other => other.to_string(),
                    };
                    let failed = self
                        .broadcasts
                        .fail_delivery(id, self.owner.clone(), msg)
                        .await?;
                    if let Some(f) = failed {
                        self.telemetry.jobs("failed", 1);
                        self.telemetry.stage(NAME, started.elapsed());
                        tracing::error!(
                            worker = NAME,
                            broadcast.id = %id,
                            "broadcast {} completed status={} total={} sent={} failed={}",
                            id,
                            BroadcastStatus::Failed.as_str(),
                            f.total,
                            f.sent,
                            f.failed
                        );
                    }
                    return Err(anyhow::Error::new(e).context(format!("delivering broadcast {id}")));
                }
            }
        }
    }

    /// One tick: claim due broadcasts and deliver each.
    pub async fn run_tick(&self) -> anyhow::Result<()> {
        let claimed = self
            .broadcasts
            .claim_due(self.owner.clone(), self.settings.batch_limit, self.lease())
            .await?;
        let mut first_error = None;
        self.telemetry.jobs("started", claimed.len() as i64);
        for b in claimed {
            tracing::info!(worker = NAME, broadcast.id = %b.id, total = b.total, "broadcast {} claimed", b.id);
            if let Err(e) = self.deliver(b).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Worker for BroadcastWorker {
    fn name(&self) -> &str {
        NAME
    }
    fn description(&self) -> &str {
        DESCRIPTION
    }
}

impl Periodic for BroadcastWorker {
    fn spec(&self) -> PeriodicSpec {
        PeriodicSpec {
            interval: self.settings.interval,
            jitter: self.settings.jitter,
            immediate: self.settings.immediate,
        }
    }
    fn tick(&self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(self.run_tick())
    }
    fn wake(&self) -> Option<Arc<Notify>> {
        Some(self.wake.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn defaults_and_validation() {
        let s = Settings::from_lookup(lookup(&[])).unwrap();
        assert_eq!(s.interval, Duration::from_secs(30));
        assert_eq!(s.batch_limit, 5);
        assert!(s.immediate);
        let s = Settings::from_lookup(lookup(&[
            ("NOTIFICATIONS_BROADCAST_IMMEDIATE", "FALSE"),
            ("NOTIFICATIONS_BROADCAST_INTERVAL", "0.5"),
        ]))
        .unwrap();
        assert!(!s.immediate);
        assert_eq!(s.interval, Duration::from_millis(500));
        for (k, v) in [
            ("NOTIFICATIONS_BROADCAST_INTERVAL", "0.05"),
            ("NOTIFICATIONS_BROADCAST_INTERVAL", "soon"),
            ("NOTIFICATIONS_BROADCAST_JITTER", "-1"),
            ("NOTIFICATIONS_BROADCAST_BATCH_LIMIT", "0"),
            ("NOTIFICATIONS_BROADCAST_BATCH_LIMIT", "2.5"),
            ("NOTIFICATIONS_BROADCAST_IMMEDIATE", "yes"),
            ("NOTIFICATIONS_BROADCAST_LEASE", "0"),
            ("NOTIFICATIONS_BROADCAST_INTERVAL", "1e300"),
            ("NOTIFICATIONS_BROADCAST_LEASE", "inf"),
            (
                "NOTIFICATIONS_BROADCAST_BATCH_LIMIT",
                "99999999999999999999999",
            ),
        ] {
            let e = Settings::from_lookup(lookup(&[(k, v)])).unwrap_err();
            assert!(e.0.contains(k), "{e}");
        }
    }
}
