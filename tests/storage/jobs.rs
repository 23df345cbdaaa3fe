use crate::each_backend;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;
use std::collections::HashSet;
use wp_lite::domain::{
    Claim, Enqueued, Failure, Fence, JobConflict, JobFilter, JobId, JobMeta, JobStatus, JobType,
    NewJob,
};
use wp_lite::storage::StoreError;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
}

fn job(t: &str) -> NewJob {
    NewJob {
        id: None,
        job_type: JobType::parse("type", t).unwrap(),
        priority: 5,
        max_attempts: 3,
        available_at: None,
        meta: JobMeta::default(),
        input: json!({}),
    }
}

fn claim(worker: &str, limit: usize) -> Claim {
    Claim {
        worker_id: worker.into(),
        types: vec![],
        limit,
        lease: Duration::seconds(60),
    }
}

fn fence(worker: &str, token: Option<&str>) -> Fence {
    Fence {
        worker_id: worker.into(),
        lease_token: token.map(String::from),
    }
}

fn conflict(r: Result<impl std::fmt::Debug, StoreError>) -> JobConflict {
    match r {
        Err(StoreError::Conflict(c)) => c,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[test]
fn enqueue_get_and_idempotency() {
    each_backend(|b| {
        let s = &b.store;
        let mut a = job("email");
        a.meta.idempotency_key = Some("k".into());
        a.input = json!({"x": 1, "y": [1, 2]});
        let out = s.enqueue_jobs(vec![a.clone()], t0()).unwrap();
        let Enqueued::Created(created) = &out[0] else {
            panic!("created")
        };
        assert_eq!(s.get_job(created.id).unwrap(), *created, "{}", b.name);
        // Equal input (numbers by value, other key order) replays.
        let mut again = a.clone();
        again.input = json!({"y": [1.0, 2], "x": 1.0});
        let out = s.enqueue_jobs(vec![again], t0()).unwrap();
        assert!(matches!(&out[0], Enqueued::Replayed(j) if j.id == created.id));
        // A different input conflicts; the same key on another type is independent.
        let mut other = a.clone();
        other.input = json!({"x": 2});
        assert_eq!(
            conflict(s.enqueue_jobs(vec![other], t0())),
            JobConflict::IdempotencyConflict
        );
        let mut other_type = a.clone();
        other_type.job_type = JobType::parse("type", "sms").unwrap();
        assert!(matches!(
            s.enqueue_jobs(vec![other_type], t0()).unwrap()[0],
            Enqueued::Created(_)
        ));
        // Duplicate ids conflict; unknown ids are not found.
        let mut d = job("email");
        d.id = Some(created.id);
        assert_eq!(
            conflict(s.enqueue_jobs(vec![d], t0())),
            JobConflict::DuplicateJobId
        );
        assert!(matches!(s.get_job(JobId::new()), Err(StoreError::NotFound)));
    });
}

#[test]
fn batches_are_all_or_nothing() {
    each_backend(|b| {
        let s = &b.store;
        let id = JobId::new();
        let mut first = job("a");
        first.id = Some(id);
        let mut dup = job("a");
        dup.id = Some(id);
        assert_eq!(
            conflict(s.enqueue_jobs(vec![job("a"), first, dup], t0())),
            JobConflict::DuplicateJobId
        );
        let page = s
            .list_jobs(&JobFilter {
                limit: 50,
                ..Default::default()
            })
            .unwrap();
        assert!(
            page.items.is_empty(),
            "{}: a failed batch left jobs behind",
            b.name
        );
    });
}

#[test]
fn claims_follow_priority_then_time_and_skip_delayed_jobs() {
    each_backend(|b| {
        let s = &b.store;
        let mut low = job("a");
        low.priority = 9;
        let mut high = job("a");
        high.priority = 1;
        let mut delayed = job("a");
        delayed.priority = 0;
        delayed.available_at = Some(t0() + Duration::seconds(30));
        let other = job("b");
        s.enqueue_jobs(vec![low], t0()).unwrap();
        s.enqueue_jobs(vec![high], t0() + Duration::milliseconds(1))
            .unwrap();
        s.enqueue_jobs(vec![delayed, other], t0() + Duration::milliseconds(2))
            .unwrap();
        let now = t0() + Duration::seconds(1);
        let mut c = claim("w", 10);
        c.types = vec![JobType::parse("t", "a").unwrap()];
        let got = s.claim_jobs(&c, now).unwrap();
        assert_eq!(
            got.iter().map(|j| j.priority).collect::<Vec<_>>(),
            vec![1, 9],
            "{}",
            b.name
        );
        for j in &got {
            assert_eq!(j.status, JobStatus::Leased);
            assert_eq!(j.attempts, 1);
            assert_eq!(j.lease_owner.as_deref(), Some("w"));
            assert!(j.lease_token.as_deref().is_some_and(|t| t.len() >= 16));
        }
        assert_ne!(got[0].lease_token, got[1].lease_token);
        // The delayed job comes due later; type b is untouched by a type-a claim.
        assert!(s.claim_jobs(&c, now).unwrap().is_empty());
        let later = s.claim_jobs(&c, t0() + Duration::seconds(31)).unwrap();
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].priority, 0);
        assert_eq!(s.claim_jobs(&claim("w", 10), now).unwrap().len(), 1);
    });
}

#[test]
fn fencing_heartbeat_complete_and_fail() {
    each_backend(|b| {
        let s = &b.store;
        s.enqueue_jobs(vec![job("a"), job("a")], t0()).unwrap();
        let got = s.claim_jobs(&claim("w", 2), t0()).unwrap();
        let (j1, j2) = (&got[0], &got[1]);
        let tok = j1.lease_token.as_deref();
        assert_eq!(
            conflict(s.complete_job(j1.id, &fence("other", None), None, t0())),
            JobConflict::NotLeased
        );
        assert_eq!(
            conflict(s.complete_job(j1.id, &fence("w", Some("bad")), None, t0())),
            JobConflict::LeaseLost
        );
        // Heartbeats move the lease and coalesce into one event row.
        for i in 1..=5 {
            let until = t0() + Duration::seconds(60 + i);
            let h = s
                .heartbeat_job(j1.id, &fence("w", tok), until, t0() + Duration::seconds(i))
                .unwrap();
            assert_eq!(h.lease_until, Some(until));
        }
        let events = s.job_events(j1.id).unwrap();
        let beats: Vec<_> = events.iter().filter(|e| e.event == "heartbeat").collect();
        assert_eq!(beats.len(), 1, "{}: {events:?}", b.name);
        assert_eq!(beats[0].details.as_ref().unwrap()["count"], 5);
        let done = s
            .complete_job(j1.id, &fence("w", tok), Some(json!({"ok": true})), t0())
            .unwrap();
        assert_eq!(done.status, JobStatus::Succeeded);
        assert_eq!(done.result, Some(json!({"ok": true})));
        assert_eq!(
            conflict(s.complete_job(j1.id, &fence("w", tok), None, t0())),
            JobConflict::NotLeased
        );
        // A retryable failure requeues with backoff; the event history says so.
        let failure = Failure {
            error: "boom".into(),
            retryable: true,
            details: None,
            jitter: 0.0,
        };
        let f = s
            .fail_job(j2.id, &fence("w", None), &failure, t0())
            .unwrap();
        assert_eq!(f.status, JobStatus::Queued);
        assert_eq!(f.available_at, t0() + Duration::seconds(30));
        assert_eq!(f.last_error.as_deref(), Some("boom"));
        let names: Vec<String> = s
            .job_events(j2.id)
            .unwrap()
            .into_iter()
            .map(|e| e.event)
            .collect();
        assert_eq!(names, ["queued", "leased", "failed", "requeued"]);
        // A non-retryable failure is final and keeps the details.
        let again = s
            .claim_jobs(&claim("w", 1), t0() + Duration::seconds(31))
            .unwrap();
        let fatal = Failure {
            error: "bad".into(),
            retryable: false,
            details: Some(json!({"k": 1})),
            jitter: 0.0,
        };
        let f = s
            .fail_job(
                again[0].id,
                &fence("w", None),
                &fatal,
                t0() + Duration::seconds(31),
            )
            .unwrap();
        assert_eq!(f.status, JobStatus::Failed);
        assert_eq!(f.result.unwrap()["details"]["k"], 1);
    });
}

#[test]
fn expired_leases_are_reclaimed_and_fenced() {
    each_backend(|b| {
        let s = &b.store;
        let mut last = job("a");
        last.max_attempts = 1;
        s.enqueue_jobs(vec![job("a")], t0()).unwrap();
        s.enqueue_jobs(vec![last], t0() + Duration::milliseconds(1))
            .unwrap();
        let at = t0() + Duration::seconds(1);
        let got = s.claim_jobs(&claim("w", 2), at).unwrap();
        assert_eq!(got.len(), 2, "{}", b.name);
        // The leases (60 s) end at t0 + 61 s.
        assert!(s
            .reclaim_expired_leases(t0() + Duration::seconds(60), 10)
            .unwrap()
            .is_empty());
        let back = s
            .reclaim_expired_leases(t0() + Duration::seconds(62), 10)
            .unwrap();
        assert_eq!(back.len(), 2, "{}", b.name);
        let j = s.get_job(got[0].id).unwrap();
        assert_eq!(j.status, JobStatus::Queued);
        assert_eq!(j.last_error.as_deref(), Some("lease_expired"));
        assert_eq!(s.get_job(got[1].id).unwrap().status, JobStatus::Failed);
        let tok = got[0].lease_token.as_deref();
        let late = s.complete_job(
            got[0].id,
            &fence("w", tok),
            None,
            t0() + Duration::seconds(63),
        );
        assert_eq!(conflict(late), JobConflict::LeaseLost);
        let stats = s.queue_stats(t0() + Duration::seconds(63)).unwrap();
        assert_eq!(stats[0].leases_expired_total, 2);
        assert_eq!(stats[0].queued, 1);
        assert_eq!(stats[0].failed, 1);
    });
}

#[test]
fn cancel_retry_and_release() {
    each_backend(|b| {
        let s = &b.store;
        s.enqueue_jobs(vec![job("a")], t0()).unwrap();
        let j = s.claim_jobs(&claim("w", 1), t0()).unwrap().remove(0);
        let c = s.cancel_job(j.id, t0()).unwrap();
        assert_eq!(c.status, JobStatus::Canceled);
        assert_eq!(
            conflict(s.heartbeat_job(j.id, &fence("w", None), t0(), t0())),
            JobConflict::Canceled
        );
        assert_eq!(
            conflict(s.cancel_job(j.id, t0())),
            JobConflict::InvalidStatus
        );
        let r = s.retry_job(j.id, t0()).unwrap();
        assert_eq!(
            (r.status, r.attempts, r.max_attempts),
            (JobStatus::Queued, 1, 3)
        );
        assert_eq!(
            conflict(s.retry_job(j.id, t0())),
            JobConflict::InvalidStatus
        );
        let again = s.claim_jobs(&claim("w", 1), t0()).unwrap().remove(0);
        assert_eq!(again.attempts, 2);
        let rel = s
            .release_job(again.id, &fence("w", again.lease_token.as_deref()), t0())
            .unwrap();
        assert_eq!(
            (rel.status, rel.attempts),
            (JobStatus::Queued, 1),
            "{}",
            b.name
        );
    });
}

#[test]
fn listing_pages_newest_first_and_prune_respects_retention() {
    each_backend(|b| {
        let s = &b.store;
        for i in 0..7 {
            s.enqueue_jobs(vec![job("a")], t0() + Duration::milliseconds(i))
                .unwrap();
        }
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = s
                .list_jobs(&JobFilter {
                    limit: 3,
                    before_seq: before,
                    ..Default::default()
                })
                .unwrap();
            seen.extend(page.items.iter().map(|j| j.created_at));
            match page.next_seq {
                Some(n) => before = Some(n),
                None => break,
            }
        }
        assert_eq!(seen.len(), 7, "{}", b.name);
        assert!(seen.windows(2).all(|w| w[0] >= w[1]), "newest first");
        let at = t0() + Duration::seconds(1);
        let done = s.claim_jobs(&claim("w", 2), at).unwrap();
        assert_eq!(done.len(), 2);
        for j in &done {
            s.complete_job(j.id, &fence("w", None), None, at).unwrap();
        }
        let filtered = s
            .list_jobs(&JobFilter {
                limit: 50,
                status: Some(JobStatus::Succeeded),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(filtered.items.len(), 2);
        assert_eq!(s.prune_finished_jobs(at, 100).unwrap(), 0);
        assert_eq!(
            s.prune_finished_jobs(at + Duration::seconds(1), 1).unwrap(),
            1
        );
        assert_eq!(
            s.prune_finished_jobs(at + Duration::seconds(1), 100)
                .unwrap(),
            1
        );
        assert!(matches!(
            s.job_events(done[0].id),
            Err(StoreError::NotFound)
        ));
        assert_eq!(s.ready_job_ids(at, 100).unwrap().len(), 5);
    });
}

#[test]
fn concurrent_claims_never_hand_out_a_job_twice() {
    each_backend(|b| {
        let s = b.store.clone();
        let batch: Vec<NewJob> = (0..500).map(|_| job("c")).collect();
        s.enqueue_jobs(batch, t0()).unwrap();
        let handles: Vec<_> = (0..6)
            .map(|w| {
                let s = s.clone();
                std::thread::spawn(move || {
                    let mut ids = Vec::new();
                    loop {
                        let got = s.claim_jobs(&claim(&format!("w{w}"), 7), t0()).unwrap();
                        if got.is_empty() {
                            return ids;
                        }
                        ids.extend(got.into_iter().map(|j| j.id));
                    }
                })
            })
            .collect();
        let all: Vec<JobId> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let unique: HashSet<_> = all.iter().collect();
        assert_eq!(all.len(), 500, "{}", b.name);
        assert_eq!(unique.len(), 500);
    });
}
