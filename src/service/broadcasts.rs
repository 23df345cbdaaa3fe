//! Broadcasts: create, edit, schedule, send now, cancel, delete. Every status change is
//! guarded in the statement that makes it, so the API and workers never race.

use super::{Error, Result};
use crate::clock::SharedClock;
use crate::domain::notify::{
    Broadcast, BroadcastDraft, BroadcastFilter, BroadcastPage, BroadcastStatus, ChunkOutcome,
};
use crate::domain::Ts;
use crate::storage::Db;
use std::sync::Arc;
use tokio::sync::Notify;
use uuid::Uuid;

const NOT_FOUND: &str = "broadcast_not_found";

#[derive(Clone)]
pub struct BroadcastService {
    db: Db,
    clock: SharedClock,
    /// Wakes an in-process `notifications.broadcast` worker (send-now). `notify_one`
    /// keeps a permit when the worker is busy in a tick, so a wake-up is never lost.
    wake: Arc<Notify>,
    signal: super::streams::InboxSignal,
}

impl BroadcastService {
    pub fn new(db: Db, clock: SharedClock, wake: Arc<Notify>) -> Self {
        Self {
            db,
            clock,
            wake,
            signal: Default::default(),
        }
    }

    /// Tells this process's real-time streams about the items each chunk delivers.
    pub fn with_signal(mut self, signal: super::streams::InboxSignal) -> Self {
        self.signal = signal;
        self
    }

    // ---- delivery (the `notifications.broadcast` worker) ----

    /// Claims up to `limit` due broadcasts (and ones whose claim expired) for `owner`, for
    /// `lease` from now.
    pub async fn claim_due(
        &self,
        owner: String,
        limit: usize,
        lease: chrono::Duration,
    ) -> Result<Vec<Broadcast>> {
        let now = self.clock.now();
        Ok(self
            .db
            .write(move |s| s.claim_due_broadcasts(&owner, limit, now + lease, now))
            .await?)
    }

    /// Delivers the next `chunk` recipients of a claimed broadcast and renews the claim.
    pub async fn deliver_chunk(
        &self,
        id: Uuid,
        owner: String,
        chunk: usize,
        lease: chrono::Duration,
    ) -> Result<ChunkOutcome> {
        let now = self.clock.now();
        let outcome = self
            .db
            .write(move |s| s.deliver_broadcast_chunk(id, &owner, chunk, now + lease, now))
            .await
            .map_err(|e| Error::from_store(e, NOT_FOUND))?;
        self.signal.items_committed();
        Ok(outcome)
    }

    /// Ends a claimed broadcast that cannot be delivered (None if the claim is gone).
    pub async fn fail_delivery(
        &self,
        id: Uuid,
        owner: String,
        error: String,
    ) -> Result<Option<Broadcast>> {
        let now = self.clock.now();
        Ok(self
            .db
            .write(move |s| s.fail_broadcast(id, &owner, &error, now))
            .await?)
    }

    /// A past `scheduled_at` is stored as now.
    fn not_before_now(&self, at: Option<Ts>) -> Option<Ts> {
        let now = self.clock.now();
        at.map(|t| t.max(now))
    }

    pub async fn create(&self, mut draft: BroadcastDraft, created_by: String) -> Result<Broadcast> {
        let now = self.clock.now();
        draft.scheduled_at = self.not_before_now(draft.scheduled_at);
        let b = Broadcast {
            id: Uuid::now_v7(),
            title: draft.title,
            body: draft.body,
            audience: draft.audience,
            status: if draft.scheduled_at.is_some() {
                BroadcastStatus::Scheduled
            } else {
                BroadcastStatus::Draft
            },
            created_by,
            created_at: now,
            updated_at: now,
            scheduled_at: draft.scheduled_at,
            started_at: None,
            finished_at: None,
            total: 0,
            sent: 0,
            failed: 0,
            skipped: 0,
            last_error: None,
        };
        let stored = b.clone();
        self.db.write(move |s| s.create_broadcast(&stored)).await?;
        if b.status == BroadcastStatus::Scheduled && b.scheduled_at <= Some(now) {
            self.wake.notify_one();
        }
        Ok(b)
    }

    pub async fn get(&self, id: Uuid) -> Result<Broadcast> {
        self.db
            .call(move |s| s.get_broadcast(id))
            .await
            .map_err(|e| Error::from_store(e, NOT_FOUND))
    }

    pub async fn list(&self, filter: BroadcastFilter) -> Result<BroadcastPage> {
        Ok(self.db.call(move |s| s.list_broadcasts(&filter)).await?)
    }

    pub async fn replace(&self, id: Uuid, mut draft: BroadcastDraft) -> Result<Broadcast> {
        let now = self.clock.now();
        draft.scheduled_at = self.not_before_now(draft.scheduled_at);
        let b = self
            .db
            .write(move |s| s.replace_broadcast(id, &draft, now))
            .await
            .map_err(|e| Error::from_store(e, NOT_FOUND))?;
        if b.status == BroadcastStatus::Scheduled && b.scheduled_at <= Some(now) {
            self.wake.notify_one();
        }
        Ok(b)
    }

    pub async fn schedule(&self, id: Uuid, at: Ts) -> Result<Broadcast> {
        let now = self.clock.now();
        let at = at.max(now);
        let b = self
            .db
            .write(move |s| s.schedule_broadcast(id, at, now))
            .await
            .map_err(|e| Error::from_store(e, NOT_FOUND))?;
        if at <= now {
            self.wake.notify_one();
        }
        Ok(b)
    }

    /// Scheduled for now; an in-process worker starts at once.
    pub async fn send_now(&self, id: Uuid) -> Result<Broadcast> {
        self.schedule(id, self.clock.now()).await
    }

    pub async fn cancel(&self, id: Uuid) -> Result<Broadcast> {
        let now = self.clock.now();
        self.db
            .write(move |s| s.cancel_broadcast(id, now))
            .await
            .map_err(|e| Error::from_store(e, NOT_FOUND))
    }

    pub async fn delete(&self, id: Uuid) -> Result<()> {
        let now = self.clock.now();
        self.db
            .write(move |s| s.delete_broadcast(id, now))
            .await
            .map_err(|e| Error::from_store(e, NOT_FOUND))
    }
}
