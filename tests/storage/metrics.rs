//! Shared metric totals, broadcast telemetry numbers and worker process liveness rows.

use chrono::{DateTime, Duration, TimeZone, Utc};
use std::sync::Arc;
use wp_lite::domain::metrics::{BroadcastStats, MetricDeltas, StageTotals, STAGE_BUCKETS};
use wp_lite::domain::notify::{
    Attributes, Audience, Broadcast, BroadcastStatus, ChunkOutcome, NewUser, UserId,
};
use wp_lite::domain::WorkerProcess;
use wp_lite::storage::{self, OpenOptions, Store};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
}

fn counter(name: &str, label: &str, v: i64) -> (String, String, i64) {
    (name.into(), label.into(), v)
}

fn stage(name: &str, observations_ms: &[f64]) -> StageTotals {
    let mut s = StageTotals::new(name);
    for ms in observations_ms {
        s.observe(*ms);
    }
    s
}

conformance! {
    fn metric_deltas_add_up_across_flushes(b) {
        let s = &b.store;
        assert_eq!(s.metric_totals().unwrap(), Default::default(), "{}", b.name);
        s.add_metrics(&MetricDeltas::default()).unwrap();

        let first = MetricDeltas {
            counters: vec![
                counter("jobs_total", "ok", 2),
                counter("jobs_total", "failed", 1),
                // The same key twice in one flush adds both.
                counter("jobs_total", "ok", 3),
                counter("Zeta", "", 7),
            ],
            stages: vec![
                stage("deliver", &[3.0, 40.1, 0.1]),
                stage("claim", &[700.0]),
                // The same stage twice in one flush is merged in order.
                stage("deliver", &[0.2, 9_000_000.0]),
            ],
        };
        let mut wide = StageTotals::new("claim");
        wide.count = 2;
        wide.sum_ms = 0.3;
        // A longer bucket list than the stored one grows it.
        wide.buckets = vec![1; STAGE_BUCKETS.len() + 2];
        wide.buckets[0] = 0;
        let second = MetricDeltas {
            counters: vec![counter("jobs_total", "ok", 1), counter("alpha", "x", -4)],
            stages: vec![stage("deliver", &[2_000.0, 0.7]), wide.clone()],
        };
        s.add_metrics(&first).unwrap();
        s.add_metrics(&second).unwrap();

        // What SQLite's sequential read-merge-write gives, value for value.
        let merged = |name: &str, parts: &[&StageTotals]| {
            let mut t = StageTotals::new(name);
            for p in parts {
                t.add(p);
            }
            t
        };
        let totals = s.metric_totals().unwrap();
        assert_eq!(
            totals.counters,
            vec![
                // Bytewise order: upper case first.
                counter("Zeta", "", 7),
                counter("alpha", "x", -4),
                counter("jobs_total", "failed", 1),
                counter("jobs_total", "ok", 6),
            ],
            "{}",
            b.name
        );
        let expected = vec![
            merged("claim", &[&first.stages[1], &wide]),
            merged(
                "deliver",
                &[&first.stages[0], &first.stages[2], &second.stages[0]],
            ),
        ];
        assert_eq!(totals.stages, expected, "{}", b.name);
        assert_eq!(totals.stages[0].buckets.len(), STAGE_BUCKETS.len() + 2);
        assert_eq!(totals.stages[1].count, 7);
        assert_eq!(*totals.stages[1].buckets.last().unwrap(), 1, "+Inf bucket");
    }
}

conformance! {
    fn concurrent_flushes_from_two_nodes_lose_nothing(b) {
        let other = storage::open(&b.url, &OpenOptions { migrate: false }).unwrap();
        let nodes: [Arc<dyn Store>; 2] = [b.store.clone(), other.clone()];
        let handles: Vec<_> = (0..8)
            .map(|w| {
                let s = nodes[w % 2].clone();
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        // Keys in opposite orders on alternate writers.
                        let mut d = MetricDeltas {
                            counters: (0..6).map(|k| counter("c", &format!("k{k}"), 1)).collect(),
                            stages: (0..4).map(|k| stage(&format!("s{k}"), &[1.0])).collect(),
                        };
                        if w % 2 == 1 {
                            d.counters.reverse();
                            d.stages.reverse();
                        }
                        s.add_metrics(&d).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        other.close();
        let totals = b.store.metric_totals().unwrap();
        assert_eq!(totals.counters.len(), 6, "{}", b.name);
        assert!(totals.counters.iter().all(|c| c.2 == 160), "{}", b.name);
        assert_eq!(totals.stages.len(), 4);
        for st in &totals.stages {
            assert_eq!(
                (st.count, st.sum_ms, st.buckets[0]),
                (160, 160.0, 160),
                "{}",
                b.name
            );
        }
    }
}

fn broadcast(title: &str, status: BroadcastStatus, at: Option<DateTime<Utc>>) -> Broadcast {
    Broadcast {
        id: uuid::Uuid::now_v7(),
        title: title.into(),
        body: "b".into(),
        audience: Audience::AllUsers,
        status,
        created_by: "admin".into(),
        created_at: t0(),
        updated_at: t0(),
        scheduled_at: at,
        started_at: None,
        finished_at: None,
        total: 0,
        sent: 0,
        failed: 0,
        skipped: 0,
        last_error: None,
    }
}

conformance! {
    fn broadcast_stats_count_live_broadcasts_and_sum_every_delivery(b) {
        let s = &b.store;
        assert_eq!(
            s.broadcast_stats().unwrap(),
            BroadcastStats::default(),
            "{}",
            b.name
        );
        let users: Vec<NewUser> = (0..3)
            .map(|i| NewUser {
                id: UserId::parse("id", &format!("u{i}")).unwrap(),
                email: None,
                attributes: Attributes::default(),
                is_active: true,
            })
            .collect();
        s.upsert_users(users, t0()).unwrap();
        let sent = broadcast("sent", BroadcastStatus::Scheduled, Some(t0()));
        let gone = broadcast("deleted", BroadcastStatus::Draft, None);
        for x in [
            &sent,
            &gone,
            &broadcast("draft", BroadcastStatus::Draft, None),
            &broadcast(
                "later",
                BroadcastStatus::Scheduled,
                Some(t0() + Duration::days(1)),
            ),
        ] {
            s.create_broadcast(x).unwrap();
        }
        let lease = t0() + Duration::seconds(60);
        let claimed = s.claim_due_broadcasts("w", 10, lease, t0()).unwrap();
        assert_eq!(claimed.len(), 1, "{}", b.name);
        let mut finished = false;
        for _ in 0..10 {
            match s
                .deliver_broadcast_chunk(sent.id, "w", 100, lease, t0())
                .unwrap()
            {
                ChunkOutcome::Progress(_) => {}
                ChunkOutcome::Finished(_) => {
                    finished = true;
                    break;
                }
                ChunkOutcome::Stopped => panic!("stopped"),
            }
        }
        assert!(finished, "{}", b.name);
        s.delete_broadcast(gone.id, t0()).unwrap();
        let stats = s.broadcast_stats().unwrap();
        assert_eq!(
            stats,
            BroadcastStats {
                status_counts: vec![
                    ("draft".into(), 1),
                    ("scheduled".into(), 1),
                    ("sent".into(), 1)
                ],
                sent: 3,
                failed: 0,
                skipped: 0,
            },
            "{}",
            b.name
        );
    }
}

fn process(id: &str, beat: DateTime<Utc>) -> WorkerProcess {
    WorkerProcess {
        id: id.into(),
        name: format!("worker {id}"),
        host: "h1".into(),
        pid: 4_000_000_123,
        state: "running".into(),
        started_at: t0(),
        last_heartbeat_at: beat,
        last_tick_at: None,
        last_tick_ms: None,
        heartbeat_ms: 5_000,
    }
}

conformance! {
    fn worker_processes_are_recorded_and_listed_since(b) {
        let s = &b.store;
        assert!(s.list_worker_processes(t0()).unwrap().is_empty());
        s.record_worker_process(&process("p1", t0())).unwrap();
        s.record_worker_process(&process("p2", t0() + Duration::seconds(10)))
            .unwrap();
        s.record_worker_process(&process("old", t0() - Duration::hours(1)))
            .unwrap();
        // A later record updates state, heartbeat and ticks; identity fields stay.
        let mut p1 = process("p1", t0() + Duration::seconds(20));
        p1.state = "stopping".into();
        p1.name = "renamed".into();
        p1.host = "h2".into();
        p1.pid = 7;
        p1.started_at = t0() + Duration::seconds(20);
        p1.last_tick_at = Some(t0() + Duration::seconds(19));
        p1.last_tick_ms = Some(42);
        p1.heartbeat_ms = 1_000;
        s.record_worker_process(&p1).unwrap();

        let listed = s.list_worker_processes(t0()).unwrap();
        let expected_p1 = WorkerProcess {
            name: "worker p1".into(),
            host: "h1".into(),
            pid: 4_000_000_123,
            started_at: t0(),
            ..p1.clone()
        };
        assert_eq!(
            listed,
            vec![
                expected_p1.clone(),
                process("p2", t0() + Duration::seconds(10))
            ],
            "{}",
            b.name
        );
        // `since` is inclusive.
        let listed = s
            .list_worker_processes(t0() + Duration::seconds(20))
            .unwrap();
        assert_eq!(listed, vec![expected_p1], "{}", b.name);
        assert_eq!(
            s.list_worker_processes(t0() - Duration::days(1))
                .unwrap()
                .len(),
            3
        );
    }
}
