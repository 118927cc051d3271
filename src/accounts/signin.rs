//! Login and refresh: where an account meets the token engine.

use secrecy::SecretString;

use super::{Identifier, authenticate, role_of};
use crate::{
    auth::{
        claims::{Amr, Claims},
        limits::Limiter,
        tokens::ClientMeta,
        tokens::IssuedTokens,
    },
    error::ApiError,
    metrics::{self, Event, LoginOutcome, RefreshOutcome, event},
    state::AppState,
};

/// `attempt_login`, counted by outcome.
pub async fn login(
    state: &AppState,
    ident: &Identifier,
    password: SecretString,
    meta: ClientMeta,
) -> Result<IssuedTokens, ApiError> {
    let result = attempt_login(state, ident, password, meta).await;
    metrics::login(login_outcome(&result));
    result
}

fn login_outcome<T>(result: &Result<T, ApiError>) -> LoginOutcome {
    match result {
        Ok(_) => LoginOutcome::Success,
        Err(ApiError::InvalidCredentials) => LoginOutcome::InvalidCredentials,
        Err(ApiError::UserBlocked) => LoginOutcome::Blocked,
        Err(ApiError::EmailNotVerified) => LoginOutcome::EmailNotVerified,
        Err(ApiError::MfaRequired(_)) => LoginOutcome::MfaRequired,
        Err(ApiError::TooManyRequests { .. }) => LoginOutcome::RateLimited,
        Err(ApiError::ServiceUnavailable) => LoginOutcome::Unavailable,
        // A lost login that could tell neither block nor password change.
        Err(ApiError::TokenRevoked) => LoginOutcome::AccountChanged,
        Err(_) => LoginOutcome::Error,
    }
}

/// Checks the credentials and starts a session (`start_checked`), or, for
/// an account with a second factor, hands out its challenge.
async fn attempt_login(
    state: &AppState,
    ident: &Identifier,
    password: SecretString,
    meta: ClientMeta,
) -> Result<IssuedTokens, ApiError> {
    let limiter = Limiter::new(&*state.tokens.store, state.settings.login_limits);
    let user = authenticate(
        state.reader(),
        &state.passwords,
        &limiter,
        ident,
        password,
        meta.ip.as_deref(),
    )
    .await?;
    // After the password check: it tells nothing to someone without it.
    if state.mail.verification == crate::config::EmailVerification::Required && !user.email_verified
    {
        return Err(ApiError::EmailNotVerified);
    }
    if user.mfa_enabled {
        return Err(super::mfa::challenge(state, &user).await?);
    }
    start_checked(state, &user, Amr::Pwd, meta).await
}

/// Starts a session for `user` as read before the credentials were
/// checked. A change that ends the user's sessions (`changes`) while they
/// were being checked wins: once the session is stored, the row is read
/// again, and a replaced security stamp ends the new session (see
/// `changes` for why this order closes the race).
pub(super) async fn start_checked(
    state: &AppState,
    user: &entity::user::Model,
    amr: Amr,
    meta: ClientMeta,
) -> Result<IssuedTokens, ApiError> {
    let issued = state
        .tokens
        .start_session(user.id, role_of(user), amr, meta)
        .await?;
    let lost = match state.reads().user(user.id).await {
        Ok(Some(now)) if now.security_stamp == user.security_stamp => {
            event(Event::LoginSucceeded);
            return Ok(issued);
        }
        Ok(Some(now)) if now.blocked => ApiError::UserBlocked,
        Ok(Some(now)) if now.password_hash != user.password_hash => ApiError::InvalidCredentials,
        Ok(None) => ApiError::InvalidCredentials,
        // Logged out everywhere or given another role meanwhile.
        Ok(Some(_)) => ApiError::TokenRevoked,
        // Cannot tell: fail closed, leave no session behind.
        Err(e) => e,
    };
    event(Event::LoginLostToAccountChange);
    if let Err(e) = state.tokens.end_session(user.id, issued.sid).await {
        tracing::warn!(error = %e, "could not end the session of a lost login");
        return Err(e.into());
    }
    Err(lost)
}

/// Rotates a verified refresh token. The user is read first, so a database
/// outage answers 503 before anything is spent; a blocked or deleted user's
/// session is over (`TokenRevoked`).
pub async fn refresh(state: &AppState, presented: &Claims) -> Result<IssuedTokens, ApiError> {
    let user = match state.reads().user(presented.sub).await? {
        Some(u) if !u.blocked => u,
        _ => {
            state
                .tokens
                .end_session(presented.sub, presented.sid)
                .await?;
            metrics::refresh(RefreshOutcome::Revoked);
            return Err(ApiError::TokenRevoked);
        }
    };
    state.tokens.rotate(presented, role_of(&user)).await
}
