//! Who may call what: the admin token, the worker token, and browser sessions with CSRF.

use super::{Error, Result};
use crate::clock::SharedClock;
use crate::domain::time::Ts;
use crate::secret::{generate_token, random_hex, Secret};
use crate::storage::{Db, Session};
use chrono::Duration;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::time::Instant;
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

/// Failed logins allowed per client address within `THROTTLE_WINDOW`; past them every
/// login from that address (even a right one) is a 429 until the window ends.
pub const THROTTLE_FREE_FAILURES: u32 = 5;
pub const THROTTLE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// Failed login attempts per client address (in memory, per process).
#[derive(Default)]
pub struct LoginThrottle {
    failures: std::sync::Mutex<std::collections::HashMap<Option<IpAddr>, (u32, Instant)>>,
}

impl LoginThrottle {
    /// `Err(seconds)` while the address is throttled.
    fn check(&self, addr: Option<IpAddr>) -> std::result::Result<(), u64> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&addr) {
            Some((n, since)) if *n >= THROTTLE_FREE_FAILURES => {
                let left = THROTTLE_WINDOW.saturating_sub(since.elapsed());
                if left.is_zero() {
                    Ok(())
                } else {
                    Err(left.as_secs().max(1))
                }
            }
            _ => Ok(()),
        }
    }

    fn failed(&self, addr: Option<IpAddr>) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, (_, since)| since.elapsed() < THROTTLE_WINDOW);
        }
        let e = map.entry(addr).or_insert((0, Instant::now()));
        if e.1.elapsed() >= THROTTLE_WINDOW {
            *e = (0, Instant::now());
        }
        e.0 += 1;
    }

    fn succeeded(&self, addr: Option<IpAddr>) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&addr);
    }
}

/// A session as the admin sees it in `GET /v1/admin/sessions`.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub id: uuid::Uuid,
    pub created_at: Ts,
    pub expires_at: Ts,
}

/// A session's public id: the first 128 bits of the cookie's hash, as a UUID (the hash of a
/// 256-bit random cookie; it reveals nothing about the cookie).
fn session_id(token_hash: &str) -> Option<uuid::Uuid> {
    let bytes = hex::decode(token_hash.get(..32)?).ok()?;
    uuid::Uuid::from_slice(&bytes).ok()
}

#[derive(Clone)]
pub struct AuthService {
    db: Db,
    clock: SharedClock,
    admin_token: Secret,
    /// Fingerprint of the admin token: sessions opened with another one are void.
    epoch: String,
    throttle: std::sync::Arc<LoginThrottle>,
    /// The audience user tokens must name (`--jwt-audience`), if any.
    jwt_audience: Option<String>,
    failed_logins: Option<prometheus::IntCounterVec>,
    worker_token: Option<Secret>,
    jwt_secret: Option<Secret>,
    session_ttl: Duration,
}

#[derive(serde::Deserialize)]
struct UserClaims {
    sub: String,
    exp: i64,
    /// Not before (seconds since the epoch), honoured against the injected clock.
    nbf: Option<i64>,
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Constant-time comparison (both sides hashed first so their lengths do not leak).
pub fn same_secret(given: &str, expected: &str) -> bool {
    digest(given).ct_eq(&digest(expected)).into()
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
        let epoch =
            hex::encode(&digest(&format!("wp-lite session epoch\0{}", admin_token.expose()))[..8]);
        Self {
            db,
            clock,
            admin_token,
            epoch,
            throttle: std::sync::Arc::default(),
            jwt_audience: None,
            failed_logins: None,
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
        self.verify_user_until(token).map(|(user, _)| user)
    }

    /// Like [`Self::verify_user`], with the time the token expires (a stream ends then).
    pub fn verify_user_until(
        &self,
        token: &str,
    ) -> Result<(crate::domain::notify::UserId, crate::domain::Ts)> {
        use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
        let secret = self.user_secret()?;
        let mut v = Validation::new(Algorithm::HS256);
        v.validate_exp = false; // checked below against the injected clock
        v.validate_nbf = false; // likewise
                                // A token naming an audience is accepted only when it names the configured one;
                                // with an audience configured, tokens must name it.
        if let Some(aud) = &self.jwt_audience {
            v.set_audience(&[aud]);
            v.set_required_spec_claims(&["exp", "sub", "aud"]);
        } else {
            v.set_required_spec_claims(&["exp", "sub"]);
        }
        let key = DecodingKey::from_secret(secret.expose().as_bytes())
            .map_err(|e| Error::Unauthorized(format!("user tokens cannot be checked: {e}")))?;
        let data = decode::<UserClaims>(token, &key, &v)
            .map_err(|e| Error::Unauthorized(format!("invalid user token: {e}")))?;
        let now = self.clock.now().timestamp();
        if data.claims.exp <= now {
            return Err(Error::Unauthorized("the user token has expired".into()));
        }
        if data.claims.nbf.is_some_and(|nbf| nbf > now) {
            return Err(Error::Unauthorized(
                "the user token is not valid yet (nbf)".into(),
            ));
        }
        let user = crate::domain::notify::UserId::parse("sub", &data.claims.sub)
            .map_err(|e| Error::Unauthorized(format!("invalid user token: sub {}", e.message)))?;
        let until = chrono::DateTime::from_timestamp(data.claims.exp, 0)
            .ok_or_else(|| Error::Unauthorized("invalid user token: exp is out of range".into()))?;
        Ok((user, until))
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

    /// User tokens must name this audience (`aud`).
    pub fn with_jwt_audience(mut self, aud: Option<String>) -> Self {
        self.jwt_audience = aud;
        self
    }

    /// Counts refused logins in this counter (label `result`: `invalid` or `throttled`).
    pub fn with_login_metric(mut self, c: prometheus::IntCounterVec) -> Self {
        self.failed_logins = Some(c);
        self
    }

    fn count_refusal(&self, result: &str) {
        if let Some(c) = &self.failed_logins {
            c.with_label_values(&[result]).inc();
        }
    }

    /// Logs in with the admin token and opens a session. Failed attempts are throttled per
    /// client address, so a weak token cannot be guessed at line rate.
    pub async fn login(&self, token: &str, client: Option<IpAddr>) -> Result<NewSession> {
        if let Err(secs) = self.throttle.check(client) {
            self.count_refusal("throttled");
            return Err(Error::RateLimited(secs));
        }
        if !self.admin_key(token) {
            self.throttle.failed(client);
            self.count_refusal("invalid");
            return Err(Error::Unauthorized("invalid token".into()));
        }
        self.throttle.succeeded(client);
        let now = self.clock.now();
        let cookie = generate_token();
        let session = Session {
            token_hash: hex::encode(digest(&cookie)),
            csrf_token: random_hex(24),
            principal: Principal::Admin.name().into(),
            created_at: now,
            expires_at: now + self.session_ttl,
            epoch: self.epoch.clone(),
        };
        let out = NewSession {
            cookie,
            csrf_token: session.csrf_token.clone(),
            expires_at: session.expires_at,
        };
        self.db.write(move |s| s.create_session(&session)).await?;
        Ok(out)
    }

    /// Finds the live session a cookie belongs to.
    pub async fn session(&self, cookie: &str) -> Result<Option<Session>> {
        let hash = hex::encode(digest(cookie));
        let now = self.clock.now();
        let found = self.db.call(move |s| s.find_session(&hash, now)).await?;
        Ok(found.filter(|s| s.epoch == self.epoch))
    }

    /// The live sessions opened with the admin token in use, newest first.
    pub async fn sessions(&self) -> Result<Vec<SessionInfo>> {
        let now = self.clock.now();
        let all = self.db.call(move |s| s.list_sessions(now, 1000)).await?;
        Ok(all
            .into_iter()
            .filter(|s| s.epoch == self.epoch)
            .filter_map(|s| {
                Some(SessionInfo {
                    id: session_id(&s.token_hash)?,
                    created_at: s.created_at,
                    expires_at: s.expires_at,
                })
            })
            .collect())
    }

    /// Ends the session with this id (404 if there is no such live session).
    pub async fn revoke(&self, id: uuid::Uuid) -> Result<()> {
        let now = self.clock.now();
        let all = self.db.call(move |s| s.list_sessions(now, 100_000)).await?;
        let hash = all
            .into_iter()
            .find(|s| s.epoch == self.epoch && session_id(&s.token_hash) == Some(id))
            .map(|s| s.token_hash)
            .ok_or_else(|| Error::NotFound("not_found", "no such session".into()))?;
        Ok(self.db.write(move |s| s.delete_session(&hash)).await?)
    }

    /// Ends a session.
    pub async fn logout(&self, session: &Session) -> Result<()> {
        let hash = session.token_hash.clone();
        Ok(self.db.write(move |s| s.delete_session(&hash)).await?)
    }

    /// Deletes expired sessions.
    pub async fn prune(&self) -> Result<usize> {
        prune_sessions(&self.db, self.clock.now()).await
    }
}

/// Deletes sessions that expired before `now` (maintenance).
pub async fn prune_sessions(db: &Db, now: Ts) -> Result<usize> {
    Ok(db.write(move |s| s.prune_sessions(now)).await?)
}
