//! The token engine: sessions (refresh-token families), rotation with reuse
//! detection and the optional grace, access-token checks and revocation.

use uuid::Uuid;

use super::{
    claims::{Claims, Role, TokenType},
    store::{Rotation, SessionRecord, now_ms},
};
use crate::{accounts, error::ApiError, state::AppState};

/// What login and refresh hand out.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
    pub refresh_expires_in: i64,
    pub user_id: Uuid,
}

#[derive(Debug, Clone, Default)]
pub struct ClientMeta {
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

fn access_claims(
    state: &AppState,
    user: Uuid,
    role: Role,
    sid: Uuid,
    fresh: bool,
    now: i64,
    session_end: i64,
) -> Claims {
    Claims {
        iss: state.settings.issuer.clone(),
        aud: state.settings.audience.clone(),
        sub: user,
        iat: now,
        nbf: now,
        // An access token never outlives its session.
        exp: (now + state.settings.access_ttl).min(session_end),
        jti: Uuid::now_v7(),
        typ: TokenType::Access,
        sid,
        role: Some(role),
        fresh: Some(fresh),
    }
}

/// The refresh token of a session's current state: the same inputs always
/// give the same bytes, which the grace rule relies on.
fn refresh_claims(state: &AppState, session: &SessionRecord) -> Claims {
    Claims {
        iss: state.settings.issuer.clone(),
        aud: state.settings.audience.clone(),
        sub: session.user_id,
        iat: session.current_iat,
        nbf: session.current_iat,
        exp: session.expires_at,
        jti: session.current_jti,
        typ: TokenType::Refresh,
        sid: session.sid,
        role: None,
        fresh: None,
    }
}

fn issue(
    state: &AppState,
    session: &SessionRecord,
    role: Role,
    fresh: bool,
) -> Result<IssuedTokens, ApiError> {
    let now = super::store::now_secs();
    let access = access_claims(
        state,
        session.user_id,
        role,
        session.sid,
        fresh,
        now,
        session.expires_at,
    );
    Ok(IssuedTokens {
        access_token: state.keys.sign(&access)?,
        refresh_token: state.keys.sign(&refresh_claims(state, session))?,
        expires_in: access.exp - now,
        refresh_expires_in: session.expires_at - now,
        user_id: session.user_id,
    })
}

/// Starts a new session for a user who just proved their password: the
/// access token is fresh.
pub async fn login(
    state: &AppState,
    user: &entity::user::Model,
    meta: ClientMeta,
) -> Result<IssuedTokens, ApiError> {
    let now = super::store::now_secs();
    let session = SessionRecord {
        sid: Uuid::now_v7(),
        user_id: user.id,
        current_jti: Uuid::now_v7(),
        current_iat: now,
        parent_jti: None,
        rotated_ms: None,
        created_at: now,
        last_used_at: now,
        expires_at: now + state.settings.refresh_ttl,
        user_agent: meta.user_agent,
        ip: meta.ip,
    };
    state.store.start_session(&session).await?;
    crate::metrics::event(crate::metrics::Event::LoginSucceeded);
    issue(state, &session, accounts::role_of(user), true)
}

/// Rotates a verified refresh token (see API.md "Tokens").
pub async fn refresh(state: &AppState, presented: &Claims) -> Result<IssuedTokens, ApiError> {
    let now_ms = now_ms();
    let outcome = state
        .store
        .rotate(
            presented.sid,
            presented.jti,
            Uuid::now_v7(),
            now_ms.div_euclid(1000),
            now_ms,
            state.settings.reuse_grace_ms,
        )
        .await?;
    use crate::metrics::{Event, event};
    let session = match outcome {
        Rotation::Rotated(s) => {
            event(Event::RefreshRotated);
            s
        }
        Rotation::WithinGrace(s) => {
            event(Event::RefreshWithinGrace);
            s
        }
        Rotation::Reused => {
            event(Event::RefreshReused);
            tracing::warn!(sid = %presented.sid, user = %presented.sub, "refresh token reuse: session revoked");
            return Err(ApiError::TokenReused);
        }
        Rotation::Gone => {
            event(Event::RefreshRevoked);
            return Err(ApiError::TokenRevoked);
        }
    };
    if session.user_id != presented.sub {
        return Err(ApiError::TokenInvalid);
    }
    // A deleted or blocked user's sessions are over, whatever the store says.
    let user = match accounts::find(&state.db, session.user_id).await? {
        Some(u) if !u.blocked => u,
        _ => {
            state
                .store
                .end_session(session.user_id, session.sid)
                .await?;
            return Err(ApiError::TokenRevoked);
        }
    };
    issue(state, &session, accounts::role_of(&user), false)
}

/// Verifies an access token and checks it against the store (one round trip).
pub async fn authorize_access(state: &AppState, token: &str) -> Result<Claims, ApiError> {
    let claims = state.keys.verify(token, TokenType::Access)?;
    if state.store.check(claims.sid, claims.jti).await? {
        Ok(claims)
    } else {
        Err(ApiError::TokenRevoked)
    }
}

/// Verifies a refresh token's signature and claims; the store decides at rotation.
pub fn verify_refresh(state: &AppState, token: &str) -> Result<Claims, ApiError> {
    state.keys.verify(token, TokenType::Refresh)
}

/// Revokes this access token and ends its session.
pub async fn logout(state: &AppState, claims: &Claims) -> Result<(), ApiError> {
    let ttl = claims.exp - super::store::now_secs();
    state
        .store
        .logout(claims.sub, claims.sid, claims.jti, ttl)
        .await?;
    crate::metrics::event(crate::metrics::Event::Logout);
    Ok(())
}

/// Ends every session of the user, so all their tokens are refused.
pub async fn revoke_user(state: &AppState, user_id: Uuid) -> Result<(), ApiError> {
    state.store.end_user_sessions(user_id).await?;
    Ok(())
}

/// Ends one of the caller's sessions; another user's is `NotFound`.
pub async fn end_own_session(state: &AppState, user_id: Uuid, sid: Uuid) -> Result<(), ApiError> {
    if state.store.end_session(user_id, sid).await? {
        Ok(())
    } else {
        Err(ApiError::NotFound("No such session.".into()))
    }
}
