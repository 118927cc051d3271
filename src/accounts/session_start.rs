//! The last step of every login (by password, or by password and second
//! factor): the session starts, then the account is read again, so that a
//! change of the account in flight wins.

use super::role_of;
use crate::{
    auth::{
        claims::Amr,
        tokens::{ClientMeta, IssuedTokens},
    },
    error::ApiError,
    metrics::{Event, event},
    state::AppState,
};

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
