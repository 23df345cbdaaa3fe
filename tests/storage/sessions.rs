use chrono::{Duration, TimeZone, Utc};
use wp_lite::storage::Session;

conformance! {
    fn sessions_are_found_until_they_expire_or_are_deleted(b) {
        let s = &b.store;
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let session = Session {
            token_hash: "h1".into(),
            csrf_token: "c1".into(),
            principal: "admin".into(),
            created_at: now,
            expires_at: now + Duration::hours(1),
            epoch: "e1".into(),
        };
        s.create_session(&session).unwrap();
        let found = s.find_session("h1", now).unwrap().expect("found");
        assert_eq!(found.csrf_token, "c1", "{}", b.name);
        assert!(s
            .find_session("h1", now + Duration::hours(2))
            .unwrap()
            .is_none());
        assert!(s.find_session("other", now).unwrap().is_none());
        assert_eq!(s.prune_sessions(now + Duration::hours(2)).unwrap(), 1);
        assert!(s.find_session("h1", now).unwrap().is_none());
        s.create_session(&Session {
            token_hash: "h2".into(),
            ..session
        })
        .unwrap();
        s.delete_session("h2").unwrap();
        assert!(s.find_session("h2", now).unwrap().is_none());
    }
}

conformance! {
    fn sessions_keep_their_fields_and_expire_exactly_at_expires_at(b) {
        let s = &b.store;
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let session = |hash: &str, ttl: Duration| Session {
            token_hash: hash.into(),
            csrf_token: format!("csrf-{hash}"),
            principal: format!("user:{hash}"),
            created_at: now,
            expires_at: now + ttl,
            epoch: format!("epoch-{hash}"),
        };
        s.create_session(&session("a", Duration::minutes(10)))
            .unwrap();
        s.create_session(&session("b", Duration::minutes(30)))
            .unwrap();
        s.create_session(&session("c", Duration::minutes(20)))
            .unwrap();
        let a = s.find_session("a", now).unwrap().expect("a");
        assert_eq!(a.epoch, "epoch-a", "{}", b.name);
        // Live sessions, newest first (all created at once here; at most `limit`).
        let live = s.list_sessions(now + Duration::minutes(15), 10).unwrap();
        let mut hashes: Vec<&str> = live.iter().map(|x| x.token_hash.as_str()).collect();
        hashes.sort();
        assert_eq!(hashes, ["b", "c"], "{}", b.name);
        assert_eq!(s.list_sessions(now, 1).unwrap().len(), 1);
        assert_eq!(
            (
                a.token_hash.as_str(),
                a.csrf_token.as_str(),
                a.principal.as_str()
            ),
            ("a", "csrf-a", "user:a"),
            "{}",
            b.name
        );
        assert_eq!(
            (a.created_at, a.expires_at),
            (now, now + Duration::minutes(10))
        );
        // A token hash is created once.
        assert!(
            s.create_session(&session("a", Duration::minutes(5)))
                .is_err(),
            "{}",
            b.name
        );
        // Valid strictly before expires_at; at expires_at it is gone (and pruned).
        let at = now + Duration::minutes(20);
        assert!(s
            .find_session("c", at - Duration::milliseconds(1))
            .unwrap()
            .is_some());
        assert!(s.find_session("c", at).unwrap().is_none(), "{}", b.name);
        assert_eq!(s.prune_sessions(at).unwrap(), 2, "{}", b.name);
        assert!(s.find_session("b", at).unwrap().is_some());
        assert_eq!(s.prune_sessions(at).unwrap(), 0);
        // Deleting an unknown session is not an error.
        s.delete_session("nope").unwrap();
    }
}
