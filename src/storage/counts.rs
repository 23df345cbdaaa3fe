//! Per-type, per-status job counts kept by the writers, so `/v1/worker/queues`, the
//! summary and the metrics read a few counter rows instead of counting the whole `jobs`
//! table.
//!
//! A trigger per row would cost every insert and transition a statement of its own (it
//! halved batch enqueues in a measurement on SQLite). Instead each write connection keeps
//! a log of the moves its operations made — a job entering a status, or leaving one — and
//! the log follows the writer's savepoints: an operation rolled back to its savepoint
//! takes its moves with it. At commit the log is summed per (type, status) and written in
//! the same transaction as the jobs it describes: one row per (type, status) touched, not
//! one per job. (PostgreSQL appends those sums to a delta table that several writers can
//! insert into without waiting on each other; the maintenance loop folds it in.)

use crate::domain::{JobStatus, QueueStats};
use crate::storage::writer::SavepointLog;
use std::collections::BTreeMap;

/// The moves of one transaction, following its savepoints.
#[derive(Debug, Default)]
pub struct CountLog(SavepointLog<(String, JobStatus, i64)>);

impl CountLog {
    /// A job of `job_type` went from `from` to `to` (None: it was inserted, or deleted).
    pub fn moved(&mut self, job_type: &str, from: Option<JobStatus>, to: Option<JobStatus>) {
        if from == to {
            return;
        }
        if let Some(f) = from {
            self.push(job_type, f, -1);
        }
        if let Some(t) = to {
            self.push(job_type, t, 1);
        }
    }

    /// Adds to the newest entry when it is the same (type, status) and inside the open
    /// savepoint (a batch of one type is one entry, not one per job), else appends.
    fn push(&mut self, job_type: &str, status: JobStatus, d: i64) {
        if let Some(last) = self.0.last_in_scope() {
            if last.1 == status && last.0 == job_type {
                last.2 += d;
                return;
            }
        }
        self.0.push((job_type.to_string(), status, d));
    }

    /// A savepoint opened.
    pub fn mark(&mut self) {
        self.0.mark();
    }

    /// Rolled back to the innermost savepoint: its moves are undone (it stays open).
    pub fn rollback_to_mark(&mut self) {
        self.0.rollback_to_mark();
    }

    /// The innermost savepoint was released: its moves belong to the enclosing scope.
    pub fn release_mark(&mut self) {
        self.0.release_mark();
    }

    /// The transaction ended without committing.
    pub fn clear(&mut self) {
        self.0.take();
    }

    /// The net change per (type, status), zeros left out; the log is emptied.
    pub fn take(&mut self) -> Vec<(String, JobStatus, i64)> {
        let mut sums: BTreeMap<(String, JobStatus), i64> = BTreeMap::new();
        for (t, s, d) in self.0.take() {
            *sums.entry((t, s)).or_default() += d;
        }
        sums.into_iter()
            .filter(|(_, d)| *d != 0)
            .map(|((t, s), d)| (t, s, d))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobStatus::*;

    #[test]
    fn moves_sum_per_type_and_status_and_follow_savepoints() {
        let mut log = CountLog::default();
        log.mark();
        log.moved("a", None, Some(Queued));
        log.moved("a", None, Some(Queued));
        log.release_mark();
        log.mark();
        log.moved("a", Some(Queued), Some(Leased));
        log.moved("b", Some(Leased), Some(Leased));
        log.rollback_to_mark();
        log.moved("a", Some(Queued), Some(Succeeded));
        log.release_mark();
        log.mark();
        log.moved("a", Some(Succeeded), None);
        log.moved("b", None, Some(Failed));
        log.rollback_to_mark();
        log.release_mark();
        assert_eq!(
            log.take(),
            vec![("a".into(), Queued, 1), ("a".into(), Succeeded, 1)]
        );
        assert!(log.take().is_empty());
    }
}

/// `QueueStats` per job type, folded from the rows each backend reads: the kept counts,
/// the oldest ready job of each type, and the expired-lease counters.
#[derive(Debug, Default)]
pub struct StatsByType(BTreeMap<String, QueueStats>);

impl StatsByType {
    fn entry(&mut self, job_type: &str) -> &mut QueueStats {
        self.0
            .entry(job_type.to_string())
            .or_insert_with(|| QueueStats {
                job_type: job_type.to_string(),
                ..Default::default()
            })
    }

    /// `n` jobs of `job_type` are in `status` (a stored status name).
    pub fn count(&mut self, job_type: &str, status: &str, n: i64) {
        let q = self.entry(job_type);
        match status.parse::<JobStatus>() {
            Ok(JobStatus::Queued) => q.queued = n,
            Ok(JobStatus::Leased) => q.leased = n,
            Ok(JobStatus::Succeeded) => q.succeeded = n,
            Ok(JobStatus::Failed) => q.failed = n,
            Ok(JobStatus::Canceled) => q.canceled = n,
            Err(()) => {}
        }
    }

    /// The oldest job of `job_type` that is ready now became ready at `available_at_ms`.
    pub fn oldest_ready(&mut self, job_type: &str, available_at_ms: i64, now_ms: i64) {
        self.entry(job_type).oldest_queued_age_seconds =
            Some((now_ms - available_at_ms).max(0) as f64 / 1000.0);
    }

    /// Leases of `job_type` have expired `n` times.
    pub fn leases_expired(&mut self, job_type: &str, n: i64) {
        self.entry(job_type).leases_expired_total = n;
    }

    /// Every type, by name.
    pub fn finish(self) -> Vec<QueueStats> {
        self.0.into_values().collect()
    }
}
