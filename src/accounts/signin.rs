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
    metrics::{self, LoginOutcome, RefreshOutcome},
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
    super::session_start::start_checked(state, &user, Amr::Pwd, meta).await
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
