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

conformance! {
    fn inbox_counts_follow_delivery_reads_and_retention(b) {
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
        // Newest first. Not by comparing the ids: a UUID v7 is ordered only to the
        // millisecond, and PostgreSQL makes these within one.
        assert!(page.items[0].created_at > page.items[1].created_at, "newest first");
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
    }
}

conformance! {
    fn the_feed_reads_new_items_of_the_listening_users_only(b) {
        let s = &b.store;
        let name = &b.name;
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let user = |id: &str| UserId::parse("u", id).unwrap();
        let (ann, bob, cid) = (user("ann"), user("bob"), user("cid"));
        assert_eq!(s.inbox_head().unwrap(), 0, "{name}: an empty inbox");
        let old = s.deliver_direct(&note(&ann, None), t0).unwrap();
        let start = s.inbox_head().unwrap();
        assert!(start > 0, "{name}");
        let a1 = s.deliver_direct(&note(&ann, None), t0).unwrap();
        s.deliver_direct(&note(&bob, None), t0).unwrap();
        let a2 = s.deliver_direct(&note(&ann, None), t0).unwrap();
        s.deliver_direct(&note(&cid, None), t0).unwrap();
        let head = s.inbox_head().unwrap();

        // Only ann's and bob's items after `start`, oldest first, with their users.
        let news = s
            .inbox_news(start, head, &[ann.clone(), bob.clone()], 100)
            .unwrap();
        let got: Vec<(&str, uuid::Uuid)> =
            news.iter().map(|f| (f.user.as_str(), f.item.id)).collect();
        assert_eq!(got.len(), 3, "{name}: {got:?}");
        assert_eq!((got[0].0, got[0].1), ("ann", a1.item_id), "{name}");
        assert_eq!(got[1].0, "bob", "{name}");
        assert_eq!((got[2].0, got[2].1), ("ann", a2.item_id), "{name}");
        assert!(news.windows(2).all(|w| w[0].seq < w[1].seq), "{name}");
        // Bounded by the range and the limit.
        let first = s
            .inbox_news(start, head, std::slice::from_ref(&ann), 1)
            .unwrap();
        assert_eq!(first.len(), 1);
        let rest = s
            .inbox_news(first[0].seq, head, std::slice::from_ref(&ann), 100)
            .unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].item.id, a2.item_id, "{name}");
        assert!(s
            .inbox_news(head, head, std::slice::from_ref(&ann), 100)
            .unwrap()
            .is_empty());
        assert!(s.inbox_news(start, head, &[], 100).unwrap().is_empty());

        // Unread counts of several users at once (a user without items is absent).
        let mut counts = s
            .unread_counts(&[ann.clone(), bob.clone(), user("nobody")])
            .unwrap();
        counts.sort();
        assert_eq!(counts, vec![(ann.clone(), 3), (bob.clone(), 1)], "{name}");

        // Replay after an item: the user's later items only, and the item's own sequence
        // number (below theirs); nothing after another user's item or an unknown one.
        let (anchor, after) = s.inbox_after(&ann, old.item_id, 100).unwrap();
        let ids: Vec<uuid::Uuid> = after.iter().map(|f| f.item.id).collect();
        assert_eq!(ids, vec![a1.item_id, a2.item_id], "{name}");
        let anchor = anchor.expect("the item is ann's");
        assert!(after.iter().all(|f| f.seq > anchor), "{name}");
        // The limit counts the items after the anchor, not the anchor.
        let (_, one) = s.inbox_after(&ann, old.item_id, 1).unwrap();
        assert_eq!(one.len(), 1, "{name}");
        assert_eq!(one[0].item.id, a1.item_id, "{name}");
        assert_eq!(
            s.inbox_after(&bob, old.item_id, 100).unwrap(),
            (None, vec![])
        );
        assert_eq!(
            s.inbox_after(&ann, uuid::Uuid::now_v7(), 100).unwrap(),
            (None, vec![])
        );
        // One item, the user's own only.
        assert_eq!(s.inbox_item(&ann, a1.item_id).unwrap().id, a1.item_id);
        assert!(matches!(
            s.inbox_item(&bob, a1.item_id),
            Err(StoreError::NotFound)
        ));
    }
}
