//! Telemetry: logging, the per-process metrics that are flushed to the store, the HTTP
//! metrics of this process (an owned `prometheus` registry), the JSON summary and the
//! Prometheus text.

mod logging;
pub mod prometheus_text;
pub mod summary;
pub mod views;

pub use logging::init_logging;

/// How often a process adds its metric deltas to the store (and once more when it stops).
pub const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

use crate::domain::metrics::{MetricDeltas, StageTotals};
use crate::storage::Db;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Counter names kept in the store.
pub mod counter {
    /// Label = `started|completed|failed|canceled|tick_errors`.
    pub const JOBS: &str = "jobs";
    /// Label = job type.
    pub const RETRIES: &str = "retries";
    /// Label = job type.
    pub const EXPIRED: &str = "leases_expired";
}

#[derive(Default)]
struct Pending {
    counters: HashMap<(&'static str, String), i64>,
    stages: HashMap<String, StageTotals>,
}

/// This process's metrics: deltas waiting to be flushed to the store, and HTTP metrics.
pub struct Telemetry {
    pending: Mutex<Pending>,
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    login_refused: IntCounterVec,
    long_polls: prometheus::IntGauge,
    streams: crate::service::streams::StreamMetrics,
}

/// Counts one open long-poll while it lives.
pub struct LongPollGuard(prometheus::IntGauge);

impl Drop for LongPollGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Telemetry {
    pub fn new() -> Arc<Self> {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "wp_lite_http_requests_total",
                "HTTP requests served by this process, by route template, method and status.",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "wp_lite_http_request_duration_seconds",
                "HTTP request latency in this process, by route template and method.",
            ),
            &["route", "method"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(http_requests.clone()))
            .expect("register");
        registry
            .register(Box::new(http_duration.clone()))
            .expect("register");
        let login_refused = IntCounterVec::new(
            Opts::new(
                "wp_lite_login_refused_total",
                "Logins this process refused: result=invalid (wrong token) or throttled (too many failures from one address).",
            ),
            &["result"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(login_refused.clone()))
            .expect("register");
        let long_polls = prometheus::IntGauge::new(
            "wp_lite_long_polls_open",
            "Leases waiting for work (wait_ms) in this process right now.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(long_polls.clone()))
            .expect("register");
        let streams = crate::service::streams::StreamMetrics {
            open: prometheus::IntGauge::new(
                "wp_lite_inbox_streams_open",
                "Real-time inbox streams (SSE and WebSocket) open in this process.",
            )
            .expect("valid metric"),
            pushed: prometheus::IntCounter::new(
                "wp_lite_inbox_pushed_total",
                "Inbox items this process sent to open streams.",
            )
            .expect("valid metric"),
            lag: prometheus::Histogram::with_opts(
                HistogramOpts::new(
                    "wp_lite_inbox_push_lag_seconds",
                    "Time from an inbox item's delivery to its sending on a stream, in this process.",
                )
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            )
            .expect("valid metric"),
        };
        registry
            .register(Box::new(streams.open.clone()))
            .expect("register");
        registry
            .register(Box::new(streams.pushed.clone()))
            .expect("register");
        registry
            .register(Box::new(streams.lag.clone()))
            .expect("register");
        Arc::new(Self {
            streams,
            long_polls,
            pending: Mutex::default(),
            registry,
            http_requests,
            http_duration,
            login_refused,
        })
    }

    /// Adds `n` to a counter kept in the store.
    pub fn count(&self, name: &'static str, label: &str, n: i64) {
        if n == 0 {
            return;
        }
        let mut p = self.pending.lock().expect("telemetry lock");
        *p.counters.entry((name, label.to_string())).or_default() += n;
    }

    /// Counts units of work (`started`, `completed`, `failed`, `canceled`, `tick_errors`).
    pub fn jobs(&self, status: &str, n: i64) {
        self.count(counter::JOBS, status, n);
    }

    /// Records one finished unit of `stage` that took `took`.
    pub fn stage(&self, stage: &str, took: Duration) {
        let mut p = self.pending.lock().expect("telemetry lock");
        p.stages
            .entry(stage.to_string())
            .or_insert_with(|| StageTotals::new(stage))
            .observe(took.as_secs_f64() * 1000.0);
    }

    /// Records one HTTP request.
    /// Counts an open long-poll until the guard is dropped.
    pub fn long_poll_started(&self) -> LongPollGuard {
        self.long_polls.inc();
        LongPollGuard(self.long_polls.clone())
    }

    /// The real-time inbox's metrics (handed to the hub).
    pub fn streams(&self) -> crate::service::streams::StreamMetrics {
        self.streams.clone()
    }

    /// The counter of refused logins (handed to the auth service).
    pub fn login_refused(&self) -> IntCounterVec {
        self.login_refused.clone()
    }

    pub fn http(&self, route: &str, method: &str, status: u16, took: Duration) {
        self.http_requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.http_duration
            .with_label_values(&[route, method])
            .observe(took.as_secs_f64());
    }

    /// This process's own metric families (HTTP).
    pub fn gather_local(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.registry.gather()
    }

    fn take(&self) -> MetricDeltas {
        let mut p = self.pending.lock().expect("telemetry lock");
        let p = std::mem::take(&mut *p);
        MetricDeltas {
            counters: p
                .counters
                .into_iter()
                .map(|((n, l), v)| (n.to_string(), l, v))
                .collect(),
            stages: p.stages.into_values().collect(),
        }
    }

    fn restore(&self, d: MetricDeltas) {
        for (name, label, v) in d.counters {
            let name: &'static str = match name.as_str() {
                counter::JOBS => counter::JOBS,
                counter::RETRIES => counter::RETRIES,
                counter::EXPIRED => counter::EXPIRED,
                _ => continue,
            };
            self.count(name, &label, v);
        }
        let mut p = self.pending.lock().expect("telemetry lock");
        for s in d.stages {
            p.stages
                .entry(s.stage.clone())
                .or_insert_with(|| StageTotals::new(&s.stage))
                .add(&s);
        }
    }

    /// Adds what this process counted since the last flush to the store's totals.
    pub async fn flush(&self, db: &Db) -> crate::storage::Result<()> {
        let d = self.take();
        if d.is_empty() {
            return Ok(());
        }
        let sent = d.clone();
        match db.write(move |s| s.add_metrics(&sent)).await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.restore(d);
                Err(e)
            }
        }
    }

    /// Flushes every `every` until `stop`, then once more.
    pub fn spawn_flusher(
        self: Arc<Self>,
        db: Db,
        every: Duration,
        mut stop: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let stopping = tokio::select! {
                    _ = tokio::time::sleep(every) => false,
                    _ = crate::shutdown::stopped(&mut stop) => true,
                };
                if let Err(e) = self.flush(&db).await {
                    tracing::warn!(error = %e, "could not flush metrics; will retry");
                }
                if stopping {
                    return;
                }
            }
        })
    }
}
