//! Schedules and queue controls, on both backends: a due run taken once by any number of
//! nodes, overlap, triggers, and pause / `max_leased` honoured by every claim of every node.

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use wp_lite::domain::schedule::{
    run_key, Calendar, DueRun, Fired, JobTemplate, Overlap, ScheduleName, ScheduleSpec,
};
use wp_lite::domain::{Claim, JobFilter, JobMeta, JobStatus, JobType, NewJob, WorkerId};
use wp_lite::storage::{self, OpenOptions, Store, StoreError};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
}

fn spec(name: &str, cron: &str, job_type: &str, overlap: Overlap) -> ScheduleSpec {
    ScheduleSpec {
        name: ScheduleName::parse("name", name).unwrap(),
        cron: cron.into(),
        timezone: "UTC".into(),
        calendar: Calendar::parse(cron, "UTC").unwrap(),
        job: JobTemplate {
            job_type: job_type.into(),
            input: json!({"from": name}),
            priority: 5,
            max_attempts: 3,
            code_version: None,
            model_version: None,
            config_hash: None,
            cost_cap_eur: Some("1.50".into()),
            budget_tag: None,
        },
        enabled: true,
        overlap,
    }
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

fn claim(worker: &str, types: &[&str], limit: usize) -> Claim {
    Claim {
        worker_id: WorkerId::local(worker),
        types: types
            .iter()
            .map(|t| JobType::parse("t", t).unwrap())
            .collect(),
        limit,
        lease: Duration::seconds(60),
    }
}

/// Fires the schedule's current run as a maintenance tick at `now` would.
fn fire(s: &Arc<dyn Store>, name: &str, now: DateTime<Utc>) -> Fired {
    let name = ScheduleName::parse("name", name).unwrap();
    let sched = s.get_schedule(&name).unwrap();
    let run = sched.due_run(now).expect("a run is due");
    let job = sched
        .job
        .new_job(Some(run_key(&name, &run.run_at)))
        .unwrap();
    s.fire_schedule(&name, &run, job, now).unwrap()
}

conformance! {
    fn schedules_are_written_read_listed_replaced_and_deleted(b) {
        let s = &b.store;
        let (a, created) = s
            .put_schedule(&spec("hourly.a", "0 * * * *", "t", Overlap::Skip), t0())
            .unwrap();
        assert!(created, "{}", b.name);
        assert_eq!(a.next_run_at, Some(t0() + Duration::hours(1)));
        assert_eq!((a.runs_total, a.skipped_total), (0, 0));
        assert_eq!(a.job.cost_cap_eur.as_deref(), Some("1.50"));
        for n in ["b", "c", "d"] {
            s.put_schedule(&spec(n, "@every 10s", "t", Overlap::Allow), t0())
                .unwrap();
        }
        // Pages by name.
        let p1 = s.list_schedules(None, 2).unwrap();
        let names: Vec<&str> = p1.items.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["b", "c"], "{}", b.name);
        let p2 = s.list_schedules(p1.next_after.as_deref(), 2).unwrap();
        let names: Vec<&str> = p2.items.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["d", "hourly.a"]);
        assert_eq!(p2.next_after, None);

        // A run, then a replacement that keeps the calendar: counters and next run stay.
        assert!(matches!(
            fire(s, "hourly.a", t0() + Duration::minutes(61)),
            Fired::Enqueued(_)
        ));
        let mut changed = spec("hourly.a", "0 * * * *", "t2", Overlap::Allow);
        changed.job.input = json!({"v": 2});
        let (a2, created) = s
            .put_schedule(&changed, t0() + Duration::minutes(62))
            .unwrap();
        assert!(!created);
        assert_eq!(a2.runs_total, 1);
        assert_eq!(a2.next_run_at, Some(t0() + Duration::hours(2)));
        assert_eq!(a2.job.job_type, "t2");
        assert_eq!(a2.created_at, t0());
        assert!(a2.last_job_id.is_some());
        // A new calendar starts from now; disabled means no next run.
        let (a3, _) = s
            .put_schedule(
                &spec("hourly.a", "30 * * * *", "t", Overlap::Skip),
                t0() + Duration::minutes(62),
            )
            .unwrap();
        assert_eq!(a3.next_run_at, Some(t0() + Duration::minutes(90)));
        let mut off = spec("hourly.a", "30 * * * *", "t", Overlap::Skip);
        off.enabled = false;
        let (a4, _) = s.put_schedule(&off, t0() + Duration::minutes(63)).unwrap();
        assert_eq!(a4.next_run_at, None);
        assert!(s
            .due_schedules(t0() + Duration::days(1), 10)
            .unwrap()
            .iter()
            .all(|x| x.name.as_str() != "hourly.a"));

        let gone = ScheduleName::parse("n", "b").unwrap();
        s.delete_schedule(&gone).unwrap();
        assert!(matches!(s.get_schedule(&gone), Err(StoreError::NotFound)));
        assert!(matches!(
            s.delete_schedule(&gone),
            Err(StoreError::NotFound)
        ));
    }
}

conformance! {
    fn a_due_run_is_enqueued_once_however_many_nodes_take_it(b) {
        let nodes: Vec<Arc<dyn Store>> = vec![
            b.store.clone(),
            storage::open(&b.url, &OpenOptions { migrate: false }).unwrap(),
            storage::open(&b.url, &OpenOptions { migrate: false }).unwrap(),
        ];
        b.store
            .put_schedule(&spec("race", "* * * * *", "race.job", Overlap::Allow), t0())
            .unwrap();
        let name = ScheduleName::parse("n", "race").unwrap();
        let runs = 10;
        for i in 1..=runs {
            let now = t0() + Duration::minutes(i) + Duration::seconds(1);
            let sched = b.store.get_schedule(&name).unwrap();
            let run: DueRun = sched.due_run(now).expect("due");
            let barrier = Arc::new(Barrier::new(nodes.len()));
            let enqueued = Arc::new(AtomicUsize::new(0));
            std::thread::scope(|sc| {
                for node in &nodes {
                    let (node, barrier, enqueued) =
                        (node.clone(), barrier.clone(), enqueued.clone());
                    let (name, sched) = (name.clone(), sched.clone());
                    sc.spawn(move || {
                        let job = sched
                            .job
                            .new_job(Some(run_key(&name, &run.run_at)))
                            .unwrap();
                        barrier.wait();
                        match node.fire_schedule(&name, &run, job, now).unwrap() {
                            Fired::Enqueued(_) => {
                                enqueued.fetch_add(1, Ordering::SeqCst);
                            }
                            Fired::Taken => {}
                            Fired::Skipped => panic!("overlap allow never skips"),
                        }
                    });
                }
            });
            assert_eq!(enqueued.load(Ordering::SeqCst), 1, "{} run {i}", b.name);
        }
        let jobs = b
            .store
            .list_jobs(&JobFilter {
                status: None,
                job_type: Some(JobType::parse("t", "race.job").unwrap()),
                limit: 100,
                before_seq: None,
            })
            .unwrap()
            .items;
        assert_eq!(jobs.len(), runs as usize, "{}: one job per run", b.name);
        let mut keys: Vec<String> = jobs
            .iter()
            .map(|j| j.meta.idempotency_key.clone().unwrap())
            .collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), runs as usize);
        assert_eq!(
            b.store.get_schedule(&name).unwrap().runs_total,
            runs,
            "{}",
            b.name
        );
        for n in &nodes[1..] {
            n.close();
        }
    }
}

conformance! {
    fn overlap_skip_waits_for_the_previous_runs_job_and_trigger_runs_now(b) {
        let s = &b.store;
        s.put_schedule(&spec("skip", "@every 1m", "skip.job", Overlap::Skip), t0())
            .unwrap();
        s.put_schedule(
            &spec("allow", "@every 1m", "allow.job", Overlap::Allow),
            t0(),
        )
        .unwrap();
        let at = |m: i64| t0() + Duration::minutes(m) + Duration::seconds(5);
        let Fired::Enqueued(first) = fire(s, "skip", at(1)) else {
            panic!("{}: the first run enqueues", b.name)
        };
        // Queued: skipped.
        assert!(
            matches!(fire(s, "skip", at(2)), Fired::Skipped),
            "{}",
            b.name
        );
        // Leased: skipped.
        let leased = s.claim_jobs(&claim("w", &["skip.job"], 1), at(2)).unwrap();
        assert_eq!(leased[0].id, first.id);
        assert!(matches!(fire(s, "skip", at(3)), Fired::Skipped));
        // Finished: the next run enqueues.
        let fence = leased[0].fence(&WorkerId::local("w"));
        s.complete_job(first.id, &fence, None, at(3)).unwrap();
        assert!(matches!(fire(s, "skip", at(4)), Fired::Enqueued(_)));
        let skip = s
            .get_schedule(&ScheduleName::parse("n", "skip").unwrap())
            .unwrap();
        assert_eq!((skip.runs_total, skip.skipped_total), (2, 2), "{}", b.name);
        // Allow: every run enqueues while earlier jobs wait.
        for m in 1..=3 {
            assert!(matches!(fire(s, "allow", at(m)), Fired::Enqueued(_)));
        }

        // Trigger: a job now, counted as a run, the calendar untouched.
        let name = ScheduleName::parse("n", "allow").unwrap();
        let before = s.get_schedule(&name).unwrap();
        let manual = before.job.new_job(None).unwrap();
        let j = s.trigger_schedule(&name, manual, at(3)).unwrap();
        assert_eq!(j.status, JobStatus::Queued);
        assert_eq!(j.meta.idempotency_key, None);
        let after = s.get_schedule(&name).unwrap();
        assert_eq!(after.next_run_at, before.next_run_at);
        assert_eq!(after.runs_total, before.runs_total + 1);
        assert_eq!(after.last_job_id, Some(j.id));
        let missing = ScheduleName::parse("n", "missing").unwrap();
        assert!(matches!(
            s.trigger_schedule(&missing, job("x"), at(3)),
            Err(StoreError::NotFound)
        ));
    }
}

conformance! {
    fn queue_controls_are_kept_and_changed_field_by_field(b) {
        let s = &b.store;
        let c = s.set_queue_control("q", Some(true), None, t0()).unwrap();
        assert!(c.paused && c.max_leased.is_none(), "{}", b.name);
        let c = s.set_queue_control("q", None, Some(Some(3)), t0()).unwrap();
        assert!(c.paused, "setting a limit keeps the pause");
        assert_eq!(c.max_leased, Some(3));
        let c = s.set_queue_control("q", Some(false), None, t0()).unwrap();
        assert_eq!((c.paused, c.max_leased), (false, Some(3)));
        let c = s.set_queue_control("q", None, Some(None), t0()).unwrap();
        assert_eq!((c.paused, c.max_leased), (false, None));
        assert_eq!(s.queue_controls().unwrap().len(), 1);
    }
}

conformance! {
    fn a_paused_type_is_leased_by_no_node_until_resumed(b) {
        let s = &b.store;
        let other = storage::open(&b.url, &OpenOptions { migrate: false }).unwrap();
        s.enqueue_jobs((0..3).map(|_| job("paused.t")).collect(), t0())
            .unwrap();
        s.enqueue_jobs((0..2).map(|_| job("open.t")).collect(), t0())
            .unwrap();
        s.set_queue_control("paused.t", Some(true), None, t0())
            .unwrap();
        let now = t0() + Duration::seconds(1);
        // Any type: only the open one, on either node.
        let got = other.claim_jobs(&claim("w1", &[], 10), now).unwrap();
        assert_eq!(got.len(), 2, "{}", b.name);
        assert!(got.iter().all(|j| j.job_type.as_str() == "open.t"));
        assert!(s.claim_jobs(&claim("w2", &[], 10), now).unwrap().is_empty());
        assert!(other
            .claim_jobs(&claim("w3", &["paused.t"], 10), now)
            .unwrap()
            .is_empty());
        // Resumed: leased again.
        s.set_queue_control("paused.t", Some(false), None, now)
            .unwrap();
        let got = other
            .claim_jobs(&claim("w4", &["paused.t"], 10), now)
            .unwrap();
        assert_eq!(got.len(), 3, "{}", b.name);
        other.close();
    }
}

conformance! {
    /// 16 leasers on two nodes over 200 jobs of a type limited to 3: all done, and the event
    /// history never shows more than 3 leased at once. Event ids follow commit order closely
    /// enough for the check: a lease is written after the leased count it relied on was read,
    /// so a completion it counted always has a smaller id (the check can only under-count).
    fn max_leased_holds_for_concurrent_leasers_on_every_node(b) {
        let nodes: Vec<Arc<dyn Store>> = vec![
            b.store.clone(),
            storage::open(&b.url, &OpenOptions { migrate: false }).unwrap(),
        ];
        let total = 200;
        b.store
            .enqueue_jobs((0..total).map(|_| job("limited")).collect(), t0())
            .unwrap();
        b.store
            .enqueue_jobs((0..20).map(|_| job("free")).collect(), t0())
            .unwrap();
        b.store
            .set_queue_control("limited", None, Some(Some(3)), t0())
            .unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        let free_leased = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|sc| {
            for w in 0..16 {
                let node = nodes[w % 2].clone();
                let (done, free_leased) = (done.clone(), free_leased.clone());
                sc.spawn(move || {
                    let worker = format!("w{w}");
                    let mut idle = 0;
                    while done.load(Ordering::SeqCst) < total && idle < 20_000 {
                        let now = t0() + Duration::seconds(1);
                        // Half ask for any type, half for the limited one, 1 to 3 at a time.
                        let types: &[&str] = if w % 2 == 0 { &[] } else { &["limited"] };
                        let got = match node.claim_jobs(&claim(&worker, types, 1 + w % 3), now) {
                            Ok(g) => g,
                            Err(e) if e.is_transient() => continue,
                            Err(e) => panic!("claim: {e}"),
                        };
                        if got.is_empty() {
                            idle += 1;
                            std::thread::yield_now();
                            continue;
                        }
                        for j in got {
                            let fence = j.fence(&WorkerId::local(worker.as_str()));
                            node.complete_job(j.id, &fence, None, now).unwrap();
                            if j.job_type.as_str() == "limited" {
                                done.fetch_add(1, Ordering::SeqCst);
                            } else {
                                free_leased.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                });
            }
        });
        assert_eq!(
            done.load(Ordering::SeqCst),
            total,
            "{}: every job done",
            b.name
        );
        assert_eq!(free_leased.load(Ordering::SeqCst), 20, "{}", b.name);

        // Replay the history in event order.
        let mut events = Vec::new();
        let mut page = JobFilter {
            status: None,
            job_type: Some(JobType::parse("t", "limited").unwrap()),
            limit: 200,
            before_seq: None,
        };
        loop {
            let p = b.store.list_jobs(&page).unwrap();
            for j in &p.items {
                assert_eq!(j.status, JobStatus::Succeeded);
                for e in b.store.job_events(j.id).unwrap() {
                    events.push((e.id, e.event));
                }
            }
            match p.next_seq {
                Some(s) => page.before_seq = Some(s),
                None => break,
            }
        }
        events.sort();
        let (mut now, mut peak) = (0i64, 0i64);
        for (_, e) in &events {
            match e.as_str() {
                "leased" => now += 1,
                "succeeded" => now -= 1,
                _ => {}
            }
            peak = peak.max(now);
        }
        assert!(peak <= 3, "{}: {peak} leased at once", b.name);
        assert!(peak >= 1);
        eprintln!(
            "{}: at most {peak} of the limited type leased at once",
            b.name
        );
        nodes[1].close();
    }
}
