//! Metric totals on PostgreSQL. Several nodes flush into the same rows at once, so every
//! change is additive and rows are touched in key order (no deadlocks between flushes).

use super::conn::map_err;
use super::{PgConn, PgStore};
use crate::domain::metrics::{BroadcastStats, MetricDeltas, MetricTotals, StageTotals};
use crate::storage::{MetricStore, Result, StoreError};
use std::collections::BTreeMap;

const ADD_COUNTERS: &str = "INSERT INTO metric_counters (name, label, value)
     SELECT u.name, u.label, u.value
     FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY AS u(name, label, value, ord)
     ORDER BY u.ord
     ON CONFLICT (name, label) DO UPDATE SET value = metric_counters.value + EXCLUDED.value";

/// Creates the missing stage rows empty, so the merge below finds (and locks) every row.
const ENSURE_STAGES: &str = "INSERT INTO metric_stages (stage, count, sum_ms, buckets)
     SELECT u.stage, 0, 0, $2::text
     FROM unnest($1::text[]) WITH ORDINALITY AS u(stage, ord)
     ORDER BY u.ord
     ON CONFLICT (stage) DO NOTHING";

const LOCK_STAGES: &str = "SELECT stage, count, sum_ms, buckets FROM metric_stages
     WHERE stage = ANY($1::text[]) ORDER BY stage COLLATE \"C\" FOR UPDATE";

const WRITE_STAGES: &str = "UPDATE metric_stages m SET count = u.count, sum_ms = u.sum_ms,
         buckets = u.buckets
     FROM unnest($1::text[], $2::bigint[], $3::float8[], $4::text[])
         AS u(stage, count, sum_ms, buckets)
     WHERE m.stage = u.stage";

pub fn add(c: &mut PgConn, d: &MetricDeltas) -> Result<()> {
    // Counters: one delta per key (their sum), in key order.
    let mut counters: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for (name, label, delta) in &d.counters {
        let v = counters.entry((name, label)).or_insert(0);
        *v = v.checked_add(*delta).ok_or_else(|| {
            StoreError::Backend(format!("metric {name} {label}: out of range").into())
        })?;
    }
    if !counters.is_empty() {
        let names: Vec<&str> = counters.keys().map(|k| k.0).collect();
        let labels: Vec<&str> = counters.keys().map(|k| k.1).collect();
        let values: Vec<i64> = counters.values().copied().collect();
        c.execute(ADD_COUNTERS, &[&names, &labels, &values])?;
    }

    // Stages: each stage's deltas in their order, applied one by one to the locked row
    // exactly as SQLite's read-merge-write does (same float sums, same bucket merge).
    let mut stages: BTreeMap<&str, Vec<&StageTotals>> = BTreeMap::new();
    for s in &d.stages {
        stages.entry(s.stage.as_str()).or_default().push(s);
    }
    if stages.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = stages.keys().copied().collect();
    let empty = serde_json::to_string(&StageTotals::new("").buckets).unwrap_or_default();
    c.execute(ENSURE_STAGES, &[&keys, &empty])?;
    let mut current: BTreeMap<String, (i64, f64, String)> = BTreeMap::new();
    for r in c.query(LOCK_STAGES, &[&keys])? {
        let stage: String = r.try_get(0).map_err(map_err)?;
        let row = (
            r.try_get(1).map_err(map_err)?,
            r.try_get(2).map_err(map_err)?,
            r.try_get(3).map_err(map_err)?,
        );
        current.insert(stage, row);
    }
    let mut counts = Vec::with_capacity(keys.len());
    let mut sums = Vec::with_capacity(keys.len());
    let mut buckets = Vec::with_capacity(keys.len());
    for (stage, deltas) in &stages {
        let mut total = StageTotals::new(stage);
        if let Some((count, sum_ms, b)) = current.remove(*stage) {
            total.count = count;
            total.sum_ms = sum_ms;
            total.buckets = serde_json::from_str(&b).unwrap_or_else(|_| total.buckets.clone());
        }
        for delta in deltas {
            total.add(delta);
        }
        counts.push(total.count);
        sums.push(total.sum_ms);
        buckets.push(serde_json::to_string(&total.buckets).unwrap_or_default());
    }
    c.execute(WRITE_STAGES, &[&keys, &counts, &sums, &buckets])?;
    Ok(())
}

pub fn totals(c: &mut PgConn) -> Result<MetricTotals> {
    let counters = c
        .query(
            "SELECT name, label, value FROM metric_counters
             ORDER BY name COLLATE \"C\", label COLLATE \"C\"",
            &[],
        )?
        .iter()
        .map(|r| {
            Ok((
                r.try_get(0).map_err(map_err)?,
                r.try_get(1).map_err(map_err)?,
                r.try_get(2).map_err(map_err)?,
            ))
        })
        .collect::<Result<_>>()?;
    let stages = c
        .query(
            "SELECT stage, count, sum_ms, buckets FROM metric_stages ORDER BY stage COLLATE \"C\"",
            &[],
        )?
        .iter()
        .map(|r| {
            let buckets: String = r.try_get(3).map_err(map_err)?;
            Ok(StageTotals {
                stage: r.try_get(0).map_err(map_err)?,
                count: r.try_get(1).map_err(map_err)?,
                sum_ms: r.try_get(2).map_err(map_err)?,
                buckets: serde_json::from_str(&buckets).unwrap_or_default(),
            })
        })
        .collect::<Result<_>>()?;
    Ok(MetricTotals { counters, stages })
}

pub fn broadcast_stats(c: &mut PgConn) -> Result<BroadcastStats> {
    // SQLite's GROUP BY hands the groups back in status order.
    let status_counts = c
        .query(
            "SELECT status, COUNT(*) FROM broadcasts WHERE deleted_at IS NULL
             GROUP BY status ORDER BY status COLLATE \"C\"",
            &[],
        )?
        .iter()
        .map(|r| {
            Ok((
                r.try_get(0).map_err(map_err)?,
                r.try_get(1).map_err(map_err)?,
            ))
        })
        .collect::<Result<_>>()?;
    // Sums over every broadcast ever (deleted ones too), so they never go backwards.
    let r = c.query_one(
        "SELECT COALESCE(SUM(sent), 0)::BIGINT, COALESCE(SUM(failed), 0)::BIGINT,
             COALESCE(SUM(skipped), 0)::BIGINT
         FROM broadcasts",
        &[],
    )?;
    Ok(BroadcastStats {
        status_counts,
        sent: r.try_get(0).map_err(map_err)?,
        failed: r.try_get(1).map_err(map_err)?,
        skipped: r.try_get(2).map_err(map_err)?,
    })
}

impl MetricStore for PgStore {
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
