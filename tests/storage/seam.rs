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

/// A job with a chosen id and no idempotency key.
fn named(id: wp_lite::domain::JobId) -> NewJob {
    let mut new = keyed("", json!({}));
    new.id = Some(id);
    new.meta.idempotency_key = None;
    new
}

/// Queued jobs of the test type, from the kept counts.
async fn queued(db: &Db, now: chrono::DateTime<Utc>) -> i64 {
    let stats = db.call(move |s| s.queue_stats(now)).await.unwrap();
    stats
        .iter()
        .find(|s| s.job_type.as_str() == "seam.test")
        .map_or(0, |s| s.queued)
}

conformance! {
    /// Single enqueues run on the writer without a savepoint each: one refused in the
    /// middle of a group must write nothing and leave the others and the counts whole.
    fn refused_single_enqueues_sharing_a_commit_write_nothing(b) {
        let db = Db::new(b.store.clone());
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        runtime().block_on(async {
            let taken: Vec<_> = (0..20).map(|_| wp_lite::domain::JobId::new()).collect();
            for id in &taken {
                let new = named(*id);
                db.write(move |s| s.enqueue_jobs(vec![new], now)).await.unwrap();
            }
            let mut calls = tokio::task::JoinSet::new();
            for i in 0..200usize {
                let db = db.clone();
                let new = if i % 2 == 0 {
                    named(taken[i % 20])
                } else {
                    named(wp_lite::domain::JobId::new())
                };
                calls.spawn(async move {
                    (i, db.write(move |s| s.enqueue_jobs(vec![new], now)).await)
                });
            }
            let mut created = 0;
            while let Some(done) = calls.join_next().await {
                match done.unwrap() {
                    (i, Err(StoreError::Conflict(JobConflict::DuplicateJobId))) if i % 2 == 0 => {}
                    (i, Ok(v)) if i % 2 == 1 && matches!(v[0], Enqueued::Created(_)) => {
                        created += 1
                    }
                    (i, other) => panic!("{}: write {i} answered {other:?}", b.name),
                }
            }
            assert_eq!(created, 100, "{}", b.name);
            db.write(|s| s.fold_job_counts()).await.unwrap();
            assert_eq!(queued(&db, now).await, 120, "{}: the kept count", b.name);
        });
    }
}

conformance! {
    /// On the writer's thread each store call is atomic by itself: a batch refused by its
    /// last item writes none of its items, while writes sharing its commit go through.
    fn a_refused_batch_on_the_writer_writes_none_of_its_items(b) {
        let db = Db::new(b.store.clone());
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        runtime().block_on(async {
            let taken = wp_lite::domain::JobId::new();
            let first = named(taken);
            db.write(move |s| s.enqueue_jobs(vec![first], now)).await.unwrap();
            let mut calls = tokio::task::JoinSet::new();
            let fresh: Vec<_> = (0..10).map(|_| wp_lite::domain::JobId::new()).collect();
            for (i, id) in fresh.iter().enumerate() {
                let db = db.clone();
                let id = *id;
                calls.spawn(async move {
                    if i % 2 == 0 {
                        let batch = vec![named(id), named(taken)];
                        let res = db.write(move |s| s.enqueue_jobs(batch, now)).await;
                        assert!(
                            matches!(res, Err(StoreError::Conflict(JobConflict::DuplicateJobId))),
                            "{res:?}"
                        );
                    } else {
                        db.write(move |s| s.enqueue_jobs(vec![named(id)], now))
                            .await
                            .unwrap();
                    }
                });
            }
            while let Some(done) = calls.join_next().await {
                done.unwrap();
            }
            for (i, id) in fresh.into_iter().enumerate() {
                let got = db.call(move |s| s.get_job(id)).await;
                match (i % 2, got) {
                    (0, Err(StoreError::NotFound)) | (1, Ok(_)) => {}
                    (_, other) => panic!("{}: job {i}: {other:?}", b.name),
                }
            }
            db.write(|s| s.fold_job_counts()).await.unwrap();
            assert_eq!(queued(&db, now).await, 6, "{}: the kept count", b.name);
        });
    }
}

conformance! {
    /// A panic inside a write is an error for its caller only; a store call it made before
    /// the panic stays, as on every backend, and the writer goes on.
    fn a_panic_inside_a_write_fails_that_caller_only(b) {
        let db = Db::new(b.store.clone());
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        runtime().block_on(async {
            let before = wp_lite::domain::JobId::new();
            let caller = db.clone();
            let res = tokio::spawn(async move {
                caller
                    .write::<(), _>(move |s| {
                        s.enqueue_jobs(vec![named(before)], now)?;
                        panic!("a bug in a write")
                    })
                    .await
            })
            .await;
            // An error (SQLite, where the writer caught it) or the panic itself, resumed in
            // the caller (the blocking pool hands it back).
            assert!(!matches!(res, Ok(Ok(()))), "{}: {res:?}", b.name);
            // The writer goes on. The panicking caller heard back before its transaction
            // committed (its answer was dropped with the panic); once a later write is
            // answered, that transaction has committed too.
            let after = wp_lite::domain::JobId::new();
            db.write(move |s| s.enqueue_jobs(vec![named(after)], now))
                .await
                .unwrap();
            db.call(move |s| s.get_job(after)).await.unwrap();
            db.call(move |s| s.get_job(before)).await.unwrap();
        });
    }
}

conformance! {
    /// `Db::enqueue_one` and `Db::complete_one` (started on the writer with no thread
    /// waiting where the backend can, PostgreSQL; `Db::write` elsewhere) answer each call,
    /// concurrent ones included, as the blocking store call would: replays, conflicts and
    /// creations for enqueues; for completions, the live lease succeeds once and a wrong
    /// token, a repeat and an unknown job get what `complete_job` answers for them.
    fn quick_enqueues_and_completions_answer_as_the_blocking_calls_do(b) {
        use wp_lite::domain::{Claim, Fence, JobId, JobStatus, WorkerId};
        let db = Db::new(b.store.clone());
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        runtime().block_on(async {
            for i in 0..20 {
                let new = keyed(&format!("q{i}"), json!({"i": i}));
                db.enqueue_one(new, now).await.unwrap();
            }
            let mut calls = tokio::task::JoinSet::new();
            for i in 0..80usize {
                let db = db.clone();
                calls.spawn(async move {
                    let (key, input) = match i % 4 {
                        0 => (format!("q{}", i % 20), json!({"i": i % 20})),
                        1 => (format!("q{}", i % 20), json!({"other": i})),
                        _ => (format!("fresh{i}"), json!({"i": i})),
                    };
                    (i, db.enqueue_one(keyed(&key, input), now).await)
                });
            }
            let mut created = 0;
            while let Some(done) = calls.join_next().await {
                let (i, res) = done.unwrap();
                match (i % 4, res) {
                    (0, Ok(Enqueued::Replayed(_))) => {}
                    (1, Err(StoreError::Conflict(JobConflict::IdempotencyConflict))) => {}
                    (2 | 3, Ok(Enqueued::Created(_))) => created += 1,
                    (_, other) => panic!("{}: enqueue {i} answered {other:?}", b.name),
                }
            }
            assert_eq!(created, 40, "{}", b.name);

            let worker = WorkerId::local("seam-quick");
            let claim = Claim {
                worker_id: worker.clone(),
                types: vec![],
                limit: 60,
                lease: chrono::Duration::seconds(60),
            };
            let leased = db.write(move |s| s.claim_jobs(&claim, now)).await.unwrap();
            assert_eq!(leased.len(), 60, "{}", b.name);
            let mut calls = tokio::task::JoinSet::new();
            for (i, job) in leased.iter().enumerate() {
                let db = db.clone();
                let (id, mut fence) = (job.id, job.fence(&worker));
                if i % 3 == 1 {
                    fence = Fence {
                        lease_token: wp_lite::domain::worker_input::lease_token(Some(
                            "0".repeat(32),
                        ))
                        .unwrap(),
                        ..fence
                    };
                }
                calls.spawn(async move {
                    let quick = db.complete_one(id, fence.clone(), None, now).await;
                    let again = db.complete_one(id, fence.clone(), None, now).await;
                    let blocking = db
                        .write(move |s| s.complete_job(id, &fence, None, now))
                        .await;
                    (i, quick, again, blocking)
                });
            }
            while let Some(done) = calls.join_next().await {
                let (i, quick, again, blocking) = done.unwrap();
                let n = b.name;
                if i % 3 == 1 {
                    assert!(matches!(quick, Err(StoreError::Conflict(_))), "{n}: {quick:?}");
                } else {
                    assert_eq!(quick.unwrap().status, JobStatus::Succeeded, "{n}");
                }
                assert_eq!(format!("{again:?}"), format!("{blocking:?}"), "{n}: call {i}");
                assert!(again.is_err(), "{n}: a repeat completed again: {again:?}");
            }
            let unknown = db
                .complete_one(JobId::new(), leased[0].fence(&worker), None, now)
                .await;
            let id = JobId::new();
            let fence = leased[0].fence(&worker);
            let blocking = db
                .write(move |s| s.complete_job(id, &fence, None, now))
                .await;
            assert_eq!(format!("{unknown:?}"), format!("{blocking:?}"), "{}", b.name);
        });
    }
}

conformance! {
    /// `Db::claim` (started on the writer where the backend can) leases each ready job to
    /// exactly one of many concurrent callers, answers only once the lease has committed,
    /// keeps to the claim's types, and answers an empty list when nothing is left.
    fn concurrent_quick_claims_lease_each_job_once(b) {
        use wp_lite::domain::{Claim, JobStatus, JobType, WorkerId};
        let db = Db::new(b.store.clone());
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        runtime().block_on(async {
            for _ in 0..30 {
                db.enqueue_one(named(wp_lite::domain::JobId::new()), now)
                    .await
                    .unwrap();
            }
            let mut calls = tokio::task::JoinSet::new();
            for i in 0..50usize {
                let db = db.clone();
                calls.spawn(async move {
                    let job_type = if i % 5 == 4 { "seam.other" } else { "seam.test" };
                    let claim = Claim {
                        worker_id: WorkerId::local(format!("w{i}")),
                        types: vec![JobType::parse("type", job_type).unwrap()],
                        limit: 1,
                        lease: chrono::Duration::seconds(60),
                    };
                    (i, db.claim(claim, now).await.unwrap())
                });
            }
            let mut leased = std::collections::HashSet::new();
            while let Some(done) = calls.join_next().await {
                let (i, jobs) = done.unwrap();
                assert!(jobs.len() <= 1, "{}: claim {i} got {}", b.name, jobs.len());
                if i % 5 == 4 {
                    assert!(jobs.is_empty(), "{}: another type's claim leased", b.name);
                }
                for j in jobs {
                    assert_eq!(j.status, JobStatus::Leased, "{}", b.name);
                    assert_eq!(j.lease_owner, Some(format!("w{i}")), "{}", b.name);
                    assert!(leased.insert(j.id), "{}: job leased twice", b.name);
                    // Answered means committed: another connection sees the lease.
                    let got = db.call(move |s| s.get_job(j.id)).await.unwrap();
                    assert_eq!(got.status, JobStatus::Leased, "{}", b.name);
                }
            }
            assert_eq!(leased.len(), 30, "{}", b.name);
            let claim = Claim {
                worker_id: WorkerId::local("late"),
                types: vec![],
                limit: 10,
                lease: chrono::Duration::seconds(60),
            };
            assert!(db.claim(claim, now).await.unwrap().is_empty(), "{}", b.name);
        });
    }
}
