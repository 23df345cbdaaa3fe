//! The JSON telemetry summary, built from the store (all processes) after this
//! process's own deltas were flushed.

use super::counter;
use super::views::{ProcessView, QueueView};
use crate::domain::metrics::{BroadcastStats, MetricTotals};
use crate::domain::notify::BroadcastStatus;
use crate::domain::{QueueStats, WorkerProcess};
use serde::Serialize;
use std::collections::BTreeMap;

/// Everything the summary and the Prometheus text are made of.
pub struct Snapshot {
    pub totals: MetricTotals,
    pub queues: Vec<QueueStats>,
    pub processes: Vec<(WorkerProcess, bool)>,
    pub broadcasts: BroadcastStats,
    pub schedules: Vec<crate::domain::schedule::Schedule>,
}

impl Snapshot {
    pub fn counter(&self, name: &str, label: &str) -> i64 {
        self.totals
            .counters
            .iter()
            .find(|(n, l, _)| n == name && l == label)
            .map_or(0, |(_, _, v)| *v)
    }

    /// The average duration of every finished unit of every stage.
    pub fn job_avg_ms(&self) -> f64 {
        let (count, sum) = self
            .totals
            .stages
            .iter()
            .fold((0i64, 0f64), |(c, s), t| (c + t.count, s + t.sum_ms));
        if count == 0 {
            0.0
        } else {
            sum / count as f64
        }
    }

    /// The workers part of the summary (also `GET /v1/admin/telemetry/workers/summary`).
    pub fn workers(&self) -> WorkersSummary {
        let jobs: BTreeMap<String, i64> =
            ["started", "completed", "failed", "canceled", "tick_errors"]
                .into_iter()
                .map(|status| (status.to_string(), self.counter(counter::JOBS, status)))
                .chain(std::iter::once((
                    "retries".to_string(),
                    self.totals
                        .counters
                        .iter()
                        .filter(|(n, _, _)| n == counter::RETRIES)
                        .map(|(_, _, v)| v)
                        .sum::<i64>(),
                )))
                .collect();
        let stages = self
            .totals
            .stages
            .iter()
            .map(|s| {
                (
                    s.stage.clone(),
                    StageSummary {
                        count: s.count,
                        avg_ms: round(s.avg_ms()),
                    },
                )
            })
            .collect();
        let processes = self
            .processes
            .iter()
            .map(|(p, alive)| ProcessView::new(p.clone(), *alive))
            .collect();
        WorkersSummary {
            jobs,
            job_avg_ms: round(self.job_avg_ms()),
            stages,
            processes,
        }
    }

    /// `GET /v1/admin/telemetry/summary`.
    pub fn summary(&self) -> Summary {
        let status_counts = BroadcastStatus::ALL
            .iter()
            .map(|s| {
                let n = self
                    .broadcasts
                    .status_counts
                    .iter()
                    .find(|(k, _)| k == s.as_str())
                    .map_or(0, |(_, n)| *n);
                (s.as_str().to_string(), n)
            })
            .collect();
        Summary {
            workers: self.workers(),
            queues: self.queues.iter().map(QueueView::from).collect(),
            broadcasts: BroadcastSummary {
                status_counts,
                recipients: Recipients {
                    sent: self.broadcasts.sent,
                    failed: self.broadcasts.failed,
                    skipped: self.broadcasts.skipped,
                },
            },
        }
    }
}

/// Workers, queues and broadcasts at a glance, for every process on the database.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = TelemetrySummary)]
pub struct Summary {
    workers: WorkersSummary,
    queues: Vec<QueueView>,
    broadcasts: BroadcastSummary,
}

/// What the workers did: job counts by outcome (`started`, `completed`, `failed`,
/// `canceled`, `tick_errors`, `retries`), the average stage time, each stage and every
/// worker process.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = WorkersSummary)]
pub struct WorkersSummary {
    jobs: BTreeMap<String, i64>,
    job_avg_ms: f64,
    stages: BTreeMap<String, StageSummary>,
    processes: Vec<ProcessView>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = StageSummary)]
pub struct StageSummary {
    count: i64,
    avg_ms: f64,
}

/// Broadcasts by status, and recipients by outcome.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = BroadcastSummary)]
pub struct BroadcastSummary {
    status_counts: BTreeMap<String, i64>,
    recipients: Recipients,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = RecipientCounts)]
pub struct Recipients {
    sent: i64,
    failed: i64,
    skipped: i64,
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
