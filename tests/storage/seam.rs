//! The sync→async seam (`Db`): writes handed to the store's writer (`Db::write`) and reads on
//! the blocking pool (`Db::call`), on every backend.

use chrono::{TimeZone, Utc};
use serde_json::json;
use wp_lite::domain::{Enqueued, JobConflict, JobMeta, JobType, NewJob};
use wp_lite::storage::{Db, StoreError};

fn keyed(key: &str, input: serde_json::Value) -> NewJob {
    NewJob {
        id: None,
        job_type: JobType::parse("type", "seam.test").unwrap(),
        priority: 5,
        max_attempts: 3,
        available_at: None,
        meta: JobMeta {
            idempotency_key: Some(key.to_string()),
            ..JobMeta::default()
        },
        input,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

conformance! {
    fn concurrent_writes_are_each_answered_with_their_own_outcome_once_committed(b) {
        let db = Db::new(b.store.clone());
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        runtime().block_on(async {
            // One job per key first, so that half of the next writes conflict.
            for i in 0..50 {
                let new = keyed(&format!("k{i}"), json!({"i": i}));
                db.write(move |s| s.enqueue_jobs(vec![new], now))
                    .await
                    .unwrap();
            }
            // 200 writes at once share group commits: the same input replays, another
            // input conflicts, a new key is created — each answered as if alone.
            let mut calls = tokio::task::JoinSet::new();
            for i in 0..200usize {
                let db = db.clone();
                calls.spawn(async move {
                    let (key, input) = match i % 4 {
                        0 => (format!("k{}", i % 50), json!({"i": i % 50})),
                        1 => (format!("k{}", i % 50), json!({"other": i})),
                        _ => (format!("new{i}"), json!({"i": i})),
                    };
                    let new = keyed(&key, input);
                    (i, db.write(move |s| s.enqueue_jobs(vec![new], now)).await)
                });
            }
            let mut created = Vec::new();
            while let Some(done) = calls.join_next().await {
                let (i, res) = done.unwrap();
                match (i % 4, res) {
                    (0, Ok(v)) => assert!(matches!(v[0], Enqueued::Replayed(_)), "{}", b.name),
                    (1, Err(StoreError::Conflict(JobConflict::IdempotencyConflict))) => {}
                    (2 | 3, Ok(v)) => match &v[0] {
                        Enqueued::Created(j) => created.push(j.id),
                        other => panic!("{}: write {i} answered {other:?}", b.name),
                    },
                    (_, other) => panic!("{}: write {i} answered {other:?}", b.name),
                }
            }
            assert_eq!(created.len(), 100, "{}", b.name);
            // Answered means committed: a read on another connection finds every one.
            for id in created {
                let got = db.call(move |s| s.get_job(id)).await.unwrap();
                assert_eq!(got.id, id, "{}", b.name);
            }
        });
    }
}

conformance! {
    fn a_write_after_the_store_is_closed_fails_as_unavailable(b) {
        let db = Db::new(b.store.clone());
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        runtime().block_on(async {
            db.close().await;
            let new = keyed("after-close", json!({}));
            let res = db.write(move |s| s.enqueue_jobs(vec![new], now)).await;
            assert!(
                matches!(res, Err(StoreError::Unavailable(_))),
                "{}: {res:?}",
                b.name
            );
        });
    }
}
