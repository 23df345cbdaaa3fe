//! Prometheus text format 0.0.4: the original platform's names (`ai_worker_*`) kept for
//! existing dashboards and alerts, and native `wp_lite_*` families next to them. Values
//! come from the store (the work of every process) plus this process's HTTP metrics.

use super::counter;
use super::summary::Snapshot;
use crate::domain::metrics::STAGE_BUCKETS;
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::{Encoder, TextEncoder};
use std::collections::BTreeMap;

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name(k.to_string());
            l.set_value(v.to_string());
            l
        })
        .collect()
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.into());
    f.set_help(help.into());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

fn counter(pairs: &[(&str, &str)], v: f64) -> Metric {
    let mut m = Metric::from_label(labels(pairs));
    let mut c = Counter::default();
    c.set_value(v);
    m.set_counter(c);
    m
}

fn gauge(pairs: &[(&str, &str)], v: f64) -> Metric {
    let mut m = Metric::from_label(labels(pairs));
    let mut g = Gauge::default();
    g.set_value(v);
    m.set_gauge(g);
    m
}

/// Renders the snapshot and `local` families as Prometheus text.
pub fn render(s: &Snapshot, local: Vec<MetricFamily>) -> String {
    use MetricType::{COUNTER, GAUGE, HISTOGRAM};
    let mut fams = Vec::new();

    let jobs = ["started", "completed", "failed", "canceled", "tick_errors"]
        .iter()
        .map(|st| counter(&[("status", st)], s.counter(counter::JOBS, st) as f64))
        .collect();
    fams.push(family(
        "ai_worker_jobs_total",
        "Units of work (job attempts and broadcast claims) by outcome, all processes.",
        COUNTER,
        jobs,
    ));
    fams.push(family(
        "ai_worker_stage_avg_ms",
        "Average duration of a finished unit of each stage (stage = worker name), in milliseconds.",
        GAUGE,
        s.totals
            .stages
            .iter()
            .map(|t| gauge(&[("stage", &t.stage)], t.avg_ms()))
            .collect(),
    ));
    fams.push(family(
        "ai_worker_stage_total",
        "Finished units of each stage (stage = worker name).",
        COUNTER,
        s.totals
            .stages
            .iter()
            .map(|t| counter(&[("stage", &t.stage)], t.count as f64))
            .collect(),
    ));
    fams.push(family(
        "ai_worker_job_duration_ms_avg",
        "Average duration of a finished unit over every stage, in milliseconds.",
        GAUGE,
        vec![gauge(&[], s.job_avg_ms())],
    ));
    let histograms = s
        .totals
        .stages
        .iter()
        .map(|t| {
            let mut h = Histogram::default();
            h.set_sample_count(t.count.max(0) as u64);
            h.set_sample_sum(t.sum_ms / 1000.0);
            let mut cumulative = 0u64;
            let buckets = STAGE_BUCKETS
                .iter()
                .enumerate()
                .map(|(i, ub)| {
                    cumulative += t.buckets.get(i).copied().unwrap_or(0).max(0) as u64;
                    let mut b = Bucket::default();
                    b.set_upper_bound(*ub);
                    b.set_cumulative_count(cumulative);
                    b
                })
                .collect();
            h.set_bucket(buckets);
            let mut m = Metric::from_label(labels(&[("stage", &t.stage)]));
            m.set_histogram(h);
            m
        })
        .collect();
    fams.push(family(
        "wp_lite_stage_duration_seconds",
        "Duration of finished units of work by stage.",
        HISTOGRAM,
        histograms,
    ));

    let mut depth = Vec::new();
    let mut oldest = Vec::new();
    let mut expired = Vec::new();
    let mut paused = Vec::new();
    let mut limits = Vec::new();
    for q in &s.queues {
        paused.push(gauge(
            &[("type", &q.job_type)],
            f64::from(u8::from(q.paused)),
        ));
        if let Some(max) = q.max_leased {
            limits.push(gauge(&[("type", &q.job_type)], max as f64));
        }
        for (status, n) in [
            ("queued", q.queued),
            ("leased", q.leased),
            ("succeeded", q.succeeded),
            ("failed", q.failed),
            ("canceled", q.canceled),
        ] {
            depth.push(gauge(
                &[("type", &q.job_type), ("status", status)],
                n as f64,
            ));
        }
        oldest.push(gauge(
            &[("type", &q.job_type)],
            q.oldest_queued_age_seconds.unwrap_or(0.0),
        ));
        expired.push(counter(
            &[("type", &q.job_type)],
            q.leases_expired_total as f64,
        ));
    }
    fams.push(family(
        "wp_lite_jobs",
        "Jobs in the store by type and status.",
        GAUGE,
        depth,
    ));
    fams.push(family(
        "wp_lite_queue_oldest_age_seconds",
        "How long the oldest ready job of each type has waited (0 when none).",
        GAUGE,
        oldest,
    ));
    fams.push(family(
        "wp_lite_queue_paused",
        "1 while a job type is paused (none of its jobs is leased), else 0.",
        GAUGE,
        paused,
    ));
    fams.push(family(
        "wp_lite_queue_max_leased",
        "The limit on jobs of a type leased at once, for types that have one.",
        GAUGE,
        limits,
    ));
    let mut runs = Vec::new();
    let mut skipped = Vec::new();
    let mut next_run = Vec::new();
    let mut last_run = Vec::new();
    let mut period = Vec::new();
    for sc in &s.schedules {
        let l = [("schedule", sc.name.as_str())];
        runs.push(counter(&l, sc.runs_total as f64));
        skipped.push(counter(&l, sc.skipped_total as f64));
        if let Some(t) = sc.next_run_at {
            next_run.push(gauge(&l, t.timestamp_millis() as f64 / 1000.0));
        }
        if let Some(t) = sc.last_run_at {
            last_run.push(gauge(&l, t.timestamp_millis() as f64 / 1000.0));
        }
        if let Some(p) = sc.period_at_next_run() {
            period.push(gauge(&l, p.num_milliseconds() as f64 / 1000.0));
        }
    }
    fams.push(family(
        "wp_lite_schedule_runs_total",
        "Jobs enqueued by each schedule (calendar runs and manual triggers).",
        COUNTER,
        runs,
    ));
    fams.push(family(
        "wp_lite_schedule_skipped_total",
        "Runs a schedule skipped because its previous run's job was unfinished.",
        COUNTER,
        skipped,
    ));
    fams.push(family(
        "wp_lite_schedule_next_run_timestamp_seconds",
        "When each enabled schedule runs next (Unix time).",
        GAUGE,
        next_run,
    ));
    fams.push(family(
        "wp_lite_schedule_period_seconds",
        "Time from each enabled schedule's next run to the one after it.",
        GAUGE,
        period,
    ));
    fams.push(family(
        "wp_lite_schedule_last_run_timestamp_seconds",
        "When each schedule last enqueued a job (Unix time).",
        GAUGE,
        last_run,
    ));
    fams.push(family(
        "wp_lite_leases_expired_total",
        "Job leases that expired without a heartbeat, by type.",
        COUNTER,
        expired,
    ));
    let retries = s
        .totals
        .counters
        .iter()
        .filter(|(n, _, _)| n == counter::RETRIES)
        .map(|(_, t, v)| counter(&[("type", t)], *v as f64))
        .collect();
    fams.push(family(
        "wp_lite_job_retries_total",
        "Failed job attempts requeued for another try, by type.",
        COUNTER,
        retries,
    ));

    let b = &s.broadcasts;
    fams.push(family(
        "wp_lite_broadcast_recipients_total",
        "Broadcast recipients by result, over every broadcast.",
        COUNTER,
        vec![
            counter(&[("result", "sent")], b.sent as f64),
            counter(&[("result", "failed")], b.failed as f64),
            counter(&[("result", "skipped")], b.skipped as f64),
        ],
    ));
    fams.push(family(
        "wp_lite_broadcasts",
        "Broadcasts by status.",
        GAUGE,
        crate::domain::notify::BroadcastStatus::ALL
            .iter()
            .map(|st| {
                let n = b
                    .status_counts
                    .iter()
                    .find(|(k, _)| k == st.as_str())
                    .map_or(0, |(_, n)| *n);
                gauge(&[("status", st.as_str())], n as f64)
            })
            .collect(),
    ));

    // Liveness: processes that missed three heartbeats count as silent, never as alive.
    let mut by_worker: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for (p, alive) in &s.processes {
        let e = by_worker.entry(p.name.as_str()).or_default();
        if *alive {
            e.0 += 1;
        } else if p.state != "stopped" {
            e.1 += 1;
        }
    }
    let mut alive = Vec::new();
    let mut silent = Vec::new();
    for (w, (a, sl)) in &by_worker {
        alive.push(gauge(&[("worker", w)], *a as f64));
        silent.push(gauge(&[("worker", w)], *sl as f64));
    }
    fams.push(family(
        "wp_lite_worker_processes_alive",
        "Worker processes that reported within three heartbeat periods.",
        GAUGE,
        alive,
    ));
    fams.push(family(
        "wp_lite_worker_processes_silent",
        "Worker processes that stopped reporting without a clean stop (seen in the last day).",
        GAUGE,
        silent,
    ));

    fams.extend(local);
    fams.retain(|f| !f.get_metric().is_empty());
    let mut out = Vec::new();
    if TextEncoder::new().encode(&fams, &mut out).is_err() {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}
