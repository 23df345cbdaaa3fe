//! Inboxes: a user's items, read marks, and direct notifications.

use super::{Error, Result};
use crate::clock::SharedClock;
use crate::domain::notify::{Delivered, DirectNotification, InboxItem, InboxPage, UserId};
use crate::storage::Db;

#[derive(Clone)]
pub struct InboxService {
    db: Db,
    clock: SharedClock,
}

impl InboxService {
    pub fn new(db: Db, clock: SharedClock) -> Self {
        Self { db, clock }
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
        self.db
            .call(move |s| s.mark_read(&user, item, now))
            .await
            .map_err(|e| Error::from_store(e, "not_found"))
    }

    pub async fn read_all(&self, user: UserId) -> Result<usize> {
        let now = self.clock.now();
        Ok(self.db.call(move |s| s.mark_all_read(&user, now)).await?)
    }

    /// Delivers one notification to one user, once per `event_id`.
    pub async fn deliver(&self, n: DirectNotification) -> Result<Delivered> {
        let now = self.clock.now();
        Ok(self.db.call(move |s| s.deliver_direct(&n, now)).await?)
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
