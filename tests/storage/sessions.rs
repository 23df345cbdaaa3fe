use crate::each_backend;
use chrono::{Duration, TimeZone, Utc};
use wp_lite::storage::Session;

#[test]
fn sessions_are_found_until_they_expire_or_are_deleted() {
    each_backend(|b| {
        let s = &b.store;
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let session = Session {
            token_hash: "h1".into(),
            csrf_token: "c1".into(),
            principal: "admin".into(),
            created_at: now,
            expires_at: now + Duration::hours(1),
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
    });
}
