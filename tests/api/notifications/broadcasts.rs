//! Broadcasts: every route under both prefixes, drafts and schedules, audience errors,
//! status guards, cancel while sending, lists with their counts and summaries.

use super::*;

// ---------------------------------------------------------------------------------------
// Broadcasts: routes, statuses and guards
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_broadcast_route_works_under_both_prefixes() {
    let app = quiet_app().await;
    app.put_plain_users("u", 3).await;
    for (prefix, other) in [(P1, P2), (P2, P1)] {
        let r = app
            .admin(Method::POST, prefix, Some(draft("T", all_users())))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{prefix}: {}", r.body);
        let id = s(&r.body["id"]);
        assert_eq!(r.body["status"], "draft");
        for p in [prefix, other] {
            let r = app.admin(Method::GET, &format!("{p}/{id}"), None).await;
            assert_eq!(r.status, StatusCode::OK, "{p}: {}", r.body);
            assert_eq!(r.body["id"], id.as_str());
            let r = app.admin(Method::GET, p, None).await;
            assert_eq!(r.status, StatusCode::OK);
            assert!(
                r.body["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|b| b["id"] == id.as_str()),
                "{p} lists {id}"
            );
        }
        let r = app
            .admin(
                Method::PUT,
                &format!("{prefix}/{id}"),
                Some(draft("T2", all_users())),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["title"], "T2");
        let at = app.now() + chrono::Duration::hours(1);
        let r = action(
            &app,
            prefix,
            &id,
            "schedule",
            Some(json!({ "scheduled_at": at.to_rfc3339() })),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["status"], "scheduled");
        assert_eq!(ts(&r.body["scheduled_at"]), at);
        let r = action(&app, prefix, &id, "send-now", None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["status"], "scheduled");
        assert_eq!(ts(&r.body["scheduled_at"]), app.now());
        let r = action(&app, prefix, &id, "cancel", None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["status"], "cancelled");
        let r = app
            .admin(Method::DELETE, &format!("{prefix}/{id}"), None)
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
        for p in [prefix, other] {
            app.admin(Method::GET, &format!("{p}/{id}"), None)
                .await
                .assert_error(404, "broadcast_not_found");
        }

        // And one delivered end to end, driven through this prefix.
        let r = app
            .admin(Method::POST, prefix, Some(draft("go", all_users())))
            .await;
        let id = s(&r.body["id"]);
        let r = action(&app, prefix, &id, "send-now", None).await;
        assert_eq!(r.status, StatusCode::OK);
        app.deliver_due().await;
        let r = app
            .admin(Method::GET, &format!("{prefix}/{id}"), None)
            .await;
        assert_eq!(r.body["status"], "sent", "{}", r.body);
        assert_eq!(r.body["sent"], 3);
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_makes_a_draft_or_a_scheduled_broadcast() {
    let app = quiet_app().await;
    app.put_plain_users("u", 2).await;
    let now = app.now();

    let d = create(&app, draft("Draft", all_users())).await;
    assert_eq!(d["status"], "draft");
    assert_eq!(d["title"], "Draft");
    assert_eq!(d["body"], "body of Draft");
    assert_eq!(d["audience"], all_users());
    assert_eq!(d["created_by"], "admin", "defaults to the principal");
    assert_eq!(ts(&d["created_at"]), now);
    assert_eq!(ts(&d["updated_at"]), now);
    for k in ["scheduled_at", "started_at", "finished_at"] {
        assert_eq!(d[k], Value::Null, "{k}");
    }
    for k in ["total", "sent", "failed", "skipped"] {
        assert_eq!(d[k], 0, "{k}");
    }
    Uuid::parse_str(d["id"].as_str().unwrap()).expect("the id is a UUID");
    let mut with_null = draft("Null", all_users());
    with_null["scheduled_at"] = Value::Null;
    assert_eq!(create(&app, with_null).await["status"], "draft");

    // A future time with an offset is kept (in UTC).
    let mut body = draft("Later", all_users());
    body["scheduled_at"] = json!("2026-01-02T14:00:00+02:00");
    body["created_by"] = json!("ops");
    let later = create(&app, body).await;
    assert_eq!(later["status"], "scheduled");
    assert_eq!(
        ts(&later["scheduled_at"]),
        "2026-01-02T12:00:00Z"
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    );
    assert_eq!(later["created_by"], "ops");

    // A past time is stored as now.
    let mut body = draft("Feature launch", all_users());
    body["scheduled_at"] = json!("2025-09-26T12:00:00Z");
    let past = create(&app, body).await;
    assert_eq!(past["status"], "scheduled");
    assert_eq!(ts(&past["scheduled_at"]), now);

    // A tick delivers what is due, not what is later, nor drafts.
    app.deliver_due().await;
    assert_eq!(
        get_b(&app, past["id"].as_str().unwrap()).await["status"],
        "sent"
    );
    assert_eq!(
        get_b(&app, later["id"].as_str().unwrap()).await["status"],
        "scheduled"
    );
    assert_eq!(
        get_b(&app, d["id"].as_str().unwrap()).await["status"],
        "draft"
    );
    app.clock.set("2026-01-02T12:00:00Z".parse().unwrap());
    app.deliver_due().await;
    let b = get_b(&app, later["id"].as_str().unwrap()).await;
    assert_eq!(b["status"], "sent");
    assert_eq!(ts(&b["started_at"]), app.now());
    assert_eq!(ts(&b["finished_at"]), app.now());
    assert_eq!(
        get_b(&app, d["id"].as_str().unwrap()).await["status"],
        "draft"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audience_errors_are_400s_that_name_the_problem() {
    let app = quiet_app().await;
    let too_long = "x".repeat(129);
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({ "type": "explicit_users" }),
            "explicit_users audience requires user_ids",
        ),
        (
            json!({ "type": "explicit_users", "user_ids": null }),
            "explicit_users audience requires user_ids",
        ),
        (
            json!({ "type": "explicit_users", "user_ids": [] }),
            "user_ids",
        ),
        (
            json!({ "type": "explicit_users", "user_ids": ["", "  "] }),
            "user_ids",
        ),
        (
            json!({ "type": "explicit_users", "user_ids": "u1" }),
            "user_ids",
        ),
        (
            json!({ "type": "explicit_users", "user_ids": [1] }),
            "user_ids",
        ),
        (
            json!({ "type": "explicit_users", "user_ids": [too_long] }),
            "user_ids",
        ),
        (json!({ "type": "segment" }), "filters"),
        (json!({ "type": "segment", "filters": {} }), "filters"),
        (json!({ "type": "segment", "filters": [] }), "filters"),
        (
            json!({ "type": "segment", "filters": { "plan": { "a": 1 } } }),
            "plan",
        ),
        (
            json!({ "type": "segment", "filters": { "plan": [] } }),
            "plan",
        ),
        (
            json!({ "type": "segment", "filters": { "plan": [["pro"]] } }),
            "plan",
        ),
        (
            json!({ "type": "segment", "filters": { "plan": null } }),
            "plan",
        ),
        (json!({ "type": "everyone" }), "unknown audience type"),
        (json!({ "type": 5 }), "type"),
        (json!({}), "type"),
        (json!("all_users"), "audience"),
        (json!(["all_users"]), "audience"),
    ];
    let target = s(&create(&app, draft("target", all_users())).await["id"]);
    for (audience, needle) in cases {
        let r = app
            .admin(Method::POST, P1, Some(draft("x", audience.clone())))
            .await;
        r.assert_error(400, "invalid_payload");
        let message = s(&r.body["error"]["message"]);
        assert!(
            message.contains(needle),
            "{audience}: message {message:?} should name {needle:?}"
        );
        assert!(
            r.body["error"]["fields"]
                .as_array()
                .is_some_and(|f| !f.is_empty()),
            "{}",
            r.body
        );
        // The same rules on a replacement.
        let r = app
            .admin(
                Method::PUT,
                &format!("{P1}/{target}"),
                Some(draft("x", audience.clone())),
            )
            .await;
        r.assert_error(400, "invalid_payload");
    }
    // More than 100 000 distinct ids.
    let ids: Vec<String> = (0..100_001).map(|i| format!("{i:x}")).collect();
    let r = app
        .admin(
            Method::POST,
            P1,
            Some(draft(
                "x",
                json!({ "type": "explicit_users", "user_ids": ids }),
            )),
        )
        .await;
    r.assert_error(400, "invalid_payload");
    let r = list_b(&app, "").await;
    assert_eq!(r["total"], 1, "nothing but the target was created");
    assert_eq!(get_b(&app, &target).await["title"], "target");
    app.stop().await;
}

/// One broadcast in each status; returns status → id.
async fn one_of_each_status(app: &TestApp) -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    // sending: claimed by an owner that never delivers.
    let sending = create_due(app, "sending", all_users()).await;
    assert_eq!(claim(app, "stuck-owner").await, [sending.as_str()]);
    m.insert("sending", sending);
    // sent: delivered by a tick.
    let sent = create_due(app, "sent", all_users()).await;
    app.deliver_due().await;
    assert_eq!(get_b(app, &sent).await["status"], "sent");
    m.insert("sent", sent);
    // failed: claimed, then failed.
    let failed = create_due(app, "failed", all_users()).await;
    assert_eq!(claim(app, "failing-owner").await, [failed.as_str()]);
    let (fid, now) = (Uuid::parse_str(&failed).unwrap(), app.now());
    let f = app
        .db()
        .call(move |s| s.fail_broadcast(fid, "failing-owner", "boom", now))
        .await
        .unwrap();
    assert!(f.is_some());
    assert_eq!(get_b(app, &failed).await["status"], "failed");
    m.insert("failed", failed);
    // cancelled, draft, scheduled (later).
    let cancelled = s(&create(app, draft("cancelled", all_users())).await["id"]);
    assert_eq!(
        action(app, P1, &cancelled, "cancel", None).await.body["status"],
        "cancelled"
    );
    m.insert("cancelled", cancelled);
    m.insert(
        "draft",
        s(&create(app, draft("draft", all_users())).await["id"]),
    );
    let mut later = draft("scheduled", all_users());
    later["scheduled_at"] = json!((app.now() + chrono::Duration::days(1)).to_rfc3339());
    m.insert("scheduled", s(&create(app, later).await["id"]));
    for (status, id) in &m {
        assert_eq!(get_b(app, id).await["status"], *status);
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_guard_is_a_409_invalid_status() {
    let app = quiet_app().await;
    app.put_plain_users("u", 2).await;
    let ids = one_of_each_status(&app).await;
    let later = json!({ "scheduled_at": (app.now() + chrono::Duration::hours(2)).to_rfc3339() });

    for p in PREFIXES {
        for status in ["sending", "sent", "failed", "cancelled"] {
            let id = &ids[status];
            app.admin(
                Method::PUT,
                &format!("{p}/{id}"),
                Some(draft("edited", all_users())),
            )
            .await
            .assert_error(409, "invalid_status");
            action(&app, p, id, "send-now", None)
                .await
                .assert_error(409, "invalid_status");
            action(&app, p, id, "schedule", Some(later.clone()))
                .await
                .assert_error(409, "invalid_status");
        }
        for status in ["sent", "failed", "cancelled"] {
            action(&app, p, &ids[status], "cancel", None)
                .await
                .assert_error(409, "invalid_status");
        }
        for status in ["scheduled", "sending", "sent", "failed"] {
            app.admin(Method::DELETE, &format!("{p}/{}", ids[status]), None)
                .await
                .assert_error(409, "invalid_status");
        }
    }
    // Nothing changed.
    for (status, id) in &ids {
        let b = get_b(&app, id).await;
        assert_eq!(b["status"], *status, "{b}");
        assert_ne!(b["title"], "edited");
    }

    // What the guards allow: edits and schedules of draft and scheduled.
    let r = app
        .admin(
            Method::PUT,
            &format!("{P1}/{}", ids["scheduled"]),
            Some(draft("now a draft", all_users())),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "draft", "no scheduled_at: back to draft");
    assert_eq!(r.body["scheduled_at"], Value::Null);
    let mut body = draft(
        "scheduled again",
        json!({ "type": "explicit_users", "user_ids": ["u0"] }),
    );
    body["scheduled_at"] = later["scheduled_at"].clone();
    let r = app
        .admin(Method::PUT, &format!("{P1}/{}", ids["draft"]), Some(body))
        .await;
    assert_eq!(r.body["status"], "scheduled", "{}", r.body);
    assert_eq!(r.body["audience"]["user_ids"], json!(["u0"]));
    let r = action(&app, P1, &ids["scheduled"], "schedule", Some(later.clone())).await;
    assert_eq!(r.body["status"], "scheduled", "{}", r.body);

    // Cancel from sending (the stuck one) is allowed.
    let r = action(&app, P1, &ids["sending"], "cancel", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "cancelled");

    // Delete: draft and cancelled only, then 404 everywhere.
    let fresh_draft = s(&create(&app, draft("to delete", all_users())).await["id"]);
    for id in [&fresh_draft, &ids["cancelled"]] {
        let r = app.admin(Method::DELETE, &format!("{P2}/{id}"), None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
        for p in PREFIXES {
            app.admin(Method::GET, &format!("{p}/{id}"), None)
                .await
                .assert_error(404, "broadcast_not_found");
            app.admin(Method::DELETE, &format!("{p}/{id}"), None)
                .await
                .assert_error(404, "broadcast_not_found");
            app.admin(
                Method::PUT,
                &format!("{p}/{id}"),
                Some(draft("x", all_users())),
            )
            .await
            .assert_error(404, "broadcast_not_found");
            for a in ["send-now", "cancel"] {
                action(&app, p, id, a, None)
                    .await
                    .assert_error(404, "broadcast_not_found");
            }
            action(&app, p, id, "schedule", Some(later.clone()))
                .await
                .assert_error(404, "broadcast_not_found");
        }
        let listed = list_b(&app, "limit=200").await;
        assert!(
            !listed["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b["id"] == id.as_str()),
            "a deleted broadcast is not listed"
        );
    }
    // An unknown but well-formed id.
    let unknown = Uuid::now_v7().to_string();
    app.admin(Method::GET, &format!("{P1}/{unknown}"), None)
        .await
        .assert_error(404, "broadcast_not_found");
    action(&app, P1, &unknown, "cancel", None)
        .await
        .assert_error(404, "broadcast_not_found");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_sending_broadcast_after_the_chunk_in_hand() {
    let app = quiet_app().await;
    let n = CHUNK + 5;
    app.put_plain_users("u", n).await;
    let id = create_due(&app, "big", all_users()).await;
    assert_eq!(claim(&app, "w1").await, [id.as_str()]);
    let b = get_b(&app, &id).await;
    assert_eq!(b["status"], "sending");
    assert_eq!(b["total"], n);
    match chunk(&app, &id, "w1").await {
        ChunkOutcome::Progress(b) => assert_eq!(b.sent, CHUNK as i64),
        other => panic!("expected progress, got {other:?}"),
    }
    app.advance(1);
    let r = action(&app, P1, &id, "cancel", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "cancelled");
    assert_eq!(r.body["sent"], CHUNK);
    assert_eq!(ts(&r.body["finished_at"]), app.now());

    // The worker's next chunk finds its claim gone.
    assert_eq!(chunk(&app, &id, "w1").await, ChunkOutcome::Stopped);
    // Nor does a later tick pick it up again.
    app.advance(120);
    app.deliver_due().await;
    let b = get_b(&app, &id).await;
    assert_eq!(b["status"], "cancelled");
    assert_eq!(b["sent"], CHUNK, "counters keep what was delivered: {b}");
    assert_eq!(b["total"], n);
    assert_eq!(b["failed"], 0);
    let totals = inbox_totals(&app, "u", 0..n).await;
    assert!(
        totals[..CHUNK].iter().all(|t| *t == 1),
        "the delivered chunk stays"
    );
    assert!(
        totals[CHUNK..].iter().all(|t| *t == 0),
        "no more after cancel"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_status_counts_and_recipients() {
    let app = quiet_app().await;
    app.put_plain_users("u", 3).await;
    // sending (total 3), then sent ×2 (3 and 2), failed (1), and the rest.
    let sending = create_due(&app, "Zeta", all_users()).await;
    claim(&app, "stuck").await;
    app.advance(1);
    let sent1 = create_due(&app, "Epsilon", all_users()).await;
    app.advance(1);
    let sent2 = create_due(
        &app,
        "Alpha sent",
        json!({ "type": "explicit_users", "user_ids": ["u0", "u1"] }),
    )
    .await;
    app.deliver_due().await;
    app.advance(1);
    let failed = create_due(
        &app,
        "Eta",
        json!({ "type": "explicit_users", "user_ids": ["u0"] }),
    )
    .await;
    claim(&app, "doomed").await;
    let (fid, now) = (Uuid::parse_str(&failed).unwrap(), app.now());
    app.db()
        .call(move |s| s.fail_broadcast(fid, "doomed", "boom", now))
        .await
        .unwrap();
    app.advance(1);
    let mut b = draft("Alpha launch", all_users());
    b["created_by"] = json!("ops");
    let d1 = s(&create(&app, b).await["id"]);
    app.advance(1);
    let mut b = draft("Beta", all_users());
    b["body"] = json!("the alpha inside the body");
    b["created_by"] = json!("marketing");
    let d2 = s(&create(&app, b).await["id"]);
    app.advance(1);
    let mut b = draft("Gamma", all_users());
    b["created_by"] = json!("alpha-team");
    b["scheduled_at"] = json!((app.now() + chrono::Duration::days(1)).to_rfc3339());
    let s1 = s(&create(&app, b).await["id"]);
    app.advance(1);
    let c1 = s(&create(&app, draft("Delta", all_users())).await["id"]);
    action(&app, P1, &c1, "cancel", None).await;

    let ids = |b: &Value| -> Vec<String> {
        b["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| s(&x["id"]))
            .collect()
    };
    let counts = |draft: i64,
                  scheduled: i64,
                  sending: i64,
                  sent: i64,
                  failed: i64,
                  cancelled: i64| {
        json!({ "draft": draft, "scheduled": scheduled, "sending": sending, "sent": sent, "failed": failed, "cancelled": cancelled })
    };

    let all = list_b(&app, "").await;
    assert_eq!(all["total"], 8);
    assert_eq!(
        ids(&all),
        [
            c1.as_str(),
            s1.as_str(),
            d2.as_str(),
            d1.as_str(),
            failed.as_str(),
            sent2.as_str(),
            sent1.as_str(),
            sending.as_str()
        ],
        "newest first"
    );
    assert_eq!(all["status_counts"], counts(2, 1, 1, 2, 1, 1));
    assert_eq!(all["recipients"], 3 + 3 + 2 + 1);
    assert_eq!(all["limit"], 50);
    assert_eq!(all["offset"], 0);
    assert_eq!(all["has_next"], false);
    let alias = app.admin(Method::GET, P2, None).await;
    assert_eq!(alias.body, all, "the alias lists the same");

    // statuses is repeatable; status_counts ignore it.
    let r = list_b(&app, "statuses=draft&statuses=sent").await;
    assert_eq!(
        ids(&r),
        [d2.as_str(), d1.as_str(), sent2.as_str(), sent1.as_str()]
    );
    assert_eq!(r["total"], 4);
    assert_eq!(r["status_counts"], counts(2, 1, 1, 2, 1, 1));
    assert_eq!(r["recipients"], 5);
    let r = list_b(&app, "statuses=sending").await;
    assert_eq!(ids(&r), [sending.as_str()]);
    assert_eq!(r["recipients"], 3);

    // q: a substring of title, body or created_by; counts under q.
    let r = list_b(&app, "q=lpha").await;
    assert_eq!(
        ids(&r),
        [s1.as_str(), d2.as_str(), d1.as_str(), sent2.as_str()],
        "title, body and created_by match"
    );
    assert_eq!(r["total"], 4);
    assert_eq!(r["status_counts"], counts(2, 1, 0, 1, 0, 0));
    assert_eq!(r["recipients"], 2);
    let r = list_b(&app, "q=lpha&statuses=sent&statuses=scheduled").await;
    assert_eq!(ids(&r), [s1.as_str(), sent2.as_str()]);
    assert_eq!(r["status_counts"], counts(2, 1, 0, 1, 0, 0));
    let r = list_b(&app, "q=marketing").await;
    assert_eq!(ids(&r), [d2.as_str()]);
    for q in ["nothing-matches", "%25", "_"] {
        let r = list_b(&app, &format!("q={q}")).await;
        assert_eq!(r["total"], 0, "q={q}: {r}");
        assert_eq!(r["items"], json!([]));
        assert_eq!(r["status_counts"], counts(0, 0, 0, 0, 0, 0), "all six keys");
        assert_eq!(r["recipients"], 0);
    }

    // Paging.
    let r = list_b(&app, "limit=3").await;
    assert_eq!(ids(&r), [c1.as_str(), s1.as_str(), d2.as_str()]);
    assert_eq!(r["has_next"], true);
    assert_eq!(r["total"], 8);
    assert_eq!(r["limit"], 3);
    let r = list_b(&app, "limit=3&offset=6").await;
    assert_eq!(ids(&r), [sent1.as_str(), sending.as_str()]);
    assert_eq!(r["has_next"], false);
    assert_eq!(r["offset"], 6);
    let r = list_b(&app, "limit=3&offset=100").await;
    assert_eq!(r["items"], json!([]));
    assert_eq!(r["total"], 8);
    app.stop().await;
}

/// A list of broadcasts summarises a long explicit audience (its first 100 ids and the
/// count); the broadcast's own view has every id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_lists_summarise_long_explicit_audiences() {
    let app = quiet_app().await;
    let ids: Vec<String> = (0..150).map(|i| format!("user-{i}")).collect();
    let r = app
        .admin(
            Method::POST,
            "/v1/admin/notifications/broadcasts",
            Some(json!({ "title": "T", "body": "B", "audience": { "type": "explicit_users", "user_ids": ids } })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = s(&r.body["id"]);
    let list = app
        .admin(Method::GET, "/v1/admin/notifications/broadcasts", None)
        .await;
    let a = &list.body["items"][0]["audience"];
    assert_eq!(a["user_ids"].as_array().unwrap().len(), 100, "{a}");
    assert_eq!(a["user_count"], 150);
    assert_eq!(a["user_ids_truncated"], true);
    let one = app
        .admin(
            Method::GET,
            &format!("/v1/admin/notifications/broadcasts/{id}"),
            None,
        )
        .await;
    assert_eq!(
        one.body["audience"]["user_ids"].as_array().unwrap().len(),
        150
    );
    app.stop().await;
}
