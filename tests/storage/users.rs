use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use wp_lite::domain::notify::{Attributes, NewUser, UserId};
use wp_lite::storage::{self, OpenOptions, Store, StoreError};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
}

fn uid(s: &str) -> UserId {
    UserId::parse("id", s).unwrap()
}

fn user(id: &str, email: Option<&str>) -> NewUser {
    NewUser {
        id: uid(id),
        email: email.map(String::from),
        attributes: Attributes::default(),
        is_active: true,
    }
}

/// 300 of the ids c0000..c0499, shifted by writer and round; odd writers go backwards.
fn overlapping(w: usize, round: usize) -> Vec<NewUser> {
    let mut batch: Vec<NewUser> = (0..300)
        .map(|i| user(&format!("c{:04}", (i + w * 37 + round * 11) % 500), None))
        .collect();
    if w % 2 == 1 {
        batch.reverse();
    }
    batch
}

/// How many distinct ids the writers `ws` upsert over 5 rounds.
fn expected_ids(ws: impl Iterator<Item = usize>) -> i64 {
    let mut all = std::collections::HashSet::new();
    for w in ws {
        for round in 0..5 {
            all.extend(overlapping(w, round).into_iter().map(|u| u.id));
        }
    }
    all.len() as i64
}

fn ids(users: &[wp_lite::domain::notify::User]) -> Vec<&str> {
    users.iter().map(|u| u.id.as_str()).collect()
}

conformance! {
    fn upsert_get_delete_and_revive(b) {
        let s = &b.store;
        let mut ann = user("ann", Some("ann@example.com"));
        ann.attributes = Attributes::parse(
            "attributes",
            Some(json!({"plan": "pro", "seats": 3, "beta": true, "ratio": 0.5})),
        )
        .unwrap();
        let n = s
            .upsert_users(vec![user("bob", None), ann.clone()], t0())
            .unwrap();
        assert_eq!(n, 2, "{}", b.name);
        let got = s.get_user(&uid("ann")).unwrap();
        assert_eq!(got.email.as_deref(), Some("ann@example.com"));
        assert_eq!(got.attributes, ann.attributes, "{}", b.name);
        assert!(got.is_active);
        assert_eq!((got.created_at, got.updated_at), (t0(), t0()));
        assert_eq!(got.deleted_at, None);
        let bob = s.get_user(&uid("bob")).unwrap();
        assert_eq!((bob.email, bob.attributes), (None, Attributes::default()));
        assert!(matches!(
            s.get_user(&uid("nobody")),
            Err(StoreError::NotFound)
        ));

        // Soft delete: still returned; deleting again keeps the first deleted_at.
        let t1 = t0() + Duration::seconds(10);
        s.delete_user(&uid("ann"), t1).unwrap();
        let del = s.get_user(&uid("ann")).unwrap();
        assert_eq!(
            (del.deleted_at, del.updated_at),
            (Some(t1), t1),
            "{}",
            b.name
        );
        s.delete_user(&uid("ann"), t1 + Duration::seconds(5))
            .unwrap();
        let del = s.get_user(&uid("ann")).unwrap();
        assert_eq!(
            (del.deleted_at, del.updated_at),
            (Some(t1), t1 + Duration::seconds(5))
        );
        assert!(matches!(
            s.delete_user(&uid("nobody"), t1),
            Err(StoreError::NotFound)
        ));
        let (all, total) = s.list_users(None, 50, 0).unwrap();
        assert_eq!(
            (ids(&all), total),
            (vec!["bob", "ann"], 2),
            "deleted users are listed"
        );

        // An upsert revives the user, replaces its fields and keeps created_at and its place.
        let t2 = t0() + Duration::seconds(60);
        let mut again = user("ann", None);
        again.is_active = false;
        s.upsert_users(vec![again], t2).unwrap();
        let rev = s.get_user(&uid("ann")).unwrap();
        assert_eq!(rev.deleted_at, None, "{}", b.name);
        assert_eq!((rev.created_at, rev.updated_at), (t0(), t2));
        assert_eq!(rev.email, None);
        assert_eq!(rev.attributes, Attributes::default());
        assert!(!rev.is_active);
        let (all, _) = s.list_users(None, 50, 0).unwrap();
        assert_eq!(ids(&all), vec!["bob", "ann"], "{}", b.name);
        // An empty batch is fine.
        assert_eq!(s.upsert_users(vec![], t2).unwrap(), 0);
    }
}

conformance! {
    fn a_batch_keeps_its_order_and_the_last_of_repeated_ids(b) {
        let s = &b.store;
        s.upsert_users(vec![user("mia", None)], t0()).unwrap();
        let t1 = t0() + Duration::seconds(1);
        // Not in id order, one id three times, one id already there (deleted).
        s.delete_user(&uid("mia"), t0()).unwrap();
        let batch = vec![
            user("zed", Some("z1")),
            user("carl", Some("c1")),
            user("mia", Some("m1")),
            user("zed", Some("z2")),
            user("amy", None),
            user("zed", Some("z3")),
        ];
        assert_eq!(s.upsert_users(batch, t1).unwrap(), 6, "{}", b.name);
        let (all, total) = s.list_users(None, 50, 0).unwrap();
        assert_eq!(total, 4);
        // Creation order: mia first (earlier batch), then new users as the batch met them.
        assert_eq!(ids(&all), vec!["mia", "zed", "carl", "amy"], "{}", b.name);
        let zed = s.get_user(&uid("zed")).unwrap();
        assert_eq!(zed.email.as_deref(), Some("z3"), "{}", b.name);
        assert_eq!((zed.created_at, zed.updated_at), (t1, t1));
        let mia = s.get_user(&uid("mia")).unwrap();
        assert_eq!((mia.email.as_deref(), mia.deleted_at), (Some("m1"), None));
        assert_eq!((mia.created_at, mia.updated_at), (t0(), t1));
    }
}

conformance! {
    fn list_searches_id_and_email_and_pages(b) {
        let s = &b.store;
        let batch = vec![
            user("u1", Some("Ann@Example.com")),
            user("u2", Some("bob@other.org")),
            user("EXAMPLE-3", None),
            user("u4_x", Some("p%q@x.io")),
            user("u5", Some("under_score@x.io")),
            user("Émile", Some("e@x.io")),
            user("u7", Some("ann.two@example.COM")),
        ];
        s.upsert_users(batch, t0()).unwrap();
        let search = |q: &str, limit: usize, offset: usize| {
            let (items, total) = s.list_users(Some(q), limit, offset).unwrap();
            (
                items
                    .iter()
                    .map(|u| u.id.as_str().to_string())
                    .collect::<Vec<_>>(),
                total,
            )
        };
        // ASCII letters match in any case, on id or email, in creation order.
        assert_eq!(
            search("example", 50, 0),
            (vec!["u1".into(), "EXAMPLE-3".into(), "u7".into()], 3),
            "{}",
            b.name
        );
        assert_eq!(search("ANN", 50, 0).1, 2);
        // Paging: the total counts every match.
        assert_eq!(search("example", 1, 1), (vec!["EXAMPLE-3".into()], 3));
        assert_eq!(search("example", 2, 2), (vec!["u7".into()], 3));
        assert_eq!(search("example", 2, 10), (vec![], 3));
        // % and _ are literal characters, and so is \.
        assert_eq!(search("%", 50, 0), (vec!["u4_x".into()], 1), "{}", b.name);
        assert_eq!(search("_", 50, 0), (vec!["u4_x".into(), "u5".into()], 2));
        assert_eq!(search("\\", 50, 0), (vec![], 0));
        // Only ASCII letters fold (SQLite's LIKE): É is not é.
        assert_eq!(search("Émile", 50, 0), (vec!["Émile".into()], 1));
        assert_eq!(search("émile", 50, 0), (vec![], 0), "{}", b.name);
        assert_eq!(search("ÉMILE", 50, 0), (vec!["Émile".into()], 1));
        assert_eq!(search("nothing", 50, 0), (vec![], 0));
        // Without a query: every user, paged.
        let (page, total) = s.list_users(None, 3, 2).unwrap();
        assert_eq!(total, 7);
        assert_eq!(ids(&page), vec!["EXAMPLE-3", "u4_x", "u5"], "{}", b.name);
        let (page, _) = s.list_users(None, usize::MAX, 6).unwrap();
        assert_eq!(ids(&page), vec!["u7"], "{}", b.name);
    }
}

conformance! {
    fn large_and_concurrent_batches(b) {
        // 10 000 users in one batch (the API's maximum), with repeats.
        let batch: Vec<NewUser> = (0..10_000)
            .map(|i| {
                user(
                    &format!("big{:05}", (i * 7919) % 9_000),
                    Some(&format!("v{i}")),
                )
            })
            .collect();
        assert_eq!(b.store.upsert_users(batch, t0()).unwrap(), 10_000);
        let (first, total) = b.store.list_users(None, 2, 0).unwrap();
        assert_eq!(total, 9_000, "{}", b.name);
        assert_eq!(ids(&first), vec!["big00000", "big07919"], "{}", b.name);
        // i = 9000 repeats id big00000 (9000 * 7919 % 9000 == 0): the last one wins.
        let u = b.store.get_user(&uid("big00000")).unwrap();
        assert_eq!(u.email.as_deref(), Some("v9000"), "{}", b.name);

        // Four nodes (stores) upserting overlapping batches in opposite orders at once:
        // each batch locks its rows in id order, so none waits on another in a cycle.
        let nodes: Vec<Arc<dyn Store>> = (0..4)
            .map(|_| storage::open(&b.url, &OpenOptions { migrate: false }).unwrap())
            .collect();
        let results: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(w, s)| {
                let s = s.clone();
                std::thread::spawn(move || {
                    (0..5)
                        .map(|round| s.upsert_users(overlapping(w, round), t0()).map(|_| ()))
                        .collect::<Result<Vec<()>, StoreError>>()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        for n in &nodes {
            n.close();
        }
        for r in results {
            r.unwrap_or_else(|e| panic!("{}: {e:?}", b.name));
        }
        let (_, total) = b.store.list_users(Some("c0"), 1, 0).unwrap();
        assert_eq!(total, expected_ids(0..4), "{}", b.name);

        // Several callers on one store: on PostgreSQL the writer groups their batches into
        // shared transactions, where one op's rows are locked after an earlier op's, so a
        // deadlock can still fail one batch as Busy (retryable; SQLite never does). Every
        // batch lands once retried.
        let busy = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..6)
            .map(|w| {
                let (s, busy) = (b.store.clone(), busy.clone());
                std::thread::spawn(move || {
                    for round in 0..5 {
                        let mut tries = 0;
                        loop {
                            match s.upsert_users(overlapping(w + 10, round), t0()) {
                                Ok(_) => break,
                                Err(StoreError::Busy) if tries < 20 => {
                                    tries += 1;
                                    busy.fetch_add(1, Ordering::SeqCst);
                                }
                                Err(e) => return Err(e),
                            }
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        let results: Vec<Result<(), StoreError>> =
            handles.into_iter().map(|h| h.join().unwrap()).collect();
        for r in results {
            r.unwrap_or_else(|e| panic!("{}: {e:?}", b.name));
        }
        eprintln!(
            "{}: grouped overlapping user batches retried {} times on Busy",
            b.name,
            busy.load(Ordering::SeqCst)
        );
        let (_, total) = b.store.list_users(Some("c0"), 1, 0).unwrap();
        assert_eq!(total, expected_ids((0..4).chain(10..16)), "{}", b.name);
        if b.name == "sqlite" {
            assert_eq!(busy.load(Ordering::SeqCst), 0);
        }
    }
}
