//! Metric totals on SQLite.

use super::{map_err, SqliteStore};
use crate::domain::metrics::{BroadcastStats, MetricDeltas, MetricTotals, StageTotals};
use crate::storage::{MetricStore, Result};
use rusqlite::{params, Connection, OptionalExtension};

pub fn add(c: &Connection, d: &MetricDeltas) -> Result<()> {
    let mut st = c
        .prepare_cached(
            "INSERT INTO metric_counters (name, label, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (name, label) DO UPDATE SET value = value + excluded.value",
        )
        .map_err(map_err)?;
    for (name, label, delta) in &d.counters {
        st.execute(params![name, label, delta]).map_err(map_err)?;
    }
    for s in &d.stages {
        let existing: Option<(i64, f64, String)> = c
            .prepare_cached("SELECT count, sum_ms, buckets FROM metric_stages WHERE stage = ?1")
            .and_then(|mut q| {
                q.query_row([&s.stage], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
            })
            .map_err(map_err)?;
        let mut total = StageTotals::new(&s.stage);
        if let Some((count, sum_ms, buckets)) = existing {
            total.count = count;
            total.sum_ms = sum_ms;
            total.buckets =
                serde_json::from_str(&buckets).unwrap_or_else(|_| total.buckets.clone());
        }
        total.add(s);
        c.prepare_cached(
            "INSERT INTO metric_stages (stage, count, sum_ms, buckets) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (stage) DO UPDATE SET count = excluded.count, sum_ms = excluded.sum_ms,
                 buckets = excluded.buckets",
        )
        .and_then(|mut q| {
            q.execute(params![
                total.stage,
                total.count,
                total.sum_ms,
                serde_json::to_string(&total.buckets).unwrap_or_default()
            ])
        })
        .map_err(map_err)?;
    }
    Ok(())
}

pub fn totals(c: &Connection) -> Result<MetricTotals> {
    let counters = c
        .prepare_cached("SELECT name, label, value FROM metric_counters ORDER BY name, label")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .map_err(map_err)?;
    let stages = c
        .prepare_cached("SELECT stage, count, sum_ms, buckets FROM metric_stages ORDER BY stage")
        .and_then(|mut s| {
            s.query_map([], |r| {
                let buckets: String = r.get(3)?;
                Ok(StageTotals {
                    stage: r.get(0)?,
                    count: r.get(1)?,
                    sum_ms: r.get(2)?,
                    buckets: serde_json::from_str(&buckets).unwrap_or_default(),
                })
            })?
            .collect()
        })
        .map_err(map_err)?;
    Ok(MetricTotals { counters, stages })
}

pub fn broadcast_stats(c: &Connection) -> Result<BroadcastStats> {
    let status_counts = c
        .prepare_cached(
            "SELECT status, COUNT(*) FROM broadcasts WHERE deleted_at IS NULL GROUP BY status",
        )
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .map_err(map_err)?;
    // Sums over every broadcast ever (deleted ones too), so they never go backwards.
    let (sent, failed, skipped) = c
        .prepare_cached("SELECT COALESCE(SUM(sent), 0), COALESCE(SUM(failed), 0), COALESCE(SUM(skipped), 0) FROM broadcasts")
        .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))
        .map_err(map_err)?;
    Ok(BroadcastStats {
        status_counts,
        sent,
        failed,
        skipped,
    })
}

impl MetricStore for SqliteStore {
    fn add_metrics(&self, deltas: &MetricDeltas) -> Result<()> {
        let d = deltas.clone();
        self.write(move |c| add(c, &d))
    }

    fn metric_totals(&self) -> Result<MetricTotals> {
        self.read(totals)
    }

    fn broadcast_stats(&self) -> Result<BroadcastStats> {
        self.read(broadcast_stats)
    }
}
