//! The JSON telemetry summary, built from the store (all processes) after this
//! process's own deltas were flushed.

use super::counter;
use crate::domain::metrics::{BroadcastStats, MetricTotals};
use crate::domain::notify::BroadcastStatus;
use crate::domain::{QueueStats, WorkerProcess};
use serde_json::{json, Map, Value};

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

    pub fn workers_json(&self) -> Value {
        let mut jobs = Map::new();
        for status in ["started", "completed", "failed", "canceled", "tick_errors"] {
            jobs.insert(status.into(), json!(self.counter(counter::JOBS, status)));
        }
        jobs.insert(
            "retries".into(),
            json!(self
                .totals
                .counters
                .iter()
                .filter(|(n, _, _)| n == counter::RETRIES)
                .map(|(_, _, v)| v)
                .sum::<i64>()),
        );
        let stages: Map<String, Value> = self
            .totals
            .stages
            .iter()
            .map(|s| {
                (
                    s.stage.clone(),
                    json!({ "count": s.count, "avg_ms": round(s.avg_ms()) }),
                )
            })
            .collect();
        let processes: Vec<Value> = self
            .processes
            .iter()
            .map(|(p, alive)| {
                serde_json::to_value(super::views::ProcessView::new(p.clone(), *alive))
                    .unwrap_or(Value::Null)
            })
            .collect();
        json!({
            "jobs": jobs,
            "job_avg_ms": round(self.job_avg_ms()),
            "stages": stages,
            "processes": processes,
        })
    }

    pub fn json(&self) -> Value {
        let queues: Vec<Value> = self.queues.iter().map(super::views::queue_view).collect();
        let status_counts: Map<String, Value> = BroadcastStatus::ALL
            .iter()
            .map(|s| {
                let n = self
                    .broadcasts
                    .status_counts
                    .iter()
                    .find(|(k, _)| k == s.as_str())
                    .map_or(0, |(_, n)| *n);
                (s.as_str().to_string(), json!(n))
            })
            .collect();
        json!({
            "workers": self.workers_json(),
            "queues": queues,
            "broadcasts": {
                "status_counts": status_counts,
                "recipients": {
                    "sent": self.broadcasts.sent,
                    "failed": self.broadcasts.failed,
                    "skipped": self.broadcasts.skipped,
                },
            },
        })
    }
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
