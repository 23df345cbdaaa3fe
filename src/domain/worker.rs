//! Worker processes as the store records them (liveness).

use super::time::Ts;

/// One worker process (in `serve` or `wp-lite run`).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerProcess {
    pub id: String,
    pub name: String,
    pub host: String,
    pub pid: i64,
    /// `running`, `stopping` or `stopped`.
    pub state: String,
    pub started_at: Ts,
    pub last_heartbeat_at: Ts,
    pub last_tick_at: Option<Ts>,
    pub last_tick_ms: Option<i64>,
    /// How often this process promised to report.
    pub heartbeat_ms: i64,
}

impl WorkerProcess {
    /// Alive while it has not stopped and has missed fewer than three heartbeats.
    pub fn alive(&self, now: Ts) -> bool {
        self.state != "stopped"
            && (now - self.last_heartbeat_at).num_milliseconds() <= 3 * self.heartbeat_ms
    }
}
