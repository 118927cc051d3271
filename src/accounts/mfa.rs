//! The second factor (API.md "Second factor (TOTP)"): enrolment and its
//! confirmation, the login challenge and its answer, removal, new recovery
//! codes, and the code a password reset of such an account needs.
//!
//! The pieces: codes and their one-time steps in `auth::totp`, the sealed
//! secret in `auth::sealed`, recovery codes in `auth::recovery_codes`, the
//! challenge in `auth::mfa_token`. Rules that hold everywhere here:
//! - A code is checked under the login limits of the account: a wrong one
//!   counts as a failed login (429 over the limit), a right one clears the
//!   account's counter at that address, as a login does.
//! - A TOTP step is accepted once per account on every replica (claimed in
//!   the token store, `SET NX`); a recovery code is used by deleting its
//!   row, so of two concurrent uses one deletes it and wins.
//! - A change of the factor (confirm, remove, new recovery codes) replaces
//!   the security stamp and ends the user's other sessions, in the order
//!   of `changes::apply_in`: inside the transaction, then after the commit
//!   for a login that stored its session meanwhile (it also sees the new
//!   stamp and ends itself). A pending login challenge carries the stamp it
//!   was made under, so it dies with the change too.

use chrono::Utc;
use entity::{recovery_code, totp_factor, user};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction,
    EntityTrait, QueryFilter, TransactionTrait,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{changes::lock_user, new_stamp, session_start};
use crate::{
    auth::{
        claims::Amr,
        limits::Limiter,
        mfa_token::{self, MfaToken},
        recovery_codes,
        sealed::Sealed,
        store::{LimitKey, now_secs},
        tokens::{ClientMeta, IssuedTokens},
        totp::{self, TotpSecret},
    },
    error::{ApiError, MfaChallenge},
    metrics::{self, Event, RevocationCause},
    state::AppState,
};

/// What enrolment shows once: the secret for manual entry, the URI and
/// its QR code for scanning.
pub struct Enrolment {
    pub secret: String,
    pub otpauth_uri: String,
    pub qr_svg: String,
}

/// The signed-in user changing their own factor: who, the session that
/// stays when the others end, and the client address the login limits
/// count a wrong code against.
pub struct Caller {
    pub user_id: Uuid,
    pub sid: Uuid,
    pub ip: Option<String>,
}

/// Which codes a check takes: a confirmation proves the app has the new
/// secret, so only a TOTP code does there.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Accept {
    TotpOnly,
    TotpOrRecovery,
}

async fn factor_of(
    db: &impl ConnectionTrait,
    user_id: Uuid,
) -> Result<Option<totp_factor::Model>, ApiError> {
    Ok(totp_factor::Entity::find_by_id(user_id).one(db).await?)
}

/// The user's confirmed factor, if any.
async fn active_factor(
    db: &impl ConnectionTrait,
    user_id: Uuid,
) -> Result<Option<totp_factor::Model>, ApiError> {
    Ok(factor_of(db, user_id).await?.filter(|f| f.confirmed))
}

fn no_factor() -> ApiError {
    ApiError::NotFound("This account has no active second factor.".into())
}

/// The secret of `factor`. A secret that does not open means the data key
/// changed (`TESSERA_DATA_KEY`): an operator's problem, logged as such.
fn open_secret(state: &AppState, factor: &totp_factor::Model) -> Result<TotpSecret, ApiError> {
    let sealed = Sealed::from_db(&factor.secret).map_err(ApiError::internal)?;
    let bytes = state
        .data_key
        .open(factor.user_id, &sealed)
        .map_err(|_| {
            ApiError::internal(
                "a TOTP secret does not open: was TESSERA_DATA_KEY (or, without it, the signing key) changed?",
            )
        })?;
    TotpSecret::from_bytes(bytes.expose_secret().to_vec())
        .ok_or_else(|| ApiError::internal("a stored TOTP secret is too short"))
}

/// Whether `typed` is a valid code of `factor` now, spending it if so.
async fn spend_code(
    state: &AppState,
    factor: &totp_factor::Model,
    typed: &str,
    accept: Accept,
) -> Result<bool, ApiError> {
    let user_id = factor.user_id;
    if let Some(code) = totp::parse_code(typed) {
        let secret = open_secret(state, factor)?;
        let now = u64::try_from(now_secs()).unwrap_or_default();
        let Some(step) = totp::matched_step(&secret, &code, now) else {
            return Ok(false);
        };
        return Ok(totp::claim_step(&*state.tokens.store, user_id, step).await?);
    }
    if accept == Accept::TotpOrRecovery
        && let Some(normalised) = recovery_codes::normalise(typed)
    {
        // The stored value is a keyed hash (HMAC under the data key), so
        // looking it up by equality reveals nothing a timing could use.
        let hash = recovery_codes::hash(&state.data_key, user_id, &normalised);
        let used = recovery_code::Entity::delete_many()
            .filter(recovery_code::Column::UserId.eq(user_id))
            .filter(recovery_code::Column::CodeHash.eq(hash))
            .exec(&state.db)
            .await?;
        return Ok(used.rows_affected == 1);
    }
    Ok(false)
}

/// `spend_code` under the login limits of the account (see the top).
async fn check_code(
    state: &AppState,
    factor: &totp_factor::Model,
    typed: &str,
    accept: Accept,
    client_ip: Option<&str>,
) -> Result<(), ApiError> {
    let limiter = Limiter::new(&*state.tokens.store, state.settings.login_limits);
    let attempt = limiter
        .begin(LimitKey::Account(factor.user_id), client_ip)
        .await?;
    match spend_code(state, factor, typed, accept).await {
        Ok(true) => {
            attempt.succeeded().await?;
            Ok(())
        }
        Ok(false) => {
            attempt.failed();
            metrics::event(Event::LoginFailed);
            Err(ApiError::InvalidCredentials)
        }
        Err(e) => {
            attempt.not_counted().await;
            Err(e)
        }
    }
}

/// `POST /auth/mfa/totp`: a new unconfirmed factor, replacing an
/// unconfirmed one; 409 while one is active.
pub async fn enrol(state: &AppState, user_id: Uuid) -> Result<Enrolment, ApiError> {
    let secret = TotpSecret::generate();
    let sealed = state
        .data_key
        .seal(user_id, secret.as_bytes())
        .map_err(ApiError::internal)?;
    let txn = state.db.begin().await?;
    let Some(user) = lock_user(&txn, user_id).await? else {
        return Err(ApiError::TokenRevoked);
    };
    if active_factor(&txn, user_id).await?.is_some() {
        return Err(ApiError::Conflict(
            "A second factor is already active; remove it first.".into(),
        ));
    }
    totp_factor::Entity::delete_by_id(user_id)
        .exec(&txn)
        .await?;
    totp_factor::ActiveModel {
        user_id: Set(user_id),
        secret: Set(sealed.to_db()),
        confirmed: Set(false),
        created_at: Set(Utc::now()),
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    let otpauth_uri = totp::otpauth_uri(&state.tokens.settings.issuer, &user.email, &secret);
    let qr_svg = totp::qr_svg(&otpauth_uri).map_err(ApiError::internal)?;
    Ok(Enrolment {
        secret: secret.to_base32(),
        otpauth_uri,
        qr_svg,
    })
}

/// `POST /auth/mfa/totp/confirm`: a first code makes the pending factor
/// active; returns the recovery codes, shown this once.
pub async fn confirm(
    state: &AppState,
    caller: &Caller,
    code: &str,
) -> Result<Vec<String>, ApiError> {
    let (user_id, keep_sid, client_ip) = (caller.user_id, caller.sid, caller.ip.as_deref());
    let factor = match factor_of(&state.db, user_id).await? {
        Some(f) if !f.confirmed => f,
        Some(_) => {
            return Err(ApiError::Conflict(
                "The second factor is already active.".into(),
            ));
        }
        None => {
            return Err(ApiError::NotFound(
                "No second factor awaits confirmation: POST /auth/mfa/totp first.".into(),
            ));
        }
    };
    check_code(state, &factor, code, Accept::TotpOnly, client_ip).await?;
    let codes = recovery_codes::generate(&state.data_key, user_id);
    change_factor(
        state,
        user_id,
        Some(keep_sid),
        FactorChange::Confirm(factor, &codes.hashes),
    )
    .await?;
    Ok(codes.codes)
}

/// `DELETE /auth/mfa/totp`: removes the factor (active or pending) and its
/// recovery codes, given a code of it.
pub async fn remove(state: &AppState, caller: &Caller, code: &str) -> Result<(), ApiError> {
    let (user_id, keep_sid, client_ip) = (caller.user_id, caller.sid, caller.ip.as_deref());
    let Some(factor) = factor_of(&state.db, user_id).await? else {
        return Err(no_factor());
    };
    let accept = if factor.confirmed {
        Accept::TotpOrRecovery
    } else {
        Accept::TotpOnly
    };
    check_code(state, &factor, code, accept, client_ip).await?;
    change_factor(state, user_id, Some(keep_sid), FactorChange::Remove).await?;
    Ok(())
}

/// `DELETE /users/{id}/mfa` (an admin, for a locked-out user): removes the
/// factor and ends the user's sessions (but the caller's own, should an
/// admin unlock themselves). `false` when there is no such user.
pub async fn admin_remove(
    state: &AppState,
    user_id: Uuid,
    caller_sid: Option<Uuid>,
) -> Result<bool, ApiError> {
    let changed = change_factor(state, user_id, caller_sid, FactorChange::Remove).await?;
    if changed {
        tracing::info!(user = %user_id, "second factor removed by an admin");
    }
    Ok(changed)
}

/// `POST /auth/mfa/recovery-codes`: a new set; the old codes stop working.
pub async fn regenerate(
    state: &AppState,
    caller: &Caller,
    code: &str,
) -> Result<Vec<String>, ApiError> {
    let (user_id, keep_sid, client_ip) = (caller.user_id, caller.sid, caller.ip.as_deref());
    let Some(factor) = active_factor(&state.db, user_id).await? else {
        return Err(no_factor());
    };
    check_code(state, &factor, code, Accept::TotpOrRecovery, client_ip).await?;
    let codes = recovery_codes::generate(&state.data_key, user_id);
    change_factor(
        state,
        user_id,
        Some(keep_sid),
        FactorChange::NewCodes(&codes.hashes),
    )
    .await?;
    Ok(codes.codes)
}

/// The login's half (`signin`): the right password of an account with a
/// factor. Stores the challenge and returns the 403 that hands it out.
pub(super) async fn challenge(state: &AppState, user: &user::Model) -> Result<ApiError, ApiError> {
    let token = MfaToken::generate();
    let pending = Pending {
        user_id: user.id,
        stamp: user.security_stamp,
    };
    let payload = serde_json::to_string(&pending).map_err(ApiError::internal)?;
    state
        .tokens
        .store
        .put_challenge(&token.key(), &payload, mfa_token::TTL_SECS)
        .await?;
    Ok(ApiError::MfaRequired(Some(MfaChallenge {
        mfa_token: token.into_string(),
        expires_in: mfa_token::TTL_SECS as i64,
    })))
}

/// A login waiting for its second factor, as the store keeps it.
#[derive(Serialize, Deserialize)]
struct Pending {
    #[serde(rename = "u")]
    user_id: Uuid,
    /// The security stamp the password was checked under.
    #[serde(rename = "s")]
    stamp: i64,
}

/// `POST /auth/mfa/verify`: the challenge of a login and a code start the
/// session (`amr: ["pwd", "otp"]`). Each call spends one of the
/// challenge's tries; a right code takes the challenge, so it starts one
/// session at most.
pub async fn verify(
    state: &AppState,
    mfa_token: &str,
    code: &str,
    meta: ClientMeta,
) -> Result<IssuedTokens, ApiError> {
    let store = &*state.tokens.store;
    let key = mfa_token::parse(mfa_token).ok_or(ApiError::TokenInvalid)?;
    let Some(payload) = store.try_challenge(&key, mfa_token::MAX_TRIES).await? else {
        return Err(ApiError::TokenInvalid);
    };
    let pending: Pending = serde_json::from_str(&payload).map_err(|_| ApiError::TokenInvalid)?;
    // The account as it is now: a password change, block, delete or factor
    // change since the password was checked ends the challenge.
    let user = match super::find(&state.db, pending.user_id).await? {
        Some(u) if u.security_stamp == pending.stamp && !u.blocked && u.mfa_enabled => u,
        _ => {
            store.take_challenge(&key).await?;
            return Err(ApiError::TokenInvalid);
        }
    };
    let Some(factor) = active_factor(&state.db, user.id).await? else {
        store.take_challenge(&key).await?;
        return Err(ApiError::TokenInvalid);
    };
    check_code(
        state,
        &factor,
        code,
        Accept::TotpOrRecovery,
        meta.ip.as_deref(),
    )
    .await?;
    if !store.take_challenge(&key).await? {
        // Another right code took it first.
        return Err(ApiError::TokenInvalid);
    }
    session_start::start_checked(state, &user, Amr::PwdOtp, meta).await
}

/// The reset's half (`recovery::reset`): an account with an active factor
/// needs a code; nothing is spent without one.
pub(super) async fn check_reset(
    state: &AppState,
    user_id: Uuid,
    code: Option<&str>,
    client_ip: Option<&str>,
) -> Result<(), ApiError> {
    let Some(factor) = active_factor(&state.db, user_id).await? else {
        return Ok(());
    };
    let Some(code) = code else {
        return Err(ApiError::MfaRequired(None));
    };
    check_code(state, &factor, code, Accept::TotpOrRecovery, client_ip).await
}

/// What `change_factor` does to the factor, in its transaction.
enum FactorChange<'a> {
    /// Make this pending factor (the one the code was checked against)
    /// active, with these recovery-code hashes.
    Confirm(totp_factor::Model, &'a [String]),
    /// Delete the factor and its recovery codes.
    Remove,
    /// Replace the active factor's recovery codes with these hashes.
    NewCodes(&'a [String]),
}

/// Applies `change` under the user's lock. `None`: nothing changed;
/// `Some(active)`: the factor changed and is now active or not.
async fn apply_change(
    txn: &DatabaseTransaction,
    user_id: Uuid,
    change: FactorChange<'_>,
) -> Result<Option<bool>, ApiError> {
    match change {
        FactorChange::Confirm(factor, hashes) => {
            // Still the pending factor the code was checked against: a
            // concurrent enrolment replaced it, or a concurrent
            // confirmation (another step's code) won.
            if factor_of(txn, user_id).await?.as_ref() != Some(&factor) {
                return Err(ApiError::Conflict(
                    "The second factor changed meanwhile; start again.".into(),
                ));
            }
            let mut active: totp_factor::ActiveModel = factor.into();
            active.confirmed = Set(true);
            active.update(txn).await?;
            replace_recovery_codes(txn, user_id, hashes).await?;
            Ok(Some(true))
        }
        FactorChange::Remove => delete_factor(txn, user_id).await,
        FactorChange::NewCodes(hashes) => {
            if active_factor(txn, user_id).await?.is_none() {
                return Err(no_factor());
            }
            replace_recovery_codes(txn, user_id, hashes).await?;
            Ok(Some(true))
        }
    }
}

/// Locks the user, applies `change`, sets `mfa_enabled` to what it left,
/// replaces the stamp and ends the user's sessions but `keep` (see the top
/// for the order). `Ok(false)`: no such user.
async fn change_factor(
    state: &AppState,
    user_id: Uuid,
    keep: Option<Uuid>,
    change: FactorChange<'_>,
) -> Result<bool, ApiError> {
    let txn = state.db.begin().await?;
    let Some(current) = lock_user(&txn, user_id).await? else {
        return Ok(false);
    };
    let Some(enabled) = apply_change(&txn, user_id, change).await? else {
        // Nothing to change (an admin removing a factor that is not
        // there): no session ends.
        return Ok(true);
    };
    let mut model: user::ActiveModel = current.clone().into();
    model.mfa_enabled = Set(enabled);
    model.security_stamp = Set(new_stamp(current.security_stamp));
    model.updated_at = Set(Utc::now());
    model.update(&txn).await?;
    end_sessions_but(state, user_id, keep).await?;
    txn.commit().await?;
    end_sessions_but(state, user_id, keep).await?;
    metrics::revocation(RevocationCause::MfaChange);
    Ok(true)
}

async fn end_sessions_but(
    state: &AppState,
    user_id: Uuid,
    keep: Option<Uuid>,
) -> Result<(), ApiError> {
    let Some(keep) = keep else {
        state.tokens.end_user_sessions(user_id).await?;
        return Ok(());
    };
    let others: Vec<Uuid> = state
        .tokens
        .sessions(user_id)
        .await?
        .into_iter()
        .map(|s| s.sid)
        .filter(|sid| *sid != keep)
        .collect();
    futures_util::future::try_join_all(
        others
            .into_iter()
            .map(|sid| state.tokens.end_session(user_id, sid)),
    )
    .await?;
    Ok(())
}

/// `Some(false)` (no factor now) if there was one to delete.
async fn delete_factor(txn: &DatabaseTransaction, user_id: Uuid) -> Result<Option<bool>, ApiError> {
    recovery_code::Entity::delete_many()
        .filter(recovery_code::Column::UserId.eq(user_id))
        .exec(txn)
        .await?;
    let gone = totp_factor::Entity::delete_by_id(user_id).exec(txn).await?;
    Ok((gone.rows_affected > 0).then_some(false))
}

async fn replace_recovery_codes(
    txn: &DatabaseTransaction,
    user_id: Uuid,
    hashes: &[String],
) -> Result<(), ApiError> {
    recovery_code::Entity::delete_many()
        .filter(recovery_code::Column::UserId.eq(user_id))
        .exec(txn)
        .await?;
    recovery_code::Entity::insert_many(hashes.iter().map(|h| recovery_code::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user_id),
        code_hash: Set(h.clone()),
    }))
    .exec(txn)
    .await?;
    Ok(())
}
