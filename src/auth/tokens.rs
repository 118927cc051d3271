//! The token engine: issues token pairs for sessions (refresh-token
//! families), rotates refresh tokens (the decision is `auth::rotation`),
//! checks access tokens against the store and revokes. It knows nothing of
//! accounts: callers pass the user and role they already read.

use std::{fmt, sync::Arc};

use uuid::Uuid;

use super::{
    claims::{Amr, Claims, Role, TokenType},
    keys::KeyRing,
    store::{RotateRequest, Rotation, SessionRecord, StoreResult, TokenStore, now_secs},
    verify_cache::{Lookup, VerifyCache},
};
use crate::{
    error::ApiError,
    metrics::{self, Event, RefreshOutcome, RevocationCause, event},
};

/// What login and refresh hand out.
#[derive(Clone)]
pub struct IssuedTokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
    pub refresh_expires_in: i64,
    pub user_id: Uuid,
    pub sid: Uuid,
}

/// Never prints the tokens: they are bearer secrets.
impl fmt::Debug for IssuedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedTokens")
            .field("access_token", &"[redacted]")
            .field("refresh_token", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .field("refresh_expires_in", &self.refresh_expires_in)
            .field("user_id", &self.user_id)
            .field("sid", &self.sid)
            .finish()
    }
}

#[derive(Debug, Clone, Default)]
pub struct ClientMeta {
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// The engine's numbers, in the units it uses.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    pub access_ttl: i64,
    /// Absolute session lifetime.
    pub refresh_ttl: i64,
    pub reuse_grace_ms: i64,
    /// `TESSERA_MAX_SESSIONS_PER_USER`.
    pub max_sessions: usize,
}

pub struct TokenEngine {
    pub keys: KeyRing,
    pub store: Arc<dyn TokenStore>,
    pub settings: TokenSettings,
    /// `TESSERA_VERIFY_CACHE=tracking`: answers of `check` kept until Redis
    /// invalidates them. Every revocation below forgets what it touched
    /// before it returns, so this replica never answers from the cache
    /// what it has itself revoked.
    pub cache: Option<Arc<VerifyCache>>,
}

impl TokenEngine {
    fn access_claims(
        &self,
        session: &SessionRecord,
        role: Role,
        fresh: bool,
        amr: Amr,
        now: i64,
    ) -> Claims {
        let s = &self.settings;
        Claims {
            iss: s.issuer.clone(),
            aud: s.audience.clone(),
            sub: session.user_id,
            iat: now,
            nbf: now,
            // An access token never outlives its session.
            exp: (now + s.access_ttl).min(session.expires_at),
            jti: Uuid::now_v7(),
            typ: TokenType::Access,
            sid: session.sid,
            role: Some(role),
            fresh: Some(fresh),
            amr: Some(amr),
        }
    }

    /// The refresh token of a session's current state: the same inputs always
    /// give the same bytes, which the grace rule relies on.
    fn refresh_claims(&self, session: &SessionRecord, amr: Amr) -> Claims {
        Claims {
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
            sub: session.user_id,
            iat: session.current_iat,
            nbf: session.current_iat,
            exp: session.expires_at,
            jti: session.current_jti,
            typ: TokenType::Refresh,
            sid: session.sid,
            role: None,
            fresh: None,
            amr: Some(amr),
        }
    }

    fn issue(
        &self,
        session: &SessionRecord,
        role: Role,
        fresh: bool,
        amr: Amr,
    ) -> Result<IssuedTokens, ApiError> {
        let now = now_secs();
        let access = self.access_claims(session, role, fresh, amr, now);
        Ok(IssuedTokens {
            access_token: self.keys.sign(&access)?,
            refresh_token: self.keys.sign(&self.refresh_claims(session, amr))?,
            expires_in: access.exp - now,
            refresh_expires_in: session.expires_at - now,
            user_id: session.user_id,
            sid: session.sid,
        })
    }

    /// Starts a new session for a user who just proved their password, and
    /// a second factor when `amr` says so (the access token is fresh).
    /// Beyond `max_sessions` the user's oldest sessions end.
    pub async fn start_session(
        &self,
        user_id: Uuid,
        role: Role,
        amr: Amr,
        meta: ClientMeta,
    ) -> Result<IssuedTokens, ApiError> {
        let now = now_secs();
        let session = SessionRecord {
            sid: Uuid::now_v7(),
            user_id,
            current_jti: Uuid::now_v7(),
            current_iat: now,
            parent_jti: None,
            rotated_ms: None,
            created_at: now,
            last_used_at: now,
            expires_at: now + self.settings.refresh_ttl,
            user_agent: meta.user_agent,
            ip: meta.ip,
        };
        let ended = self
            .store
            .start_session(&session, self.settings.max_sessions)
            .await?;
        if ended > 0 {
            self.forget_user(user_id);
            metrics::revocation(RevocationCause::SessionCap);
        }
        self.issue(&session, role, true, amr)
    }

    /// Rotates a verified refresh token (API.md "Tokens"); `role` is the
    /// user's current role, read before the rotation so that a failure to
    /// read it spends nothing.
    pub async fn rotate(&self, presented: &Claims, role: Role) -> Result<IssuedTokens, ApiError> {
        let req = RotateRequest {
            sid: presented.sid,
            presented: presented.jti,
            new_jti: Uuid::now_v7(),
            new_iat: now_secs(),
            grace_ms: self.settings.reuse_grace_ms,
        };
        let (session, outcome) = match self.store.rotate(&req).await? {
            Rotation::Rotated(s) => {
                event(Event::RefreshRotated);
                (s, RefreshOutcome::Rotated)
            }
            Rotation::WithinGrace(s) => {
                event(Event::RefreshWithinGrace);
                (s, RefreshOutcome::Grace)
            }
            Rotation::Reused => {
                self.forget_session(presented.sid);
                event(Event::RefreshReused);
                metrics::refresh(RefreshOutcome::Reused);
                metrics::revocation(RevocationCause::Reuse);
                tracing::warn!(sid = %presented.sid, user = %presented.sub, "refresh token reuse: session revoked");
                return Err(ApiError::TokenReused);
            }
            Rotation::Gone => {
                event(Event::RefreshRevoked);
                metrics::refresh(RefreshOutcome::Revoked);
                return Err(ApiError::TokenRevoked);
            }
        };
        if session.user_id != presented.sub {
            metrics::refresh(RefreshOutcome::Invalid);
            return Err(ApiError::TokenInvalid);
        }
        metrics::refresh(outcome);
        // The session's `amr`, carried by its refresh token.
        self.issue(&session, role, false, presented.amr())
    }

    /// Verifies an access token and checks it against the store (one round
    /// trip), or against the verify cache when it holds a good answer.
    pub async fn authorize_access(&self, token: &str) -> Result<Claims, ApiError> {
        let claims = self.keys.verify(token, TokenType::Access)?;
        let good = match &self.cache {
            None => self.store.check(claims.sid, claims.jti).await?,
            Some(cache) => {
                let now = now_secs();
                match cache.lookup(claims.sid, claims.jti, now) {
                    Lookup::Hit => true,
                    Lookup::Off => self.store.check(claims.sid, claims.jti).await?,
                    Lookup::Miss(ticket) => {
                        let good = self.store.check(claims.sid, claims.jti).await?;
                        if good {
                            cache.insert(
                                ticket, claims.sub, claims.sid, claims.jti, claims.exp, now,
                            );
                        }
                        good
                    }
                }
            }
        };
        if good {
            Ok(claims)
        } else {
            Err(ApiError::TokenRevoked)
        }
    }

    fn forget_session(&self, sid: Uuid) {
        if let Some(c) = &self.cache {
            c.forget_session(sid);
        }
    }

    fn forget_user(&self, user_id: Uuid) {
        if let Some(c) = &self.cache {
            c.forget_user(user_id);
        }
    }

    /// Verifies a refresh token's signature and claims; the store decides at
    /// rotation. Within the leeway after `exp` the token is still expired:
    /// its session ended at `exp`, and "revoked" would be the wrong answer.
    /// Refused tokens are counted here (they never reach `rotate`).
    pub fn verify_refresh(&self, token: &str) -> Result<Claims, ApiError> {
        let verified = self
            .keys
            .verify(token, TokenType::Refresh)
            .and_then(|claims| {
                if claims.exp <= now_secs() {
                    Err(ApiError::TokenExpired)
                } else {
                    Ok(claims)
                }
            });
        match &verified {
            Ok(_) => {}
            Err(ApiError::TokenExpired) => metrics::refresh(RefreshOutcome::Expired),
            Err(_) => metrics::refresh(RefreshOutcome::Invalid),
        }
        verified
    }

    /// Revokes this access token and ends its session.
    pub async fn logout(&self, claims: &Claims) -> Result<(), ApiError> {
        let ttl = claims.exp - now_secs();
        let done = self
            .store
            .logout(claims.sub, claims.sid, claims.jti, ttl)
            .await;
        // Also after a failure: the write may have happened.
        self.forget_session(claims.sid);
        done?;
        event(Event::Logout);
        metrics::revocation(RevocationCause::Logout);
        Ok(())
    }

    /// Ends every session of the user, so all their tokens are refused.
    pub async fn end_user_sessions(&self, user_id: Uuid) -> StoreResult<()> {
        let done = self.store.end_user_sessions(user_id).await;
        self.forget_user(user_id);
        done
    }

    /// Ends one session of the user; `false` when there is none or it is
    /// someone else's.
    pub async fn end_session(&self, user_id: Uuid, sid: Uuid) -> StoreResult<bool> {
        let done = self.store.end_session(user_id, sid).await;
        self.forget_session(sid);
        done
    }

    /// `end_session` asked for by the user (`DELETE /auth/sessions/{id}`),
    /// counted as a revocation; the internal uses above are not.
    pub async fn revoke_session(&self, user_id: Uuid, sid: Uuid) -> StoreResult<bool> {
        let ended = self.end_session(user_id, sid).await?;
        if ended {
            metrics::revocation(RevocationCause::SessionEnd);
        }
        Ok(ended)
    }

    /// The user's live sessions, oldest first.
    pub async fn sessions(&self, user_id: Uuid) -> StoreResult<Vec<SessionRecord>> {
        self.store.sessions(user_id).await
    }
}

#[cfg(test)]
mod tests {
    //! Own writes first: with a live cache that no push ever reaches (no
    //! tracking listener here), only the engine's own forgetting can make
    //! a revocation by this replica refuse a cached token at once.

    use secrecy::SecretString;

    use super::*;
    use crate::auth::store::MemoryStore;

    fn engine(max_sessions: usize) -> TokenEngine {
        let secret = SecretString::from("unit-test-secret-0123456789abcdef-0123".to_owned());
        let keys = KeyRing::hs256(crate::auth::keys::KeySettings {
            secret: &secret,
            previous: &[],
            issuer: "tessera",
            audience: "tessera",
            leeway_secs: 0,
        })
        .expect("key ring");
        let cache = Arc::new(VerifyCache::new(100));
        cache.set_live(true);
        TokenEngine {
            keys,
            store: Arc::new(MemoryStore::new()),
            settings: TokenSettings {
                issuer: "tessera".into(),
                audience: "tessera".into(),
                access_ttl: 900,
                refresh_ttl: 3600,
                reuse_grace_ms: 0,
                max_sessions,
            },
            cache: Some(cache),
        }
    }

    /// Starts a session and checks its access token until it is a hit.
    async fn cached_session(e: &TokenEngine, user: Uuid) -> IssuedTokens {
        let t = e
            .start_session(user, Role::User, Amr::Pwd, ClientMeta::default())
            .await
            .expect("start");
        let hits = |e: &TokenEngine| {
            e.cache
                .as_ref()
                .map(|c| c.stats.hits.load(std::sync::atomic::Ordering::Relaxed))
        };
        e.authorize_access(&t.access_token).await.expect("good");
        let before = hits(e);
        e.authorize_access(&t.access_token).await.expect("good");
        assert!(hits(e) > before, "cached");
        t
    }

    async fn refused(e: &TokenEngine, t: &IssuedTokens) {
        assert!(
            matches!(
                e.authorize_access(&t.access_token).await,
                Err(ApiError::TokenRevoked)
            ),
            "answered from the cache after this replica revoked it"
        );
    }

    #[tokio::test]
    async fn own_revocations_are_never_answered_from_the_cache() {
        let e = engine(2);
        let user = Uuid::now_v7();

        let t = cached_session(&e, user).await;
        let claims = e.keys.verify(&t.access_token, TokenType::Access).unwrap();
        e.logout(&claims).await.unwrap();
        refused(&e, &t).await;

        let t = cached_session(&e, user).await;
        assert!(e.end_session(user, t.sid).await.unwrap());
        refused(&e, &t).await;

        let (t1, t2) = (
            cached_session(&e, user).await,
            cached_session(&e, user).await,
        );
        e.end_user_sessions(user).await.unwrap();
        refused(&e, &t1).await;
        refused(&e, &t2).await;

        // Reuse of a rotated refresh token ends the session.
        let t = cached_session(&e, user).await;
        let presented = e.verify_refresh(&t.refresh_token).unwrap();
        e.rotate(&presented, Role::User).await.unwrap();
        assert!(matches!(
            e.rotate(&presented, Role::User).await,
            Err(ApiError::TokenReused)
        ));
        refused(&e, &t).await;

        // The session cap (2) ends the oldest.
        let user = Uuid::now_v7();
        let oldest = cached_session(&e, user).await;
        cached_session(&e, user).await;
        cached_session(&e, user).await;
        refused(&e, &oldest).await;
    }
}
