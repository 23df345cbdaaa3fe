//! Upgrades in place: a database as the previous release left it (schema V1–V6, written
//! here in that release's SQL, with jobs in every state and their events) is migrated by
//! this build and reads back the same through the store, with its queue counts and job
//! histories, on SQLite and (when `WP_LITE_TEST_POSTGRES_URL` is set) PostgreSQL.

mod common;

use chrono::{TimeZone, Utc};
use common::PgSchema;
use wp_lite::domain::notify::{DirectNotification, UserId};
use wp_lite::storage::{self, OpenOptions};

/// What the previous release wrote: users, a sent broadcast, direct notifications with
/// their contents, inbox items with integer ids (one read) and their counts.
const PREVIOUS_RELEASE_ROWS: &str = "
INSERT INTO users (seq, id, email, attributes, is_active, created_at, updated_at)
    VALUES (1, 'ann', 'ann@example.com', '{}', 1, 1700000000000, 1700000000000),
           (2, 'bob', NULL, '{}', 1, 1700000000000, 1700000000000);
INSERT INTO broadcasts (seq, id, title, body, audience, status, created_by, created_at,
                        updated_at, total, sent)
    VALUES (1, '0190a0a0-0000-7000-8000-000000000001', 'Hello', 'Hello all',
            '{\"type\":\"all_users\"}', 'sent', 'admin', 1700000001000, 1700000001000, 2, 2);
INSERT INTO notification_contents (id, title, body, meta, created_at)
    VALUES (1, 'First', 'first body', NULL, 1700000002000),
           (2, 'Second', 'second body', '{\"k\":1}', 1700000003000);
INSERT INTO inbox_items (id, user_id, broadcast_id, content_id, event_key, created_at, read_at)
    VALUES (1, 'ann', '0190a0a0-0000-7000-8000-000000000001', NULL, NULL, 1700000001000, 1700000005000),
           (2, 'bob', '0190a0a0-0000-7000-8000-000000000001', NULL, NULL, 1700000001000, NULL),
           (3, 'ann', NULL, 1, 'evt-1', 1700000002000, NULL),
           (4, 'ann', NULL, 2, NULL, 1700000003000, NULL);
INSERT INTO inbox_counts (user_id, total, unread) VALUES ('ann', 3, 2), ('bob', 1, 1);
INSERT INTO jobs (seq, id, type, status, priority, idempotency_key, input, attempts,
                  max_attempts, available_at, lease_owner, lease_until, lease_token,
                  created_at, updated_at)
    VALUES (1, '0190a0a0-0000-7000-8000-00000000000a', 'mail', 'queued', 5, 'k1', '{}', 0, 3,
            1700000000000, NULL, NULL, NULL, 1700000000000, 1700000000000),
           (2, '0190a0a0-0000-7000-8000-00000000000b', 'mail', 'queued', 5, NULL, '{}', 0, 3,
            1700000000000, NULL, NULL, NULL, 1700000000000, 1700000000000),
           (3, '0190a0a0-0000-7000-8000-00000000000c', 'mail', 'leased', 5, NULL, '{}', 1, 3,
            1700000000000, 'w1', 1900000000000, 'tok', 1700000000000, 1700000000000),
           (4, '0190a0a0-0000-7000-8000-00000000000d', 'mail', 'succeeded', 5, NULL, '{}', 1, 3,
            1700000000000, NULL, NULL, NULL, 1700000000000, 1700000000000),
           (5, '0190a0a0-0000-7000-8000-00000000000e', 'pdf', 'failed', 5, NULL, '{}', 3, 3,
            1700000000000, NULL, NULL, NULL, 1700000000000, 1700000000000),
           (6, '0190a0a0-0000-7000-8000-00000000000f', 'pdf', 'canceled', 5, NULL, '{}', 0, 3,
            1700000000000, NULL, NULL, NULL, 1700000000000, 1700000000000);
INSERT INTO job_events (id, job_id, ts, event, details)
    VALUES (1, '0190a0a0-0000-7000-8000-00000000000c', 1700000000500, 'leased',
            '{\"worker_id\":\"w1\",\"attempt\":1}'),
           (2, '0190a0a0-0000-7000-8000-00000000000d', 1700000000600, 'leased',
            '{\"worker_id\":\"w1\",\"attempt\":1}'),
           (3, '0190a0a0-0000-7000-8000-00000000000d', 1700000000700, 'succeeded',
            '{\"worker_id\":\"w1\",\"attempt\":1}'),
           (4, '0190a0a0-0000-7000-8000-00000000000c', 1700000000800, 'heartbeat',
            '{\"count\":1}');
";

/// A job's history as (id, event, time in ms, details).
fn history(store: &dyn storage::Store, id: &str) -> Vec<(i64, String, i64, Option<String>)> {
    store
        .job_events(wp_lite::domain::JobId::parse(id).unwrap())
        .unwrap()
        .into_iter()
        .map(|e| {
            let details = e.details.map(|d| d.to_string());
            (e.id, e.event, e.ts.timestamp_millis(), details)
        })
        .collect()
}

fn check_upgrade(url: &str, seed: impl FnOnce()) {
    storage::migrate_to(url, 6).expect("the previous release's schema");
    seed();
    let store = storage::open(url, &OpenOptions { migrate: true }).expect("migrate in place");
    assert_eq!(
        store.schema_version().unwrap(),
        store.latest_schema_version()
    );
    // Migration V9 counted the jobs that were there; the counts then follow transitions,
    // and the list by a finished status finds its jobs.
    let counts = |store: &dyn storage::Store| -> Vec<(String, [i64; 5])> {
        store
            .queue_stats(Utc.timestamp_millis_opt(1_700_000_010_000).unwrap())
            .unwrap()
            .into_iter()
            .map(|q| {
                (
                    q.job_type,
                    [q.queued, q.leased, q.succeeded, q.failed, q.canceled],
                )
            })
            .collect()
    };
    assert_eq!(
        counts(&*store),
        [
            ("mail".into(), [2, 1, 1, 0, 0]),
            ("pdf".into(), [0, 0, 0, 1, 1])
        ]
    );
    // The histories the previous release wrote read back the same (ids, order, times and
    // details), and new events follow them.
    let (leased, done, queued) = (
        "0190a0a0-0000-7000-8000-00000000000c",
        "0190a0a0-0000-7000-8000-00000000000d",
        "0190a0a0-0000-7000-8000-00000000000b",
    );
    let w1 = Some(r#"{"attempt":1,"worker_id":"w1"}"#.to_string());
    assert_eq!(
        history(&*store, done),
        [
            (0, "queued".into(), 1_700_000_000_000, None),
            (2, "leased".into(), 1_700_000_000_600, w1.clone()),
            (3, "succeeded".into(), 1_700_000_000_700, w1.clone()),
        ]
    );
    assert_eq!(
        history(&*store, leased),
        [
            (0, "queued".into(), 1_700_000_000_000, None),
            (1, "leased".into(), 1_700_000_000_500, w1.clone()),
            (
                4,
                "heartbeat".into(),
                1_700_000_000_800,
                Some(r#"{"count":1}"#.into())
            ),
        ]
    );
    store
        .cancel_job(
            wp_lite::domain::JobId::parse(queued).unwrap(),
            Utc.timestamp_millis_opt(1_700_000_010_000).unwrap(),
        )
        .unwrap();
    let canceled = history(&*store, queued);
    assert_eq!(canceled.len(), 2, "{canceled:?}");
    assert_eq!(canceled[1].1, "canceled");
    assert!(
        canceled[1].0 > 4,
        "a new event sorts after the migrated ones: {canceled:?}"
    );
    store.fold_job_counts().unwrap();
    assert_eq!(
        counts(&*store),
        [
            ("mail".into(), [1, 1, 1, 0, 1]),
            ("pdf".into(), [0, 0, 0, 1, 1])
        ]
    );
    let failed = store
        .list_jobs(&wp_lite::domain::JobFilter {
            status: Some(wp_lite::domain::JobStatus::Failed),
            job_type: None,
            limit: 10,
            before_seq: None,
        })
        .unwrap();
    assert_eq!(failed.items.len(), 1);
    assert_eq!(failed.items[0].job_type.as_str(), "pdf");

    let ann = UserId::parse("user", "ann").unwrap();
    let page = store.inbox_page(&ann, 50, 0).unwrap();
    assert_eq!((page.total, page.unread), (3, 2));
    // Newest first, as before; every id a UUID v7 whose time is the item's creation.
    let titles: Vec<&str> = page.items.iter().map(|i| i.title.as_str()).collect();
    assert_eq!(titles, ["Second", "First", "Hello"]);
    for item in &page.items {
        assert_eq!(item.id.get_version_num(), 7, "{item:?}");
        let (secs, nanos) = item.id.get_timestamp().unwrap().to_unix();
        let ms = secs as i64 * 1000 + i64::from(nanos / 1_000_000);
        assert_eq!(ms, item.created_at.timestamp_millis(), "{item:?}");
    }
    assert_eq!(page.items[1].event_id, "evt-1");
    assert_eq!(page.items[0].meta, Some(serde_json::json!({ "k": 1 })));
    assert!(page.items[2].read_at.is_some());
    // Marking read works by the new id; another user's id is not found.
    let now = Utc.timestamp_millis_opt(1_700_000_009_000).unwrap();
    let read = store.mark_read(&ann, page.items[0].id, now).unwrap();
    assert_eq!(read.read_at, Some(now));
    let bob = UserId::parse("user", "bob").unwrap();
    assert!(store.mark_read(&bob, page.items[0].id, now).is_err());
    let bob_page = store.inbox_page(&bob, 50, 0).unwrap();
    assert_eq!(bob_page.items.len(), 1);
    assert_ne!(bob_page.items[0].id, page.items[2].id);
    // The old event id still deduplicates, and a new item gets a new UUID.
    let again = store
        .deliver_direct(
            &DirectNotification {
                user_id: ann.clone(),
                title: "First".into(),
                body: "first body".into(),
                meta: None,
                event_id: Some("evt-1".into()),
            },
            now,
        )
        .unwrap();
    assert_eq!((again.item_id, again.created), (page.items[1].id, false));
    let new = store
        .deliver_direct(
            &DirectNotification {
                user_id: ann.clone(),
                title: "Third".into(),
                body: "b".into(),
                meta: None,
                event_id: None,
            },
            now,
        )
        .unwrap();
    assert!(new.created);
    let page = store.inbox_page(&ann, 50, 0).unwrap();
    assert_eq!(page.items[0].id, new.item_id);
    assert_eq!((page.total, page.unread), (4, 2));
    store.close();
}

#[test]
fn an_inbox_of_the_previous_release_migrates_to_uuid_ids_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("previous.db");
    let url = format!("sqlite://{}", path.display());
    check_upgrade(&url, || {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(PREVIOUS_RELEASE_ROWS).unwrap();
    });
}

#[test]
fn an_inbox_of_the_previous_release_migrates_to_uuid_ids_on_postgres() {
    let Ok(base) = std::env::var("WP_LITE_TEST_POSTGRES_URL") else {
        eprintln!("migrations: PostgreSQL half SKIPPED (WP_LITE_TEST_POSTGRES_URL is not set)");
        return;
    };
    let schema = PgSchema::new(&base, "upgrade");
    let url = schema.url();
    check_upgrade(&url, || {
        schema
            .client()
            .batch_execute(&PREVIOUS_RELEASE_ROWS.replace(
                "INSERT INTO inbox_counts",
                "SELECT setval('inbox_items_id_seq', 4), setval('notification_contents_id_seq', 2),
                        setval('users_seq_seq', 2), setval('broadcasts_seq_seq', 1),
                        setval('jobs_seq_seq', 6), setval('job_events_id_seq', 4);
                 INSERT INTO inbox_counts",
            ))
            .unwrap();
    });
    // V16: job ids are uuids, and types and idempotency keys compare byte by byte, whatever
    // the database's locale.
    let columns: Vec<(String, String, Option<String>)> = schema
        .client()
        .query(
            "SELECT column_name::text, data_type::text, collation_name::text
               FROM information_schema.columns
              WHERE table_schema = current_schema() AND table_name = 'jobs'
                AND column_name IN ('id', 'type', 'idempotency_key') ORDER BY column_name",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let col = |name: &str, ty: &str, coll: Option<&str>| {
        (name.to_string(), ty.to_string(), coll.map(String::from))
    };
    assert_eq!(
        columns,
        [
            col("id", "uuid", None),
            col("idempotency_key", "text", Some("C")),
            col("type", "text", Some("C"))
        ]
    );
    // V17: one ready index, by type; claims across types merge the types' queues. V18: one
    // finished-job index, by status and key; pruning walks it up to a key.
    let indexes: Vec<String> = schema
        .client()
        .query(
            "SELECT indexname::text FROM pg_indexes
              WHERE schemaname = current_schema() AND tablename = 'jobs' ORDER BY indexname",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        indexes,
        [
            "jobs_finished_by_status",
            "jobs_id_key",
            "jobs_idempotency",
            "jobs_lease_until",
            "jobs_pkey",
            "jobs_ready_by_type"
        ]
    );
}
