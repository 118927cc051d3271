//! Self-registration (`POST /auth/register`): the per-address limit, then
//! the account on the caller's share of password hashing.

use entity::user;

use super::{NewAccount, register_as};
use crate::{
    auth::{claims::Role, limits, password::Caller},
    error::ApiError,
    state::AppState,
};

/// Registers a `user` for a client at `client_ip`. The attempt is counted
/// against `TESSERA_REGISTER_PER_IP` before anything else, so every attempt
/// counts whatever its answer (409 and 422 included: the 409 for a taken
/// email must not be an unthrottled oracle).
pub async fn sign_up(
    state: &AppState,
    new: NewAccount,
    client_ip: Option<&str>,
) -> Result<user::Model, ApiError> {
    limits::count_registration(
        &*state.tokens.store,
        state.settings.register_per_ip,
        client_ip,
    )
    .await?;
    // The new account is nobody's yet: the address's share only (and the
    // registrations' own bound, in `Passwords::hash_new_account`).
    let caller = Caller::new(client_ip, None);
    register_as(
        &state.db,
        &state.passwords,
        new,
        Role::User,
        &caller,
        Some(&state.mail),
    )
    .await
}
