//! Password recovery (API.md "Email"): `forgot` answers the same for every
//! address and only queues a request; the sender resolves it off the
//! request path (`resolve_forgot`); `reset` spends a link and replaces the
//! password like a password change.

use entity::{outbox, user};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, TransactionTrait,
};
use secrecy::SecretString;

use super::changes::{Change, apply_in, lock_user};
use crate::{
    auth::{limits, password::Caller, store::LimitKey},
    error::ApiError,
    mail::{
        Kind, Purpose, links,
        outbox::{self as queue, NewMail},
    },
    metrics::{self, RevocationCause},
    state::AppState,
    validation,
};

/// `POST /auth/password/forgot`: the limits, then one queued request. The
/// same work whatever the address names (nobody, a blocked or unverified
/// account): which it was is decided by the sender.
pub async fn forgot(
    state: &AppState,
    email: &str,
    client_ip: Option<&str>,
) -> Result<(), ApiError> {
    let mut problems = validation::Problems::default();
    problems.check("email", validation::email(email));
    problems.into_result()?;
    let key = super::email_key(email)?;
    limits::count_mail(
        &*state.tokens.store,
        state.mail.per_address,
        state.mail.per_ip,
        &key,
        client_ip,
    )
    .await?;
    queue::enqueue(
        &state.db,
        NewMail {
            kind: Kind::PasswordForgot,
            recipient: validation::email_as_stored(email),
            link_id: None,
            data: serde_json::json!({}),
        },
    )
    .await?;
    Ok(())
}

/// Called by the sender for a `password_forgot` row: in one transaction,
/// an existing unblocked account gets a new reset link (older ones are
/// superseded) and the row becomes its `password_reset` mail, returned;
/// otherwise the row is deleted and nothing is sent.
pub async fn resolve_forgot(
    state: &AppState,
    row: outbox::Model,
) -> Result<Option<outbox::Model>, ApiError> {
    let txn = state.db.begin().await?;
    let found = match entity::email_key::email_key(&row.recipient) {
        Some(key) if !key.contains('\0') => {
            user::Entity::find()
                .filter(user::Column::EmailKey.eq(key))
                .one(&txn)
                .await?
        }
        _ => None,
    };
    let Some(u) = found.filter(|u| !u.blocked) else {
        outbox::Entity::delete_by_id(row.id).exec(&txn).await?;
        txn.commit().await?;
        return Ok(None);
    };
    let link = links::create(
        &txn,
        &state.mail.link_key,
        u.id,
        Purpose::Reset,
        None,
        state.mail.reset_ttl,
    )
    .await?;
    let mut model: outbox::ActiveModel = row.into();
    model.kind = Set(Kind::PasswordReset.as_str().to_owned());
    // The account's address as stored, not as typed in the request.
    model.recipient = Set(u.email.clone());
    model.link_id = Set(Some(link));
    model.data = Set(serde_json::json!({ "username": u.username }).to_string());
    let updated = model.update(&txn).await?;
    txn.commit().await?;
    Ok(Some(updated))
}

/// `POST /auth/password/reset`: the new password replaces the old one and
/// the security stamp, every session ends, the account's login counter is
/// cleared, the address counts as verified, every outstanding link is
/// spent and a notice is queued. Logs nobody in.
pub async fn reset(
    state: &AppState,
    token: &str,
    new_password: SecretString,
    code: Option<&str>,
    client_ip: Option<&str>,
) -> Result<(), ApiError> {
    use secrecy::ExposeSecret;
    let mut problems = validation::Problems::default();
    problems.check(
        "new_password",
        validation::password(new_password.expose_secret()),
    );
    problems.into_result()?;
    let attempt =
        limits::begin_link_attempt(&*state.tokens.store, state.settings.login_limits, client_ip)
            .await?;
    // A look first, so a wrong token costs no password hash; the link is
    // spent below, in the transaction of the change.
    let Some(user_id) = links::owner(&state.db, token, &[Purpose::Reset]).await? else {
        attempt.invalid();
        return Err(ApiError::LinkInvalid);
    };
    // A reset must not bypass the second factor (ASVS 6.4.3): checked
    // before the link is spent, so a missing or wrong code spends nothing.
    // The link itself was good: its attempt is settled as valid whatever
    // the code (a wrong code counts against the account instead).
    if let Err(e) = super::mfa::check_reset(state, user_id, code, client_ip).await {
        attempt.valid().await;
        return Err(e);
    }
    let caller = Caller::new(client_ip, Some(LimitKey::Account(user_id)));
    let hash = state.passwords.hash(new_password, &caller).await?;
    let txn = state.db.begin().await?;
    // The user's row first, as every account change locks it first
    // (`changes::apply_in`): one lock order, no deadlock with a change.
    let Some(current) = lock_user(&txn, user_id).await? else {
        return Err(ApiError::LinkInvalid);
    };
    // Of concurrent resets with one link, one gets the row; the others
    // wait for its commit (PostgreSQL) or the writer (SQLite) and find none.
    let link = links::consume(&txn, token, &[Purpose::Reset]).await?;
    if link.user_id != user_id {
        return Err(ApiError::LinkInvalid);
    }
    if current.blocked {
        // A link created while a block was being applied.
        return Err(ApiError::LinkInvalid);
    }
    let mut model: user::ActiveModel = current.into();
    model.password_hash = Set(hash);
    model.email_verified = Set(true);
    let changed = apply_in(
        state,
        txn,
        user_id,
        Change::Update(Box::new(model)),
        Some(Kind::PasswordChanged),
    )
    .await?;
    if changed.is_none() {
        return Err(ApiError::LinkInvalid);
    }
    metrics::revocation(RevocationCause::PasswordChange);
    attempt.valid().await;
    if let Err(e) = limits::clear_account(&*state.tokens.store, user_id, client_ip).await {
        tracing::warn!(error = %e, "could not clear the login counter after a reset");
    }
    Ok(())
}
