//! Who may call what: the admin token, the worker token, and browser sessions with CSRF.

use super::{Error, Result};
use crate::clock::SharedClock;
use crate::config::Secret;
use crate::domain::time::Ts;
use crate::storage::{Db, Session};
use chrono::Duration;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Who a request acts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Worker,
}

impl Principal {
    pub fn name(self) -> &'static str {
        match self {
            Principal::Admin => "admin",
            Principal::Worker => "worker",
        }
    }
}

/// A new session: the cookie value (shown once) and its CSRF token.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub cookie: String,
    pub csrf_token: String,
    pub expires_at: Ts,
}

#[derive(Clone)]
pub struct AuthService {
    db: Db,
    clock: SharedClock,
    admin_token: Secret,
    worker_token: Option<Secret>,
    jwt_secret: Option<Secret>,
    session_ttl: Duration,
}

#[derive(serde::Deserialize)]
struct UserClaims {
    sub: String,
    exp: i64,
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Constant-time comparison (both sides hashed first so their lengths do not leak).
pub fn same_secret(given: &str, expected: &str) -> bool {
    digest(given).ct_eq(&digest(expected)).into()
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    hex::encode(buf)
}

/// A fresh random token with 256 bits of entropy.
pub fn generate_token() -> String {
    random_hex(32)
}

impl AuthService {
    pub fn new(
        db: Db,
        clock: SharedClock,
        admin_token: Secret,
        worker_token: Option<Secret>,
        jwt_secret: Option<Secret>,
        session_ttl: Duration,
    ) -> Self {
        Self {
            db,
            clock,
            admin_token,
            worker_token,
            jwt_secret,
            session_ttl,
        }
    }

    /// The JWT secret, or the 401 that says none is configured.
    fn user_secret(&self) -> Result<&Secret> {
        self.jwt_secret.as_ref().ok_or_else(|| {
            Error::Unauthorized(
                "user tokens are not accepted: this server has no --jwt-secret configured".into(),
            )
        })
    }

    /// Fails with a 401 saying so when no `--jwt-secret` is configured (checked before
    /// looking for a token, so that a client without one learns why too).
    pub fn require_user_tokens(&self) -> Result<()> {
        self.user_secret().map(|_| ())
    }

    /// Verifies an end user's HS256 JWT (`sub` = user id, `exp` required) against the
    /// injected clock.
    pub fn verify_user(&self, token: &str) -> Result<crate::domain::notify::UserId> {
        use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
        let secret = self.user_secret()?;
        let mut v = Validation::new(Algorithm::HS256);
        v.validate_exp = false; // checked below against the injected clock
        v.set_required_spec_claims(&["exp", "sub"]);
        let key = DecodingKey::from_secret(secret.expose().as_bytes())
            .map_err(|e| Error::Unauthorized(format!("user tokens cannot be checked: {e}")))?;
        let data = decode::<UserClaims>(token, &key, &v)
            .map_err(|e| Error::Unauthorized(format!("invalid user token: {e}")))?;
        if data.claims.exp <= self.clock.now().timestamp() {
            return Err(Error::Unauthorized("the user token has expired".into()));
        }
        crate::domain::notify::UserId::parse("sub", &data.claims.sub)
            .map_err(|e| Error::Unauthorized(format!("invalid user token: sub {}", e.message)))
    }

    /// Checks a bearer token: the admin token or the worker token.
    pub fn bearer(&self, token: &str) -> Option<Principal> {
        if same_secret(token, self.admin_token.expose()) {
            Some(Principal::Admin)
        } else if self
            .worker_token
            .as_ref()
            .is_some_and(|w| same_secret(token, w.expose()))
        {
            Some(Principal::Worker)
        } else {
            None
        }
    }

    /// Checks the original platform's `X-Admin-Key` (admin token only).
    pub fn admin_key(&self, key: &str) -> bool {
        same_secret(key, self.admin_token.expose())
    }

    /// Logs in with the admin token and opens a session.
    pub async fn login(&self, token: &str) -> Result<NewSession> {
        if !self.admin_key(token) {
            return Err(Error::Unauthorized("invalid token".into()));
        }
        let now = self.clock.now();
        let cookie = generate_token();
        let session = Session {
            token_hash: hex::encode(digest(&cookie)),
            csrf_token: random_hex(24),
            principal: Principal::Admin.name().into(),
            created_at: now,
            expires_at: now + self.session_ttl,
        };
        let out = NewSession {
            cookie,
            csrf_token: session.csrf_token.clone(),
            expires_at: session.expires_at,
        };
        self.db.call(move |s| s.create_session(&session)).await?;
        Ok(out)
    }

    /// Finds the live session a cookie belongs to.
    pub async fn session(&self, cookie: &str) -> Result<Option<Session>> {
        let hash = hex::encode(digest(cookie));
        let now = self.clock.now();
        Ok(self.db.call(move |s| s.find_session(&hash, now)).await?)
    }

    /// Ends a session.
    pub async fn logout(&self, session: &Session) -> Result<()> {
        let hash = session.token_hash.clone();
        Ok(self.db.call(move |s| s.delete_session(&hash)).await?)
    }

    /// Deletes expired sessions.
    pub async fn prune(&self) -> Result<usize> {
        prune_sessions(&self.db, self.clock.now()).await
    }
}

/// Deletes sessions that expired before `now` (maintenance).
pub async fn prune_sessions(db: &Db, now: Ts) -> Result<usize> {
    Ok(db.call(move |s| s.prune_sessions(now)).await?)
}
