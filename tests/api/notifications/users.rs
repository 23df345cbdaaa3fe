//! Users: upsert, batch, list and search, soft delete, attribute rules, ids in paths.

use super::*;

// ---------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_upsert_get_and_soft_delete() {
    let app = quiet_app().await;
    let t0 = app.now();
    let r = app
        .admin(
            Method::PUT,
            "/v1/admin/users/u1",
            Some(json!({
                "email": "u1@example.com",
                "attributes": { "plan": "pro", "seats": 3, "ratio": 0.5, "beta": true },
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let u = r.body;
    assert_eq!(u["id"], "u1");
    assert_eq!(u["email"], "u1@example.com");
    assert_eq!(
        u["attributes"],
        json!({ "plan": "pro", "seats": 3, "ratio": 0.5, "beta": true }),
        "attribute types are kept"
    );
    assert_eq!(u["is_active"], true, "is_active defaults to true");
    assert_eq!(u["deleted_at"], Value::Null);
    assert_eq!(ts(&u["created_at"]), t0);
    assert_eq!(ts(&u["updated_at"]), t0);

    // A second PUT replaces the user; created_at stays.
    app.advance(60);
    let r = app
        .admin(
            Method::PUT,
            "/v1/admin/users/u1",
            Some(json!({ "email": "new@example.com", "attributes": { "plan": "free" }, "is_active": false })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["email"], "new@example.com");
    assert_eq!(r.body["attributes"], json!({ "plan": "free" }));
    assert_eq!(r.body["is_active"], false);
    assert_eq!(ts(&r.body["created_at"]), t0);
    assert_eq!(ts(&r.body["updated_at"]), app.now());

    let r = app.admin(Method::GET, "/v1/admin/users/u1", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["email"], "new@example.com");

    // Soft delete: 204 with no body, and the user is still returned, with deleted_at.
    app.advance(60);
    let r = app.admin(Method::DELETE, "/v1/admin/users/u1", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(r.body, Value::Null);
    let r = app.admin(Method::GET, "/v1/admin/users/u1", None).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "a soft-deleted user is still returned"
    );
    assert_eq!(ts(&r.body["deleted_at"]), app.now());
    assert_eq!(r.body["id"], "u1");

    // Unknown users: 404 user_not_found on GET and DELETE.
    app.admin(Method::DELETE, "/v1/admin/users/nobody", None)
        .await
        .assert_error(404, "user_not_found");
    app.admin(Method::GET, "/v1/admin/users/nobody", None)
        .await
        .assert_error(404, "user_not_found");

    // An upsert of a deleted user brings it back.
    let r = app
        .admin(Method::PUT, "/v1/admin/users/u1", Some(json!({})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["deleted_at"], Value::Null);
    assert_eq!(r.body["email"], Value::Null);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_upsert_takes_up_to_10000_users_all_or_nothing() {
    let app = quiet_app().await;
    let users: Vec<Value> = (0..10_000)
        .map(|i| json!({ "id": format!("b-{i}"), "email": format!("b{i}@example.com"), "attributes": { "n": i } }))
        .collect();
    let r = app
        .admin(
            Method::POST,
            "/v1/admin/users/batch",
            Some(json!({ "users": users })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, json!({ "upserted": 10_000 }));
    let r = app
        .admin(Method::GET, "/v1/admin/users?limit=1", None)
        .await;
    assert_eq!(r.body["total"], 10_000);
    let r = app.admin(Method::GET, "/v1/admin/users/b-9999", None).await;
    assert_eq!(r.body["attributes"], json!({ "n": 9999 }));

    // 10 001 is one too many, and none of them is written.
    let over: Vec<Value> = (0..10_001)
        .map(|i| json!({ "id": format!("c-{i}") }))
        .collect();
    let r = app
        .admin(
            Method::POST,
            "/v1/admin/users/batch",
            Some(json!({ "users": over })),
        )
        .await;
    r.assert_error(400, "invalid_payload");
    assert!(r.body.to_string().contains("users"), "{}", r.body);
    app.admin(Method::GET, "/v1/admin/users/c-0", None)
        .await
        .assert_error(404, "user_not_found");

    // Empty or missing lists are 400s.
    for body in [json!({ "users": [] }), json!({}), json!({ "users": null })] {
        app.admin(Method::POST, "/v1/admin/users/batch", Some(body))
            .await
            .assert_error(400, "invalid_payload");
    }

    // One bad user fails the whole batch, naming it; nothing is written.
    let r = app
        .admin(
            Method::POST,
            "/v1/admin/users/batch",
            Some(json!({ "users": [
                { "id": "d-0" }, { "id": "d-1" }, { "id": "d-2", "attributes": { "x": { "y": 1 } } }, { "id": "d-3" },
            ] })),
        )
        .await;
    r.assert_error(400, "invalid_payload");
    assert!(
        r.body["error"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["field"].as_str().unwrap().starts_with("users[2]")),
        "the bad item is named: {}",
        r.body
    );
    app.admin(Method::GET, "/v1/admin/users/d-0", None)
        .await
        .assert_error(404, "user_not_found");

    // Upserting existing users counts them and adds no rows.
    let r = app
        .admin(
            Method::POST,
            "/v1/admin/users/batch",
            Some(json!({ "users": [{ "id": "b-0", "is_active": false }, { "id": "b-1" }] })),
        )
        .await;
    assert_eq!(r.body, json!({ "upserted": 2 }));
    let r = app
        .admin(Method::GET, "/v1/admin/users?limit=1", None)
        .await;
    assert_eq!(r.body["total"], 10_000);
    let r = app.admin(Method::GET, "/v1/admin/users/b-0", None).await;
    assert_eq!(r.body["is_active"], false);
    app.stop().await;
}

/// A user whose id is literally `batch` is reachable like any other: the batch upsert is
/// the only POST on that path, and a POST on any other user id is a 405.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_called_batch_can_be_read_replaced_and_deleted() {
    let app = quiet_app().await;
    let r = app
        .admin(
            Method::PUT,
            "/v1/admin/users/batch",
            Some(json!({ "email": "b@example.com" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["id"], "batch");
    let r = app.admin(Method::GET, "/v1/admin/users/batch", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["email"], "b@example.com");
    // The batch upsert still works beside it, and can even write that user.
    let r = app
        .admin(
            Method::POST,
            "/v1/admin/users/batch",
            Some(json!({ "users": [{ "id": "batch", "email": "c@example.com" }] })),
        )
        .await;
    assert_eq!(r.body, json!({ "upserted": 1 }));
    let r = app
        .admin(Method::GET, "/v1/admin/users/batch/notifications", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app
        .admin(Method::DELETE, "/v1/admin/users/batch", None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = app.admin(Method::GET, "/v1/admin/users/batch", None).await;
    assert!(r.body["deleted_at"].is_string(), "{}", r.body);
    assert_eq!(r.body["email"], "c@example.com", "{}", r.body);
    // POST on another user id: a known route, the wrong method, with or without a token.
    let r = app
        .admin(Method::POST, "/v1/admin/users/alice", Some(json!({})))
        .await;
    r.assert_error(405, "method_not_allowed");
    let r = app
        .send_with(Method::POST, "/v1/admin/users/alice", &[], Some(json!({})))
        .await;
    r.assert_error(405, "method_not_allowed");
    // And the batch route still needs the admin.
    let r = app
        .send_with(
            Method::POST,
            "/v1/admin/users/batch",
            &[],
            Some(json!({ "users": [] })),
        )
        .await;
    r.assert_error(401, "unauthorized");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_list_searches_id_and_email_and_pages() {
    let app = quiet_app().await;
    app.put_users(vec![
        json!({ "id": "alice", "email": "alice@example.com" }),
        json!({ "id": "bob", "email": "bob@corp.example" }),
        json!({ "id": "carol", "email": "carol@example.com" }),
        json!({ "id": "dave-ops" }),
        json!({ "id": "erin", "email": "ops@corp.example" }),
    ])
    .await;
    let ids = |b: &Value| -> Vec<String> {
        b["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| s(&u["id"]))
            .collect()
    };
    let list = |q: String| {
        let app = &app;
        async move {
            let r = app
                .admin(Method::GET, &format!("/v1/admin/users?{q}"), None)
                .await;
            assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.body);
            r.body
        }
    };
    let all = list(String::new()).await;
    assert_eq!(all["total"], 5);
    assert_eq!(ids(&all), ["alice", "bob", "carol", "dave-ops", "erin"]);
    assert_eq!(all["limit"], 50);
    assert_eq!(all["offset"], 0);
    assert_eq!(all["has_next"], false);

    let r = list("q=corp".into()).await;
    assert_eq!(ids(&r), ["bob", "erin"], "email matches");
    assert_eq!(r["total"], 2);
    let r = list("q=ops".into()).await;
    assert_eq!(ids(&r), ["dave-ops", "erin"], "id and email matches");
    let r = list("q=arol".into()).await;
    assert_eq!(ids(&r), ["carol"]);
    for wild in ["%25", "_", "%5C"] {
        let r = list(format!("q={wild}")).await;
        assert_eq!(r["total"], 0, "q={wild} is a literal substring: {r}");
    }
    let r = list("q=nothing-like-this".into()).await;
    assert_eq!(r["total"], 0);
    assert_eq!(r["items"], json!([]));

    let r = list("limit=2".into()).await;
    assert_eq!(ids(&r), ["alice", "bob"]);
    assert_eq!(r["has_next"], true);
    assert_eq!(r["total"], 5);
    assert_eq!(r["limit"], 2);
    let r = list("limit=2&offset=2".into()).await;
    assert_eq!(ids(&r), ["carol", "dave-ops"]);
    assert_eq!(r["offset"], 2);
    assert_eq!(r["has_next"], true);
    let r = list("limit=2&offset=4".into()).await;
    assert_eq!(ids(&r), ["erin"]);
    assert_eq!(r["has_next"], false);
    let r = list("q=example&limit=1&offset=1".into()).await;
    assert_eq!(ids(&r), ["bob"]);
    assert_eq!(r["total"], 4);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attribute_values_must_be_strings_numbers_or_booleans() {
    let app = quiet_app().await;
    for attrs in [
        json!({ "a": { "b": 1 } }),
        json!({ "a": [1, 2] }),
        json!({ "a": [] }),
        json!({ "a": null }),
        json!({ "ok": 1, "a": {} }),
        json!([1, 2]),
        json!("plan=pro"),
        json!(5),
        json!(true),
    ] {
        let r = app
            .admin(
                Method::PUT,
                "/v1/admin/users/attr",
                Some(json!({ "attributes": attrs })),
            )
            .await;
        r.assert_error(400, "invalid_payload");
        assert!(
            r.body["error"]["fields"][0]["field"]
                .as_str()
                .unwrap_or("")
                .starts_with("attributes"),
            "{attrs}: {}",
            r.body
        );
        let r = app
            .admin(
                Method::POST,
                "/v1/admin/users/batch",
                Some(json!({ "users": [{ "id": "attr", "attributes": attrs }] })),
            )
            .await;
        r.assert_error(400, "invalid_payload");
    }
    app.admin(Method::GET, "/v1/admin/users/attr", None)
        .await
        .assert_error(404, "user_not_found");
    // Scalars are fine.
    let r = app
        .admin(
            Method::PUT,
            "/v1/admin/users/attr",
            Some(json!({ "attributes": { "s": "x", "i": -3, "f": 2.5, "b": false } })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_ids_with_spaces_and_unicode_are_percent_encoded_in_paths() {
    let app = quiet_app().await;
    let long128 = "é".repeat(128);
    let ids = [
        "Jane Doe",
        "ünï cødé 用户 🚀",
        "a/b",
        "50%off",
        "q?x=1&y#z",
        "plus+sign",
        long128.as_str(),
    ];
    for id in ids {
        let r = app
            .admin(
                Method::PUT,
                &user_path(id),
                Some(json!({ "email": "x@example.com" })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "PUT {id:?}: {}", r.body);
        assert_eq!(r.body["id"], id);
        let r = app.admin(Method::GET, &user_path(id), None).await;
        assert_eq!(r.status, StatusCode::OK, "GET {id:?}: {}", r.body);
        assert_eq!(r.body["id"], id);
    }
    let r = app
        .admin(Method::GET, "/v1/admin/users?limit=200", None)
        .await;
    let listed: BTreeSet<String> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| s(&u["id"]))
        .collect();
    assert_eq!(listed, ids.iter().map(|s| s.to_string()).collect());
    let r = app
        .admin(
            Method::GET,
            &format!("/v1/admin/users?q={}", enc("用户")),
            None,
        )
        .await;
    assert_eq!(r.body["total"], 1, "{}", r.body);

    // A broadcast to such ids reaches them; the admin view and the user's JWT agree.
    let id = create_due(
        &app,
        "unicode",
        json!({ "type": "explicit_users", "user_ids": ["Jane Doe", "ünï cødé 用户 🚀"] }),
    )
    .await;
    app.deliver_due().await;
    let b = get_b(&app, &id).await;
    assert_eq!(
        (b["sent"].as_i64(), b["skipped"].as_i64()),
        (Some(2), Some(0)),
        "{b}"
    );
    for u in ["Jane Doe", "ünï cødé 用户 🚀"] {
        assert_eq!(broadcasts_of(&app, u).await, [id.as_str()]);
        let r = app
            .send(
                Method::GET,
                "/v1/notifications",
                Some(&app.user_jwt(u, 600)),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["total"], 1);
        assert_eq!(
            r.body["items"][0]["event_id"],
            format!("broadcast:{id}:{u}")
        );
    }

    // 129 characters, or control characters, are a 400 in every user path.
    let long = "é".repeat(129);
    for bad in [long.as_str(), "tab\there", "nul\0", "line\nbreak"] {
        for (m, suffix) in [
            (Method::GET, ""),
            (Method::PUT, ""),
            (Method::DELETE, ""),
            (Method::GET, "/notifications"),
        ] {
            let body = (m == Method::PUT).then(|| json!({}));
            let r = app
                .admin(m.clone(), &format!("{}{suffix}", user_path(bad)), body)
                .await;
            r.assert_error(400, "invalid_payload");
        }
    }
    for id in ids {
        let r = app.admin(Method::DELETE, &user_path(id), None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "DELETE {id:?}");
    }
    app.stop().await;
}
