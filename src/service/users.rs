//! Users mirrored from the host application.

use super::{Error, Result};
use crate::clock::SharedClock;
use crate::domain::notify::{NewUser, User, UserId};
use crate::storage::Db;

const NOT_FOUND: &str = "user_not_found";

/// The most users one batch upsert takes.
pub const MAX_BATCH: usize = 10_000;

#[derive(Clone)]
pub struct UserService {
    db: Db,
    clock: SharedClock,
}

impl UserService {
    pub fn new(db: Db, clock: SharedClock) -> Self {
        Self { db, clock }
    }

    pub async fn upsert(&self, user: NewUser) -> Result<User> {
        let now = self.clock.now();
        let id = user.id.clone();
        self.db
            .call(move |s| {
                s.upsert_users(vec![user], now)?;
                s.get_user(&id)
            })
            .await
            .map_err(|e| Error::from_store(e, NOT_FOUND))
    }

    /// Upserts up to `MAX_BATCH` users in one transaction.
    pub async fn upsert_many(&self, users: Vec<NewUser>) -> Result<usize> {
        let now = self.clock.now();
        Ok(self.db.write(move |s| s.upsert_users(users, now)).await?)
    }

    pub async fn get(&self, id: UserId) -> Result<User> {
        self.db
            .call(move |s| s.get_user(&id))
            .await
            .map_err(|e| Error::from_store(e, NOT_FOUND))
    }

    pub async fn list(
        &self,
        q: Option<String>,
        limit: usize,
        offset: usize,
    ) -> Result<(Vec<User>, i64)> {
        Ok(self
            .db
            .call(move |s| s.list_users(q.as_deref(), limit, offset))
            .await?)
    }

    pub async fn delete(&self, id: UserId) -> Result<()> {
        let now = self.clock.now();
        self.db
            .write(move |s| s.delete_user(&id, now))
            .await
            .map_err(|e| Error::from_store(e, NOT_FOUND))
    }
}
