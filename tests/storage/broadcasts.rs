use crate::{each_backend, Backend};
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;
use wp_lite::domain::notify::{
    Attributes, Audience, Broadcast, BroadcastDraft, BroadcastFilter, BroadcastStatus,
    ChunkOutcome, Condition, NewUser, UserId,
};
use wp_lite::domain::JobConflict;
use wp_lite::storage::{self, OpenOptions, Store, StoreError};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
}

fn uid(s: &str) -> UserId {
    UserId::parse("u", s).unwrap()
}

fn user(id: &str, attrs: Value, active: bool) -> NewUser {
    let Value::Object(m) = attrs else {
        panic!("attributes are an object")
    };
    NewUser {
        id: uid(id),
        email: Some(format!("{id}@example.com")),
        attributes: Attributes(m),
        is_active: active,
    }
}

fn broadcast(title: &str, audience: Audience, scheduled_at: Option<DateTime<Utc>>) -> Broadcast {
    Broadcast {
        id: uuid::Uuid::now_v7(),
        title: title.into(),
        body: format!("body of {title}"),
        audience,
        status: if scheduled_at.is_some() {
            BroadcastStatus::Scheduled
        } else {
            BroadcastStatus::Draft
        },
        created_by: "admin".into(),
        created_at: t0(),
        updated_at: t0(),
        scheduled_at,
        started_at: None,
        finished_at: None,
        total: 0,
        sent: 0,
        failed: 0,
        skipped: 0,
        last_error: None,
    }
}

fn conflict<T: std::fmt::Debug>(r: Result<T, StoreError>) -> JobConflict {
    match r {
        Err(StoreError::Conflict(c)) => c,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

fn filter(statuses: Vec<BroadcastStatus>, q: Option<&str>) -> BroadcastFilter {
    BroadcastFilter {
        statuses,
        q: q.map(String::from),
        limit: 50,
        offset: 0,
    }
}

/// Delivers in chunks of `chunk` until finished; returns the broadcast and how many
/// `Progress` steps it took.
fn deliver_all(
    s: &Arc<dyn Store>,
    id: uuid::Uuid,
    owner: &str,
    chunk: usize,
) -> (Broadcast, usize) {
    let now = t0() + Duration::seconds(1);
    let mut steps = 0;
    loop {
        match s
            .deliver_broadcast_chunk(id, owner, chunk, now + Duration::seconds(60), now)
            .unwrap()
        {
            ChunkOutcome::Progress(b) => {
                assert_eq!(b.status, BroadcastStatus::Sending);
                steps += 1;
                assert!(steps < 1000, "delivery does not end");
            }
            ChunkOutcome::Finished(b) => return (b, steps),
            ChunkOutcome::Stopped => panic!("stopped"),
        }
    }
}

/// Ten users: u01..u10; u04 inactive, u07 deleted; attributes for segments.
fn seed_users(s: &Arc<dyn Store>) {
    let users = (1..=10)
        .map(|i| {
            let plan = match i % 3 {
                0 => "pro",
                1 => "free",
                _ => "team",
            };
            // n: an integer, a float equal to it, or the same digits as a string.
            let n = match i {
                1 | 2 => json!(3),
                3 => json!(3.0),
                5 => json!("3"),
                _ => json!(i),
            };
            user(
                &format!("u{i:02}"),
                json!({"plan": plan, "n": n, "beta": i % 2 == 0}),
                i != 4,
            )
        })
        .collect();
    assert_eq!(s.upsert_users(users, t0()).unwrap(), 10);
    s.delete_user(&uid("u07"), t0()).unwrap();
}

/// Users that hold `id` in their inbox, each exactly once.
fn receivers(s: &Arc<dyn Store>, id: uuid::Uuid) -> Vec<String> {
    let mut out = Vec::new();
    for i in 1..=10 {
        let u = uid(&format!("u{i:02}"));
        let page = s.inbox_page(&u, 100, 0).unwrap();
        let n = page
            .items
            .iter()
            .filter(|it| it.broadcast_id.as_deref() == Some(id.to_string().as_str()))
            .count();
        assert!(n <= 1, "{} got broadcast {id} {n} times", u.as_str());
        if n == 1 {
            out.push(u.as_str().to_string());
        }
    }
    out
}

conformance! {
    fn broadcast_create_replace_schedule_cancel_delete(b) {
        let s = &b.store;
        let name = b.name;
        let draft = broadcast("Hello", Audience::AllUsers, None);
        s.create_broadcast(&draft).unwrap();
        assert_eq!(s.get_broadcast(draft.id).unwrap(), draft, "{name}");
        assert!(matches!(
            s.get_broadcast(uuid::Uuid::now_v7()),
            Err(StoreError::NotFound)
        ));

        // Replace: content, audience (explicit list kept in order) and schedule.
        let later = t0() + Duration::hours(1);
        let explicit = Audience::ExplicitUsers(vec![uid("b"), uid("a")]);
        let replaced = s
            .replace_broadcast(
                draft.id,
                &BroadcastDraft {
                    title: "Hello again".into(),
                    body: "new body".into(),
                    audience: explicit.clone(),
                    scheduled_at: Some(later),
                },
                t0() + Duration::seconds(5),
            )
            .unwrap();
        assert_eq!(replaced.status, BroadcastStatus::Scheduled, "{name}");
        assert_eq!(replaced.audience, explicit);
        assert_eq!(replaced.title, "Hello again");
        assert_eq!(replaced.scheduled_at, Some(later));
        assert_eq!(replaced.updated_at, t0() + Duration::seconds(5));
        assert_eq!(s.get_broadcast(draft.id).unwrap(), replaced);
        // Replacing without a schedule makes it a draft again.
        let back = s
            .replace_broadcast(
                draft.id,
                &BroadcastDraft {
                    title: "Hello again".into(),
                    body: "new body".into(),
                    audience: Audience::AllUsers,
                    scheduled_at: None,
                },
                t0() + Duration::seconds(6),
            )
            .unwrap();
        assert_eq!(
            (back.status, back.scheduled_at),
            (BroadcastStatus::Draft, None)
        );

        // Schedule (and schedule again: allowed from scheduled).
        let sched = s
            .schedule_broadcast(draft.id, later, t0() + Duration::seconds(7))
            .unwrap();
        assert_eq!(sched.status, BroadcastStatus::Scheduled);
        let sched = s
            .schedule_broadcast(draft.id, later + Duration::hours(1), t0())
            .unwrap();
        assert_eq!(sched.scheduled_at, Some(later + Duration::hours(1)));

        // A scheduled broadcast cannot be deleted; it can be cancelled, then deleted.
        assert_eq!(
            conflict(s.delete_broadcast(draft.id, t0())),
            JobConflict::InvalidStatus
        );
        let cancelled = s
            .cancel_broadcast(draft.id, t0() + Duration::seconds(8))
            .unwrap();
        assert_eq!(cancelled.status, BroadcastStatus::Cancelled);
        assert_eq!(cancelled.finished_at, Some(t0() + Duration::seconds(8)));
        // A cancelled broadcast cannot be edited, scheduled or cancelled again.
        assert_eq!(
            conflict(s.schedule_broadcast(draft.id, later, t0())),
            JobConflict::InvalidStatus
        );
        assert_eq!(
            conflict(s.replace_broadcast(
                draft.id,
                &BroadcastDraft {
                    title: "x".into(),
                    body: "y".into(),
                    audience: Audience::AllUsers,
                    scheduled_at: None,
                },
                t0()
            )),
            JobConflict::InvalidStatus
        );
        assert_eq!(
            conflict(s.cancel_broadcast(draft.id, t0())),
            JobConflict::InvalidStatus
        );

        // List: newest first, per-status counts under q, q across title/body/author.
        let other = broadcast("Sale_50%", Audience::AllUsers, None);
        s.create_broadcast(&other).unwrap();
        let due = broadcast("Weekly", Audience::AllUsers, Some(later));
        s.create_broadcast(&due).unwrap();
        let page = s.list_broadcasts(&filter(vec![], None)).unwrap();
        let ids: Vec<_> = page.items.iter().map(|x| x.id).collect();
        assert_eq!(ids, vec![due.id, other.id, draft.id], "{name}");
        assert_eq!(page.total, 3);
        let count = |st| {
            page.status_counts
                .iter()
                .find(|(x, _)| *x == st)
                .map(|(_, n)| *n)
                .unwrap()
        };
        assert_eq!(count(BroadcastStatus::Draft), 1);
        assert_eq!(count(BroadcastStatus::Scheduled), 1);
        assert_eq!(count(BroadcastStatus::Cancelled), 1);
        assert_eq!(count(BroadcastStatus::Sent), 0);
        let page = s
            .list_broadcasts(&filter(
                vec![BroadcastStatus::Draft, BroadcastStatus::Cancelled],
                None,
            ))
            .unwrap();
        assert_eq!(page.total, 2);
        assert_eq!(
            page.items.iter().map(|x| x.id).collect::<Vec<_>>(),
            vec![other.id, draft.id]
        );
        // q is case-insensitive and its % and _ are literal.
        let page = s
            .list_broadcasts(&filter(vec![], Some("sale_50%")))
            .unwrap();
        assert_eq!(page.total, 1, "{name}");
        assert_eq!(page.items[0].id, other.id);
        assert_eq!(
            s.list_broadcasts(&filter(vec![], Some("le_5")))
                .unwrap()
                .total,
            1
        );
        // As a wildcard, _ would match "Hello again".
        assert_eq!(
            s.list_broadcasts(&filter(vec![], Some("o_a")))
                .unwrap()
                .total,
            0
        );
        let page = s.list_broadcasts(&filter(vec![], Some("BODY OF"))).unwrap();
        assert_eq!(page.total, 2);
        assert_eq!(
            s.list_broadcasts(&filter(vec![], Some("ADMIN")))
                .unwrap()
                .total,
            3
        );
        let paged = s
            .list_broadcasts(&BroadcastFilter {
                statuses: vec![],
                q: None,
                limit: 1,
                offset: 1,
            })
            .unwrap();
        assert_eq!(
            (paged.total, paged.items.len(), paged.items[0].id),
            (3, 1, other.id)
        );

        // Deleting: gone from get and list; again is not found.
        s.delete_broadcast(draft.id, t0()).unwrap();
        assert!(matches!(
            s.get_broadcast(draft.id),
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            s.delete_broadcast(draft.id, t0()),
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            s.cancel_broadcast(draft.id, t0()),
            Err(StoreError::NotFound)
        ));
        s.delete_broadcast(other.id, t0()).unwrap();
        let page = s.list_broadcasts(&filter(vec![], None)).unwrap();
        assert_eq!(
            (page.total, page.items.len(), page.items[0].id),
            (1, 1, due.id)
        );
    }
}

conformance! {
    fn broadcast_claims_are_exclusive_and_expired_claims_are_taken_over(b) {
        let s = &b.store;
        let name = b.name;
        seed_users(s);
        let future = broadcast("Later", Audience::AllUsers, Some(t0() + Duration::hours(1)));
        s.create_broadcast(&future).unwrap();
        s.create_broadcast(&broadcast("Draft", Audience::AllUsers, None))
            .unwrap();
        let due = broadcast("Now", Audience::AllUsers, Some(t0()));
        s.create_broadcast(&due).unwrap();
        let lease = t0() + Duration::seconds(60);

        let got = s.claim_due_broadcasts("a", 10, lease, t0()).unwrap();
        assert_eq!(got.len(), 1, "{name}");
        let claimed = &got[0];
        assert_eq!(claimed.id, due.id);
        assert_eq!(claimed.status, BroadcastStatus::Sending);
        assert_eq!(claimed.started_at, Some(t0()));
        // The audience is fixed at the claim: 8 active, undeleted users.
        assert_eq!(claimed.total, 8, "{name}");
        // Nobody else gets it while the claim holds.
        assert!(s
            .claim_due_broadcasts("b", 10, lease, t0() + Duration::seconds(59))
            .unwrap()
            .is_empty());
        // The owner delivers a chunk.
        let now = t0() + Duration::seconds(1);
        let ChunkOutcome::Progress(p) = s
            .deliver_broadcast_chunk(due.id, "a", 3, lease, now)
            .unwrap()
        else {
            panic!("progress")
        };
        assert_eq!(p.sent, 3);
        // Another owner cannot deliver or fail it.
        assert_eq!(
            s.deliver_broadcast_chunk(due.id, "b", 3, lease, now)
                .unwrap(),
            ChunkOutcome::Stopped
        );
        assert!(s
            .fail_broadcast(due.id, "b", "boom", now)
            .unwrap()
            .is_none());

        // The claim expires: another owner takes it over and resumes at the cursor.
        let later = t0() + Duration::seconds(61);
        let got = s
            .claim_due_broadcasts("b", 10, later + Duration::seconds(60), later)
            .unwrap();
        assert_eq!(got.len(), 1, "{name}");
        assert_eq!(got[0].id, due.id);
        assert_eq!(
            (got[0].started_at, got[0].total, got[0].sent),
            (Some(t0()), 8, 3)
        );
        // The former owner is stopped; its chunk (re-run) delivers nothing.
        assert_eq!(
            s.deliver_broadcast_chunk(due.id, "a", 3, lease, later)
                .unwrap(),
            ChunkOutcome::Stopped
        );
        let (done, _) = deliver_all(s, due.id, "b", 3);
        assert_eq!(done.status, BroadcastStatus::Sent, "{name}");
        assert_eq!(
            (done.total, done.sent, done.skipped, done.failed),
            (8, 8, 0, 0)
        );
        assert!(done.finished_at.is_some());
        assert_eq!(receivers(s, due.id).len(), 8);
        // Finished broadcasts are claimed no more; the future one when it is due.
        assert!(s
            .claim_due_broadcasts("c", 10, lease, later)
            .unwrap()
            .is_empty());
        let got = s
            .claim_due_broadcasts("c", 10, lease, t0() + Duration::hours(2))
            .unwrap();
        assert_eq!(
            got.iter().map(|x| x.id).collect::<Vec<_>>(),
            vec![future.id]
        );
    }
}

conformance! {
    fn concurrent_claims_never_share_a_broadcast(b) {
        let s = &b.store;
        let name = b.name;
        let mut ids = HashSet::new();
        for i in 0..24 {
            let x = broadcast(
                &format!("b{i}"),
                Audience::AllUsers,
                Some(t0() - Duration::seconds(i)),
            );
            s.create_broadcast(&x).unwrap();
            ids.insert(x.id);
        }
        // A second store on the same database: another node.
        let node2 = storage::open(&b.url, &OpenOptions { migrate: false }).unwrap();
        let stores: Vec<Arc<dyn Store>> = vec![s.clone(), node2.clone()];
        let lease = t0() + Duration::seconds(60);
        let claimed: Vec<Vec<uuid::Uuid>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..6)
                .map(|w| {
                    let st = stores[w % 2].clone();
                    scope.spawn(move || {
                        let owner = format!("w{w}");
                        let mut mine = Vec::new();
                        loop {
                            // Busy is a legitimate answer under contention: try again.
                            let got = match st.claim_due_broadcasts(&owner, 2, lease, t0()) {
                                Err(StoreError::Busy) => continue,
                                other => other.unwrap(),
                            };
                            if got.is_empty() {
                                break;
                            }
                            for x in got {
                                assert_eq!(x.status, BroadcastStatus::Sending);
                                mine.push(x.id);
                            }
                        }
                        mine
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        node2.close();
        let all: Vec<uuid::Uuid> = claimed.into_iter().flatten().collect();
        let distinct: HashSet<_> = all.iter().copied().collect();
        assert_eq!(
            all.len(),
            distinct.len(),
            "{name}: a broadcast was claimed twice"
        );
        assert_eq!(distinct, ids, "{name}");
    }
}

conformance! {
    fn broadcast_claim_order(b) {
        let s = &b.store;
        let first = broadcast("first", Audience::AllUsers, Some(t0()));
        let second = broadcast(
            "second",
            Audience::AllUsers,
            Some(t0() - Duration::seconds(5)),
        );
        let third = broadcast(
            "third",
            Audience::AllUsers,
            Some(t0() - Duration::seconds(9)),
        );
        for x in [&first, &second, &third] {
            s.create_broadcast(x).unwrap();
        }
        // The longest due go first; the claimed come back in creation order.
        let got = s
            .claim_due_broadcasts("a", 2, t0() + Duration::seconds(60), t0())
            .unwrap();
        assert_eq!(
            got.iter().map(|x| x.title.as_str()).collect::<Vec<_>>(),
            vec!["second", "third"],
            "{}",
            b.name
        );
    }
}

fn run(b: &Backend, audience: Audience, chunk: usize) -> (Broadcast, usize) {
    let s = &b.store;
    let x = broadcast("Hi", audience, Some(t0()));
    s.create_broadcast(&x).unwrap();
    let got = s
        .claim_due_broadcasts("w", 1, t0() + Duration::seconds(60), t0())
        .unwrap();
    assert_eq!(got.len(), 1, "{}", b.name);
    deliver_all(s, x.id, "w", chunk)
}

conformance! {
    fn deliver_all_users_to_completion(b) {
        seed_users(&b.store);
        let (done, steps) = run(b, Audience::AllUsers, 3);
        assert_eq!(done.status, BroadcastStatus::Sent, "{}", b.name);
        assert_eq!(
            (done.total, done.sent, done.skipped, done.failed),
            (8, 8, 0, 0)
        );
        // 8 users in chunks of 3: two full chunks, then the rest finishes.
        assert_eq!(steps, 2, "{}", b.name);
        let got = receivers(&b.store, done.id);
        assert_eq!(
            got,
            vec!["u01", "u02", "u03", "u05", "u06", "u08", "u09", "u10"]
        );
        // The chunk that reaches the last user finishes.
        let (done, steps) = run(b, Audience::AllUsers, 4);
        assert_eq!((done.sent, steps), (8, 1), "{}", b.name);
        let (done, steps) = run(b, Audience::AllUsers, 100);
        assert_eq!((done.sent, steps), (8, 0), "{}", b.name);
    }
}

conformance! {
    fn deliver_explicit_list_to_completion(b) {
        seed_users(&b.store);
        // Unknown, inactive and deleted users are skipped; the list order is kept.
        let list = ["u05", "ghost", "u01", "u04", "u07", "u10", "u02"];
        let audience = Audience::ExplicitUsers(list.iter().map(|u| uid(u)).collect());
        let (done, steps) = run(b, audience, 2);
        assert_eq!(done.status, BroadcastStatus::Sent, "{}", b.name);
        assert_eq!(
            (done.total, done.sent, done.skipped, done.failed),
            (7, 4, 3, 0)
        );
        assert_eq!(steps, 3);
        assert_eq!(
            receivers(&b.store, done.id),
            vec!["u01", "u02", "u05", "u10"]
        );
    }
}

conformance! {
    fn deliver_segment_to_completion(b) {
        seed_users(&b.store);
        let seg = |filters: Value| {
            let mut conds = Vec::new();
            let Value::Object(m) = filters else { panic!() };
            for (k, v) in m {
                conds.push(Condition {
                    attribute: k,
                    any_of: match v {
                        Value::Array(a) => a,
                        v => vec![v],
                    },
                });
            }
            Audience::Segment(conds)
        };
        // plan: u01 free, u02 team, u03 pro, u05 team, u06 pro, u08 team, u09 pro, u10 free
        // (u04 inactive, u07 deleted).
        let (done, _) = run(b, seg(json!({"plan": ["pro", "team"]})), 2);
        assert_eq!(
            (done.total, done.sent, done.skipped),
            (6, 6, 0),
            "{}",
            b.name
        );
        assert_eq!(
            receivers(&b.store, done.id),
            vec!["u02", "u03", "u05", "u06", "u08", "u09"]
        );
        // Numbers match by value (3 and 3.0), not a string of the same digits.
        let (done, _) = run(b, seg(json!({"n": 3})), 1);
        assert_eq!(
            receivers(&b.store, done.id),
            vec!["u01", "u02", "u03"],
            "{}",
            b.name
        );
        assert_eq!((done.total, done.sent), (3, 3));
        let (done, _) = run(b, seg(json!({"n": 3.0})), 5);
        assert_eq!(receivers(&b.store, done.id), vec!["u01", "u02", "u03"]);
        let (done, _) = run(b, seg(json!({"n": "3"})), 5);
        assert_eq!(receivers(&b.store, done.id), vec!["u05"], "{}", b.name);
        // Booleans, and every condition must hold.
        let (done, _) = run(b, seg(json!({"beta": true, "plan": "pro"})), 5);
        assert_eq!(receivers(&b.store, done.id), vec!["u06"], "{}", b.name);
        let (done, _) = run(b, seg(json!({"beta": false, "nope": [1, "x", true]})), 5);
        assert_eq!(
            (done.total, done.sent, done.status),
            (0, 0, BroadcastStatus::Sent)
        );
        assert!(receivers(&b.store, done.id).is_empty());
    }
}

conformance! {
    fn users_leaving_during_delivery_are_skipped_and_cancel_stops_it(b) {
        let s = &b.store;
        seed_users(s);
        let x = broadcast("Hi", Audience::AllUsers, Some(t0()));
        s.create_broadcast(&x).unwrap();
        let lease = t0() + Duration::seconds(60);
        s.claim_due_broadcasts("w", 1, lease, t0()).unwrap();
        let now = t0() + Duration::seconds(1);
        assert!(matches!(
            s.deliver_broadcast_chunk(x.id, "w", 2, lease, now).unwrap(),
            ChunkOutcome::Progress(_)
        ));
        // u10 leaves; a user who joins after the claim is not in the audience.
        s.delete_user(&uid("u10"), now).unwrap();
        s.upsert_users(vec![user("u11", json!({}), true)], now)
            .unwrap();
        let (done, _) = deliver_all(s, x.id, "w", 2);
        assert_eq!(
            (done.total, done.sent, done.skipped),
            (8, 7, 1),
            "{}",
            b.name
        );
        assert_eq!(s.inbox_page(&uid("u11"), 10, 0).unwrap().total, 0);

        // Cancelling a sending broadcast stops its delivery.
        let y = broadcast("Stop", Audience::AllUsers, Some(t0()));
        s.create_broadcast(&y).unwrap();
        s.claim_due_broadcasts("w", 1, lease, t0()).unwrap();
        s.deliver_broadcast_chunk(y.id, "w", 2, lease, now).unwrap();
        let c = s.cancel_broadcast(y.id, now).unwrap();
        assert_eq!((c.status, c.sent), (BroadcastStatus::Cancelled, 2));
        assert_eq!(
            s.deliver_broadcast_chunk(y.id, "w", 2, lease, now).unwrap(),
            ChunkOutcome::Stopped
        );

        // Failing: whatever was not delivered counts as failed.
        let z = broadcast("Fail", Audience::AllUsers, Some(t0()));
        s.create_broadcast(&z).unwrap();
        s.claim_due_broadcasts("w", 1, lease, t0()).unwrap();
        s.deliver_broadcast_chunk(z.id, "w", 3, lease, now).unwrap();
        let f = s.fail_broadcast(z.id, "w", "boom", now).unwrap().unwrap();
        assert_eq!(
            (f.status, f.total, f.sent, f.failed, f.skipped),
            (BroadcastStatus::Failed, 8, 3, 5, 0),
            "{}",
            b.name
        );
        assert!(s.fail_broadcast(z.id, "w", "again", now).unwrap().is_none());
    }
}

conformance! {
    fn broadcast_inbox_counts_reads_and_prune(b) {
        let s = &b.store;
        let name = b.name;
        seed_users(s);
        let (first, _) = run(b, Audience::AllUsers, 3);
        let ann = uid("u01");
        let page = s.inbox_page(&ann, 10, 0).unwrap();
        assert_eq!(
            (page.total, page.unread, page.items.len()),
            (1, 1, 1),
            "{name}"
        );
        let item = &page.items[0];
        assert_eq!(item.kind, "broadcast");
        assert_eq!(item.title, "Hi");
        assert_eq!(item.message, "body of Hi");
        assert_eq!(item.event_id, format!("broadcast:{}:u01", first.id));
        assert_eq!(item.broadcast_id, Some(first.id.to_string()));
        assert_eq!(item.created_at, t0() + Duration::seconds(1));
        // Inactive users got nothing and count nothing.
        assert_eq!(s.unread_count(&uid("u04")).unwrap(), 0);

        let read = s
            .mark_read(&ann, item.id, t0() + Duration::seconds(9))
            .unwrap();
        assert_eq!(read.read_at, Some(t0() + Duration::seconds(9)));
        s.mark_read(&ann, item.id, t0() + Duration::seconds(10))
            .unwrap();
        assert_eq!(s.unread_count(&ann).unwrap(), 0, "{name}");
        assert!(matches!(
            s.mark_read(&uid("u02"), item.id, t0()),
            Err(StoreError::NotFound)
        ));

        // Three more broadcasts: counts add up per user.
        for _ in 0..3 {
            run(b, Audience::AllUsers, 5);
        }
        let page = s.inbox_page(&ann, 2, 0).unwrap();
        assert_eq!(
            (page.total, page.unread, page.items.len()),
            (4, 3, 2),
            "{name}"
        );
        assert!(page.items[0].id > page.items[1].id);
        assert_eq!(s.mark_all_read(&uid("u02"), t0()).unwrap(), 4);
        assert_eq!(s.unread_count(&uid("u02")).unwrap(), 0);
        assert_eq!(s.mark_all_read(&uid("u02"), t0()).unwrap(), 0);

        // Retention by count: keep the newest 2 of each of the 8 inboxes (6 × 2 + 2 × 2
        // deletions); a small limit stops after the user that reaches it.
        let n = s.prune_inbox(None, Some(2), 3).unwrap();
        assert_eq!(n, 4, "{name}");
        let n = s.prune_inbox(None, Some(2), 100).unwrap();
        assert_eq!(n, 12, "{name}");
        for u in ["u01", "u02", "u03", "u10"] {
            let page = s.inbox_page(&uid(u), 10, 0).unwrap();
            assert_eq!((page.total, page.items.len()), (2, 2), "{name} {u}");
        }
        // u01 read only the oldest item, which is gone; u02 read everything.
        assert_eq!(s.unread_count(&ann).unwrap(), 2);
        assert_eq!(s.unread_count(&uid("u02")).unwrap(), 0);

        // Retention by age, at most `limit` items at a time.
        s.deliver_direct(
            &wp_lite::domain::notify::DirectNotification {
                user_id: ann.clone(),
                title: "new".into(),
                body: "b".into(),
                meta: Some(json!({"k": 1})),
                event_id: Some("e1".into()),
            },
            t0() + Duration::days(1),
        )
        .unwrap();
        let cutoff = t0() + Duration::hours(1);
        assert_eq!(s.prune_inbox(Some(cutoff), None, 5).unwrap(), 5, "{name}");
        assert_eq!(s.prune_inbox(Some(cutoff), None, 100).unwrap(), 11);
        assert_eq!(s.prune_inbox(Some(cutoff), None, 100).unwrap(), 0);
        let page = s.inbox_page(&ann, 10, 0).unwrap();
        assert_eq!(
            (page.total, page.unread, page.items.len()),
            (1, 1, 1),
            "{name}"
        );
        assert_eq!(page.items[0].kind, "direct");
        assert_eq!(page.items[0].meta, Some(json!({"k": 1})));
        for u in ["u02", "u03", "u10"] {
            let page = s.inbox_page(&uid(u), 10, 0).unwrap();
            assert_eq!((page.total, page.unread), (0, 0), "{name} {u}");
        }
    }
}

conformance! {
    fn concurrent_deliveries_keep_inbox_counts_right(b) {
        let s = &b.store;
        let name = b.name;
        let users: Vec<NewUser> = (0..40)
            .map(|i| user(&format!("c{i:02}"), json!({}), true))
            .collect();
        s.upsert_users(users, t0()).unwrap();
        let mut ids = Vec::new();
        for i in 0..6 {
            let x = broadcast(&format!("b{i}"), Audience::AllUsers, Some(t0()));
            s.create_broadcast(&x).unwrap();
            ids.push(x.id);
        }
        let lease = t0() + Duration::seconds(600);
        assert_eq!(
            s.claim_due_broadcasts("w", 10, lease, t0()).unwrap().len(),
            6
        );
        let node2 = storage::open(&b.url, &OpenOptions { migrate: false }).unwrap();
        let stores: Vec<Arc<dyn Store>> = vec![s.clone(), node2.clone()];
        let retry = |f: &dyn Fn() -> Result<ChunkOutcome, StoreError>| loop {
            match f() {
                Err(StoreError::Busy) => std::thread::yield_now(),
                other => return other.unwrap(),
            }
        };
        std::thread::scope(|scope| {
            for (i, id) in ids.iter().copied().enumerate() {
                let st = stores[i % 2].clone();
                scope.spawn(move || loop {
                    let out = retry(&|| st.deliver_broadcast_chunk(id, "w", 7, lease, t0()));
                    match out {
                        ChunkOutcome::Progress(_) => {}
                        ChunkOutcome::Finished(x) => {
                            assert_eq!((x.total, x.sent), (40, 40));
                            break;
                        }
                        ChunkOutcome::Stopped => panic!("stopped"),
                    }
                });
            }
            let st = stores[1].clone();
            scope.spawn(move || {
                for i in (0..40).rev() {
                    let n = wp_lite::domain::notify::DirectNotification {
                        user_id: uid(&format!("c{i:02}")),
                        title: "direct".into(),
                        body: "b".into(),
                        meta: None,
                        event_id: Some(format!("e{i}")),
                    };
                    loop {
                        match st.deliver_direct(&n, t0()) {
                            Err(StoreError::Busy) => std::thread::yield_now(),
                            other => {
                                assert!(other.unwrap().created);
                                break;
                            }
                        }
                    }
                }
            });
        });
        node2.close();
        for i in 0..40 {
            let page = s.inbox_page(&uid(&format!("c{i:02}")), 100, 0).unwrap();
            assert_eq!(
                (page.total, page.unread, page.items.len()),
                (7, 7, 7),
                "{name} c{i:02}"
            );
        }
    }
}

#[test]
fn broadcasts_due_now_wake_other_nodes() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    each_backend(|b| {
        if b.name == "sqlite" {
            // SQLite never calls subscribers; the broadcast worker polls.
            return;
        }
        let other = storage::open(&b.url, &OpenOptions { migrate: false }).unwrap();
        let wakes = Arc::new(AtomicUsize::new(0));
        let w = wakes.clone();
        other.subscribe(Arc::new(move |k| {
            if k == storage::Wake::Broadcasts {
                w.fetch_add(1, Ordering::SeqCst);
            }
        }));
        let woken_after = |n: usize, what: &str| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while wakes.load(Ordering::SeqCst) <= n {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{}: no wake-up on the other node after {what}",
                    b.name
                );
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        };
        // The listener wakes once when it starts listening.
        woken_after(0, "listening");
        let s = &b.store;
        // A draft or a later schedule wakes nobody.
        let n = wakes.load(Ordering::SeqCst);
        let draft = broadcast("draft", Audience::AllUsers, None);
        s.create_broadcast(&draft).unwrap();
        s.create_broadcast(&broadcast(
            "later",
            Audience::AllUsers,
            Some(t0() + Duration::hours(1)),
        ))
        .unwrap();
        s.schedule_broadcast(draft.id, t0() + Duration::hours(1), t0())
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(wakes.load(Ordering::SeqCst), n, "{}", b.name);
        // Due now: created, scheduled (send now) or replaced with a past schedule.
        s.create_broadcast(&broadcast("now", Audience::AllUsers, Some(t0())))
            .unwrap();
        woken_after(n, "a create due now");
        let n = wakes.load(Ordering::SeqCst);
        s.schedule_broadcast(draft.id, t0(), t0()).unwrap();
        woken_after(n, "a send-now");
        let n = wakes.load(Ordering::SeqCst);
        s.replace_broadcast(
            draft.id,
            &BroadcastDraft {
                title: "x".into(),
                body: "y".into(),
                audience: Audience::AllUsers,
                scheduled_at: Some(t0()),
            },
            t0() + Duration::seconds(1),
        )
        .unwrap();
        woken_after(n, "a replace due now");
        other.close();
    });
}

/// Makes a stored broadcast's audience unreadable, as a damaged row would be.
fn corrupt_audience(b: &Backend, id: uuid::Uuid) {
    let sql = format!("UPDATE broadcasts SET audience = 'not json' WHERE id = '{id}'");
    match &b._schema {
        Some(schema) => {
            schema.client().batch_execute(&sql).unwrap();
        }
        None => {
            let path = b.url.strip_prefix("sqlite://").unwrap();
            rusqlite::Connection::open(path)
                .unwrap()
                .execute_batch(&sql)
                .unwrap();
        }
    }
}

conformance! {
    /// A broadcast that cannot be delivered fails on its own, with the reason; the one due
    /// beside it is claimed and delivered (one bad row never stops every broadcast).
    fn a_broadcast_that_cannot_be_delivered_fails_alone_and_the_others_go_out(b) {
        let s = &b.store;
        seed_users(s);
        let bad = broadcast("Bad", Audience::AllUsers, Some(t0()));
        let good = broadcast("Good", Audience::AllUsers, Some(t0()));
        s.create_broadcast(&bad).unwrap();
        s.create_broadcast(&good).unwrap();
        corrupt_audience(b, bad.id);
        let lease = t0() + Duration::seconds(60);
        let got = s.claim_due_broadcasts("w", 10, lease, t0()).unwrap();
        let ids: Vec<uuid::Uuid> = got.iter().map(|g| g.id).collect();
        assert_eq!(ids, [good.id], "{}", b.name);
        let failed = s.get_broadcast(bad.id).unwrap();
        assert_eq!(failed.status, BroadcastStatus::Failed, "{}", b.name);
        assert!(
            failed
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("cannot be delivered")),
            "{}: {failed:?}",
            b.name
        );
        let (done, _) = deliver_all(s, good.id, "w", 3);
        assert_eq!(done.status, BroadcastStatus::Sent, "{}", b.name);
        assert_eq!(done.sent, 8, "{}", b.name);
        assert_eq!(done.last_error, None);
        // Nothing is claimed again: the failed one stays failed.
        assert!(s
            .claim_due_broadcasts("w2", 10, lease, t0() + Duration::seconds(120))
            .unwrap()
            .is_empty());
    }
}

conformance! {
    /// A segment with lists at their bound (100 values each) is one statement of fixed shape
    /// on both backends and selects exactly the matching users, each value matched by type
    /// (3.0 matches 3; "3" does not).
    fn a_segment_with_long_lists_delivers_to_exactly_its_users(b) {
        let s = &b.store;
        seed_users(s);
        let mut plans: Vec<Value> = (0..99).map(|i| json!(format!("plan-{i}"))).collect();
        plans.push(json!("pro"));
        let numbers: Vec<Value> = (3..103).map(|i| json!(i)).collect();
        let audience = Audience::parse(&json!({ "type": "segment", "filters": {
            "plan": plans, "n": numbers, "beta": [true, false],
        }}))
        .unwrap();
        let bc = broadcast("Lists", audience, Some(t0()));
        s.create_broadcast(&bc).unwrap();
        s.claim_due_broadcasts("w", 10, t0() + Duration::seconds(60), t0())
            .unwrap();
        let (done, _) = deliver_all(s, bc.id, "w", 100);
        assert_eq!(receivers(s, bc.id), ["u03", "u06", "u09"], "{}", b.name);
        assert_eq!((done.total, done.sent), (3, 3), "{}", b.name);
    }
}

conformance! {
    /// A row the store cannot read back (written behind its back, or corrupted) is an error
    /// naming what is wrong — never a default that would act on the wrong thing (a fresh id, a
    /// `failed` status, an `all_users` audience).
    fn corrupt_rows_are_errors_not_defaults(b) {
        let s = &b.store;
        let bc = broadcast("Corrupt", Audience::AllUsers, None);
        s.create_broadcast(&bc).unwrap();
        // An audience that cannot be read is shown as reaching no one, never all users
        // (delivery refuses it: see a_broadcast_that_cannot_be_delivered_fails_alone…).
        b.exec_raw(&format!(
            "UPDATE broadcasts SET audience = '{{\"type\":\"everyone\"}}' WHERE id = '{}'",
            bc.id
        ));
        let shown = s.get_broadcast(bc.id).unwrap();
        assert!(
            matches!(&shown.audience, Audience::ExplicitUsers(ids) if ids.is_empty()),
            "{}: {:?}",
            b.name,
            shown.audience
        );
        b.exec_raw(&format!(
            "UPDATE broadcasts SET status = 'done' WHERE id = '{}'",
            bc.id
        ));
        match s.get_broadcast(bc.id) {
            Err(StoreError::Backend(m)) => {
                assert!(
                    m.to_string().contains("broadcast status"),
                    "{}: {m}",
                    b.name
                )
            }
            other => panic!("{}: a corrupt status read back as {other:?}", b.name),
        }

        let job = wp_lite::domain::NewJob {
            id: None,
            job_type: wp_lite::domain::JobType::parse("type", "t").unwrap(),
            priority: 5,
            max_attempts: 3,
            available_at: None,
            meta: Default::default(),
            input: json!({}),
        };
        let out = s.enqueue_jobs(vec![job], t0()).unwrap();
        let wp_lite::domain::Enqueued::Created(job) = &out[0] else {
            panic!("created")
        };
        b.exec_raw(&format!(
            "UPDATE jobs SET status = 'finished' WHERE id = '{}'",
            job.id
        ));
        match s.get_job(job.id) {
            Err(StoreError::Backend(m)) => {
                assert!(m.to_string().contains("job status"), "{}: {m}", b.name)
            }
            other => panic!("{}: a corrupt status read back as {other:?}", b.name),
        }
        b.exec_raw(&format!(
            "UPDATE jobs SET status = 'queued' WHERE id = '{}'",
            job.id
        ));
        let bad_id = b.try_exec_raw(
            "INSERT INTO jobs (id, type, status, priority, input, attempts, max_attempts,
                               available_at, created_at, updated_at)
                 VALUES ('not-a-uuid', 't', 'queued', 5, '{}', 0, 3, 0, 0, 0)",
        );
        if b.name == "postgres" {
            // The column is a uuid (migration V16): the schema itself refuses the row.
            let e = bad_id.expect_err("a job id that is not a UUID was stored");
            assert!(e.contains("uuid"), "{e}");
            return;
        }
        bad_id.unwrap();
        let listed = s.list_jobs(&wp_lite::domain::JobFilter {
            status: None,
            job_type: None,
            limit: 10,
            before_seq: None,
        });
        match listed {
            Err(StoreError::Backend(m)) => {
                assert!(m.to_string().contains("job id"), "{}: {m}", b.name)
            }
            other => panic!("{}: a corrupt job id read back as {other:?}", b.name),
        }
    }
}
