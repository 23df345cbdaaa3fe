//! Delivery: every audience type end to end, counters chunk by chunk, a dead worker
//! resumed without duplicates, send-now wake-ups, and `notifications.send` jobs.

use super::*;

// ---------------------------------------------------------------------------------------
// Delivery
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_audience_type_end_to_end() {
    let app = quiet_app().await;
    app.put_users(vec![
        json!({ "id": "a1", "attributes": { "plan": "pro", "country": "DE", "seats": 5, "beta": true } }),
        json!({ "id": "a2", "attributes": { "plan": "pro", "country": "AT", "seats": "5", "beta": "true" } }),
        json!({ "id": "a3", "attributes": { "plan": "pro", "country": "FR", "seats": 10, "beta": false } }),
        json!({ "id": "a4", "attributes": { "plan": "free", "country": "DE", "seats": 5 } }),
        json!({ "id": "a5", "is_active": false, "attributes": { "plan": "pro", "country": "DE", "seats": 5, "beta": true } }),
        json!({ "id": "a6", "attributes": { "plan": "pro", "country": "AT", "seats": 5, "beta": true } }),
        json!({ "id": "a7" }),
    ])
    .await;
    let r = app.admin(Method::DELETE, "/v1/admin/users/a6", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);

    let seg = |filters: Value| json!({ "type": "segment", "filters": filters });
    // (audience, who receives it, total, skipped)
    let cases: Vec<(Value, Vec<&str>, i64, i64)> = vec![
        (all_users(), vec!["a1", "a2", "a3", "a4", "a7"], 5, 0),
        (
            json!({ "type": "explicit_users", "user_ids": ["a1", "a1", " ", "", "ghost", "a5", "a6", "a2", "a2"] }),
            vec!["a1", "a2"],
            5,
            3,
        ),
        (
            seg(json!({ "plan": "pro", "country": ["DE", "AT"] })),
            vec!["a1", "a2"],
            2,
            0,
        ),
        (
            seg(json!({ "plan": ["pro", "free"], "country": "DE" })),
            vec!["a1", "a4"],
            2,
            0,
        ),
        (seg(json!({ "seats": 5 })), vec!["a1", "a4"], 2, 0),
        (
            seg(json!({ "seats": [5, 10] })),
            vec!["a1", "a3", "a4"],
            3,
            0,
        ),
        (seg(json!({ "seats": "5" })), vec!["a2"], 1, 0),
        (seg(json!({ "seats": 5.0 })), vec!["a1", "a4"], 2, 0),
        (seg(json!({ "beta": true })), vec!["a1"], 1, 0),
        (seg(json!({ "beta": false })), vec!["a3"], 1, 0),
        (seg(json!({ "beta": "true" })), vec!["a2"], 1, 0),
        (seg(json!({ "country": ["FR", 5, true] })), vec!["a3"], 1, 0),
        (seg(json!({ "plan": "enterprise" })), vec![], 0, 0),
        (seg(json!({ "no_such_attribute": "x" })), vec![], 0, 0),
    ];
    let mut ids = Vec::new();
    for (i, (audience, ..)) in cases.iter().enumerate() {
        ids.push(create_due(&app, &format!("case {i}"), audience.clone()).await);
    }
    // The explicit audience is shown deduplicated, blanks dropped, in order.
    assert_eq!(
        get_b(&app, &ids[1]).await["audience"],
        json!({ "type": "explicit_users", "user_ids": ["a1", "ghost", "a5", "a6", "a2"] })
    );
    for _ in 0..cases.len() {
        app.deliver_due().await;
    }
    let mut inboxes = BTreeMap::new();
    for u in ["a1", "a2", "a3", "a4", "a5", "a6", "a7", "ghost"] {
        inboxes.insert(u, broadcasts_of(&app, u).await);
    }
    for (i, (audience, receivers, total, skipped)) in cases.iter().enumerate() {
        let b = get_b(&app, &ids[i]).await;
        assert_eq!(b["status"], "sent", "{audience}: {b}");
        assert_eq!(b["total"], *total, "{audience}: {b}");
        assert_eq!(b["sent"], receivers.len(), "{audience}: {b}");
        assert_eq!(b["skipped"], *skipped, "{audience}: {b}");
        assert_eq!(b["failed"], 0, "{audience}: {b}");
        ended_consistently(&b);
        let got: Vec<&str> = inboxes
            .iter()
            .filter(|(_, bs)| bs.contains(&ids[i]))
            .map(|(u, _)| *u)
            .collect();
        assert_eq!(&got, receivers, "{audience}: who received it");
    }
    for u in ["a5", "a6", "ghost"] {
        assert!(inboxes[u].is_empty(), "{u} is inactive, deleted or unknown");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_grow_chunk_by_chunk_and_a_dead_worker_is_resumed_without_duplicates() {
    let app = quiet_app().await;
    let n = 25_000;
    app.put_plain_users("u", n).await;

    // Chunk by chunk, a client polling the broadcast sees sent grow.
    let id = create_due(&app, "big", all_users()).await;
    assert_eq!(claim(&app, "w1").await, [id.as_str()]);
    let mut seen = Vec::new();
    loop {
        let outcome = chunk(&app, &id, "w1").await;
        let b = get_b(&app, &id).await;
        assert_eq!(b["total"], n);
        seen.push(b["sent"].as_i64().unwrap());
        match outcome {
            ChunkOutcome::Progress(_) => assert_eq!(b["status"], "sending", "{b}"),
            ChunkOutcome::Finished(_) => {
                assert_eq!(b["status"], "sent", "{b}");
                ended_consistently(&b);
                break;
            }
            ChunkOutcome::Stopped => panic!("the claim was lost"),
        }
        assert!(seen.len() < 10, "too many chunks: {seen:?}");
    }
    assert_eq!(seen, [10_000, 20_000, 25_000]);

    // A worker that dies after one chunk: nobody else takes the broadcast while its
    // claim holds; once the claim has expired, a later tick resumes from the cursor.
    let id2 = create_due(&app, "resumed", all_users()).await;
    assert_eq!(claim(&app, "dies").await, [id2.as_str()]);
    assert!(matches!(
        chunk(&app, &id2, "dies").await,
        ChunkOutcome::Progress(_)
    ));
    app.advance(30);
    app.deliver_due().await;
    let b = get_b(&app, &id2).await;
    assert_eq!(b["status"], "sending", "the claim still holds: {b}");
    assert_eq!(b["sent"], CHUNK);
    app.advance(31);
    app.deliver_due().await;
    let b = get_b(&app, &id2).await;
    assert_eq!(b["status"], "sent", "{b}");
    assert_eq!(b["sent"], n);
    assert_eq!(b["total"], n);
    ended_consistently(&b);
    // The dead worker coming back finds its claim gone.
    assert_eq!(chunk(&app, &id2, "dies").await, ChunkOutcome::Stopped);
    let totals = inbox_totals(&app, "u", 0..n).await;
    assert!(
        totals.iter().all(|t| *t == 2),
        "every user has exactly one item per broadcast"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_now_wakes_the_in_process_worker_at_once() {
    assert!(
        std::env::var_os("NOTIFICATIONS_BROADCAST_INTERVAL").is_none(),
        "this test relies on the default 30 s interval"
    );
    // The default workers: notifications.broadcast runs in the process and ticks every 30 s.
    let app = spawn_app().await;
    app.put_plain_users("u", 3).await;
    let id = s(&create(&app, draft("now", all_users())).await["id"]);
    let r = action(&app, P1, &id, "send-now", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let b = eventually(10, "the broadcast to be sent", || async {
        let b = get_b(&app, &id).await;
        (b["status"] == "sent").then_some(b)
    })
    .await;
    assert_eq!(b["sent"], 3);
    ended_consistently(&b);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_now_during_a_long_delivery_still_starts_at_once() {
    // A send-now that arrives while the in-process worker is busy delivering another
    // broadcast must not be lost: the second one starts right after, not 30 s later.
    assert!(
        std::env::var_os("NOTIFICATIONS_BROADCAST_INTERVAL").is_none(),
        "this test relies on the default 30 s interval"
    );
    let app = spawn_app().await;
    let n = 100_000;
    app.put_plain_users("u", n).await;
    let second = s(&create(
        &app,
        draft(
            "second",
            json!({ "type": "explicit_users", "user_ids": ["u1"] }),
        ),
    )
    .await["id"]);
    let first = s(&create(&app, draft("first", all_users())).await["id"]);
    action(&app, P1, &first, "send-now", None).await;
    eventually(10, "the first broadcast to be sending", || async {
        (get_b(&app, &first).await["status"] == "sending").then_some(())
    })
    .await;
    let r = action(&app, P1, &second, "send-now", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let still = get_b(&app, &first).await;
    assert_eq!(
        still["status"], "sending",
        "the send-now must arrive while the first broadcast is being delivered"
    );
    // The next regular tick is at least 25 s after the busy one ends: 20 s tells them apart.
    eventually(20, "the second broadcast to be sent", || async {
        (get_b(&app, &second).await["status"] == "sent").then_some(())
    })
    .await;
    let b = get_b(&app, &first).await;
    assert_eq!(b["status"], "sent");
    assert_eq!(b["sent"], n);
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// notifications.send
// ---------------------------------------------------------------------------------------

/// Polls a job until it is succeeded or failed.
async fn finished_job(app: &TestApp, id: &str) -> Value {
    eventually(10, "the job to finish", || async {
        let j = app.job(id).await;
        matches!(j["status"].as_str(), Some("succeeded" | "failed")).then_some(j)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_send_jobs_deliver_once_per_event_id() {
    let app = spawn_app().await;
    let input = json!({
        "user_id": "alice", "title": "Invoice ready", "body": "Your invoice #42 is ready",
        "meta": { "invoice": 42 }, "event_id": "invoice:42",
    });
    let j1 = app
        .enqueue(json!({ "type": "notifications.send", "input": input }))
        .await;
    let j1 = finished_job(&app, &s(&j1["job_id"])).await;
    assert_eq!(j1["status"], "succeeded", "{j1}");
    assert_eq!(j1["result"]["duplicate"], false, "{j1}");
    assert_eq!(j1["result"]["delivered"], true, "{j1}");

    let j2 = app
        .enqueue(json!({ "type": "notifications.send", "input": input }))
        .await;
    let j2 = finished_job(&app, &s(&j2["job_id"])).await;
    assert_eq!(j2["status"], "succeeded", "{j2}");
    assert_eq!(
        j2["result"]["duplicate"], true,
        "the second is a no-op that says so: {j2}"
    );
    assert_eq!(j2["result"]["item_id"], j1["result"]["item_id"]);

    let inbox = inbox_of(&app, "alice").await;
    assert_eq!(inbox["total"], 1, "{inbox}");
    let item = &inbox["items"][0];
    assert_eq!(item["title"], "Invoice ready");
    assert_eq!(item["message"], "Your invoice #42 is ready");
    assert_eq!(item["meta"], json!({ "invoice": 42 }));
    assert_eq!(item["event_id"], "invoice:42");
    assert_eq!(item["is_read"], false);
    assert_eq!(item["id"], j1["result"]["item_id"]);

    // Without an event_id nothing is deduplicated.
    for _ in 0..2 {
        let j = app
            .enqueue(json!({ "type": "notifications.send", "input": { "user_id": "alice", "title": "Ping", "body": "pong" } }))
            .await;
        assert_eq!(
            finished_job(&app, &s(&j["job_id"])).await["status"],
            "succeeded"
        );
    }
    assert_eq!(inbox_of(&app, "alice").await["total"], 3);

    // Bad input fails the job at once (not retried) and delivers nothing.
    for bad in [
        json!({ "title": "t", "body": "b" }),
        json!({ "user_id": 5, "title": "t", "body": "b" }),
        json!({ "user_id": "", "title": "t", "body": "b" }),
        json!({ "user_id": "x".repeat(129), "title": "t", "body": "b" }),
        json!({ "user_id": "bob", "body": "b" }),
        json!({ "user_id": "bob", "title": "", "body": "b" }),
        json!({ "user_id": "bob", "title": "t" }),
        json!({ "user_id": "bob", "title": "t", "body": "b", "meta": "m" }),
        json!({ "user_id": "bob", "title": "t", "body": "b", "event_id": 7 }),
        json!({ "user_id": "bob", "title": "x".repeat(100_000), "body": "b" }),
    ] {
        let j = app
            .enqueue(json!({ "type": "notifications.send", "input": bad }))
            .await;
        let j = finished_job(&app, &s(&j["job_id"])).await;
        assert_eq!(j["status"], "failed", "{bad}: {j}");
        assert_eq!(j["attempts"], 1, "not retried: {j}");
        assert!(j["last_error"].is_string(), "{j}");
    }
    assert_eq!(inbox_of(&app, "bob").await["total"], 0);
    app.stop().await;
}
