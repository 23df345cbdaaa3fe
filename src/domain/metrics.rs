//! Metric deltas and totals as the store keeps them.

/// Upper bounds (seconds) of the stage duration histogram buckets; one more bucket (+Inf)
/// follows.
pub const STAGE_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Count, total and per-bucket observations of one stage (non-cumulative buckets, the
/// last is +Inf).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StageTotals {
    pub stage: String,
    pub count: i64,
    pub sum_ms: f64,
    pub buckets: Vec<i64>,
}

impl StageTotals {
    pub fn new(stage: &str) -> Self {
        Self {
            stage: stage.to_string(),
            count: 0,
            sum_ms: 0.0,
            buckets: vec![0; STAGE_BUCKETS.len() + 1],
        }
    }
    pub fn observe(&mut self, ms: f64) {
        self.count += 1;
        self.sum_ms += ms;
        let secs = ms / 1000.0;
        let i = STAGE_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(STAGE_BUCKETS.len());
        self.buckets[i] += 1;
    }
    pub fn add(&mut self, other: &StageTotals) {
        self.count += other.count;
        self.sum_ms += other.sum_ms;
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
    }
    pub fn avg_ms(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_ms / self.count as f64
        }
    }
}

/// What a process adds to the shared totals.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricDeltas {
    /// (name, label, delta)
    pub counters: Vec<(String, String, i64)>,
    pub stages: Vec<StageTotals>,
}

impl MetricDeltas {
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty() && self.stages.is_empty()
    }
}

/// Everything flushed so far, by all processes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricTotals {
    pub counters: Vec<(String, String, i64)>,
    pub stages: Vec<StageTotals>,
}

/// Broadcast numbers for telemetry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BroadcastStats {
    pub status_counts: Vec<(String, i64)>,
    pub sent: i64,
    pub failed: i64,
    pub skipped: i64,
}
