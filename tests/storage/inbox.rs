use crate::each_backend;
use chrono::{Duration, TimeZone, Utc};
use wp_lite::domain::notify::{DirectNotification, UserId};
use wp_lite::storage::StoreError;

fn note(user: &UserId, event: Option<&str>) -> DirectNotification {
    DirectNotification {
        user_id: user.clone(),
        title: "t".into(),
        body: "b".into(),
        meta: None,
        event_id: event.map(String::from),
    }
}

#[test]
fn inbox_counts_follow_delivery_reads_and_retention() {
    each_backend(|b| {
        let s = &b.store;
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let (ann, bob) = (
            UserId::parse("u", "ann").unwrap(),
            UserId::parse("u", "bob").unwrap(),
        );
        let first = s.deliver_direct(&note(&ann, Some("e1")), t0).unwrap();
        assert!(first.created, "{}", b.name);
        // The same event id again is the same item, and counts once.
        let again = s.deliver_direct(&note(&ann, Some("e1")), t0).unwrap();
        assert_eq!((again.item_id, again.created), (first.item_id, false));
        s.deliver_direct(&note(&ann, None), t0 + Duration::seconds(1))
            .unwrap();
        s.deliver_direct(&note(&ann, None), t0 + Duration::seconds(2))
            .unwrap();
        s.deliver_direct(&note(&bob, None), t0).unwrap();
        let page = s.inbox_page(&ann, 2, 0).unwrap();
        assert_eq!((page.total, page.unread, page.items.len()), (3, 3, 2));
        assert!(page.items[0].id > page.items[1].id, "newest first");
        // Reading is idempotent and only counts once; another user's item is not found.
        s.mark_read(&ann, first.item_id, t0).unwrap();
        s.mark_read(&ann, first.item_id, t0 + Duration::seconds(5))
            .unwrap();
        assert_eq!(s.unread_count(&ann).unwrap(), 2);
        assert!(matches!(
            s.mark_read(&bob, first.item_id, t0),
            Err(StoreError::NotFound)
        ));
        assert_eq!(s.mark_all_read(&ann, t0).unwrap(), 2);
        assert_eq!(s.unread_count(&ann).unwrap(), 0);
        assert_eq!(s.unread_count(&bob).unwrap(), 1);
        // Retention keeps the counts right.
        s.prune_inbox(None, Some(1), 100).unwrap();
        let page = s.inbox_page(&ann, 50, 0).unwrap();
        assert_eq!((page.total, page.unread, page.items.len()), (1, 0, 1));
        s.prune_inbox(Some(t0 + Duration::seconds(1)), None, 100)
            .unwrap();
        assert_eq!(s.inbox_page(&bob, 50, 0).unwrap().total, 0);
        assert_eq!(s.unread_count(&bob).unwrap(), 0);
        assert_eq!(s.inbox_page(&ann, 50, 0).unwrap().total, 1);
    });
}
