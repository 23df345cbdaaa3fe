//! Inboxes: a user's items, read marks, and direct notifications.

use super::streams::InboxSignal;
use super::{Error, Result};
use crate::clock::SharedClock;
use crate::domain::notify::{Delivered, DirectNotification, InboxItem, InboxPage, UserId};
use crate::storage::Db;

#[derive(Clone)]
pub struct InboxService {
    db: Db,
    clock: SharedClock,
    signal: InboxSignal,
}

impl InboxService {
    pub fn new(db: Db, clock: SharedClock) -> Self {
        Self {
            db,
            clock,
            signal: InboxSignal::default(),
        }
    }

    /// Tells this process's real-time streams about the changes this service makes.
    pub fn with_signal(mut self, signal: InboxSignal) -> Self {
        self.signal = signal;
        self
    }

    /// One of the user's items.
    pub async fn item(&self, user: UserId, item: uuid::Uuid) -> Result<InboxItem> {
        self.db
            .call(move |s| s.inbox_item(&user, item))
            .await
            .map_err(|e| Error::from_store(e, "not_found"))
    }

    /// The user's items after `item` (a stream's `Last-Event-ID`), oldest first.
    pub async fn after(
        &self,
        user: UserId,
        item: uuid::Uuid,
        limit: usize,
    ) -> Result<crate::storage::Replay> {
        Ok(self
            .db
            .call(move |s| s.inbox_after(&user, item, limit))
            .await?)
    }

    pub async fn page(&self, user: UserId, limit: usize, offset: usize) -> Result<InboxPage> {
        Ok(self
            .db
            .call(move |s| s.inbox_page(&user, limit, offset))
            .await?)
    }

    pub async fn unread(&self, user: UserId) -> Result<i64> {
        Ok(self.db.call(move |s| s.unread_count(&user)).await?)
    }

    /// Marks one of the user's items read; reading a read item is fine.
    pub async fn read(&self, user: UserId, item: uuid::Uuid) -> Result<InboxItem> {
        let now = self.clock.now();
        let who = user.clone();
        let read = self
            .db
            .write(move |s| s.mark_read(&user, item, now))
            .await
            .map_err(|e| Error::from_store(e, "not_found"))?;
        self.signal.unread_changed(&who);
        Ok(read)
    }

    pub async fn read_all(&self, user: UserId) -> Result<usize> {
        let now = self.clock.now();
        let who = user.clone();
        let n = self.db.write(move |s| s.mark_all_read(&user, now)).await?;
        self.signal.unread_changed(&who);
        Ok(n)
    }

    /// Delivers one notification to one user, once per `event_id`.
    pub async fn deliver(&self, n: DirectNotification) -> Result<Delivered> {
        let now = self.clock.now();
        let delivered = self.db.write(move |s| s.deliver_direct(&n, now)).await?;
        if delivered.created {
            self.signal.items_committed();
        }
        Ok(delivered)
    }

    /// Retention, in bounded batches.
    pub async fn prune(
        &self,
        retention_days: Option<u32>,
        max_per_user: Option<usize>,
    ) -> Result<usize> {
        let before = retention_days.and_then(|d| {
            self.clock
                .now()
                .checked_sub_signed(chrono::Duration::days(d as i64))
        });
        let mut total = 0;
        loop {
            let n = self
                .db
                .call(move |s| s.prune_inbox(before, max_per_user, 5000))
                .await?;
            total += n;
            if n < 5000 {
                return Ok(total);
            }
        }
    }
}
