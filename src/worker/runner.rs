//! Runs one built worker: logs its start and stop, records its liveness, and drives the
//! periodic or queue loop until told to stop (or once, with `--once`).

use super::liveness::Liveness;
use super::periodic::{self, RealTicker, TickStats};
use super::queue_worker::{self, QueueStats};
use super::{Built, WorkerEnv};
use std::sync::Arc;
use tokio::sync::watch;

/// Runs `worker` until `stop` turns true; with `once`, one tick (periodic) or until the
/// queue is drained (queue worker).
pub async fn run_worker(worker: Built, env: &WorkerEnv, once: bool, stop: watch::Receiver<bool>) {
    let name = worker.name().to_string();
    tracing::info!(worker = %name, "starting worker '{name}'");
    let liveness = Liveness::new(
        env.db.clone(),
        env.clock.clone(),
        &name,
        env.options.heartbeat,
    );
    liveness.report(Some("running")).await;
    let beat = liveness.clone().spawn_heartbeat(stop.clone());
    let timeout = env.options.shutdown_timeout;
    match worker {
        Built::Periodic(w) => {
            let stats = TickStats::default();
            let l = liveness.clone();
            let t = env.jobs.telemetry().clone();
            let on_tick = move |took, failed: bool| {
                l.tick_done(took);
                if failed {
                    t.jobs("tick_errors", 1);
                }
            };
            periodic::run(
                w.as_ref(),
                &RealTicker,
                stop,
                timeout,
                once,
                &stats,
                &on_tick,
            )
            .await;
        }
        Built::Queue(w) => {
            let worker_id = crate::domain::WorkerId::local(format!(
                "{name}@{}:{}",
                super::liveness::host_name(),
                std::process::id()
            ));
            let l = liveness.clone();
            let (t, stage) = (env.jobs.telemetry().clone(), name.clone());
            let on_job: queue_worker::OnJob = Arc::new(move |took, outcome| {
                l.tick_done(took);
                if outcome != queue_worker::Outcome::Stopped {
                    t.stage(&stage, took);
                }
            });
            let stats = Arc::new(QueueStats::default());
            queue_worker::run(
                w,
                env.jobs.clone(),
                worker_id,
                stop,
                timeout,
                once,
                stats,
                on_job,
            )
            .await;
        }
    }
    tracing::info!(worker = %name, "stopping worker '{name}'");
    beat.abort();
    liveness.report(Some("stopped")).await;
}
