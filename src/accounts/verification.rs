//! Verified addresses (API.md "Email"): the verification mail of a new
//! account, `verify` (a verification or address-change link), `resend`, and
//! the address change that waits for the new mailbox's consent.

use chrono::Utc;
use entity::user;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait, TransactionTrait};

use super::{email_key, ensure_free};
use crate::{
    auth::limits,
    error::ApiError,
    mail::{
        Kind, MailSettings, Purpose, links,
        outbox::{self, NewMail},
    },
    state::AppState,
    validation,
};

/// Queues the verification mail of `u` (a new link; older ones are
/// superseded). Run it in the transaction that creates or changes the row.
pub async fn queue_verification(
    conn: &impl ConnectionTrait,
    mail: &MailSettings,
    u: &user::Model,
) -> Result<(), ApiError> {
    let link = links::create(
        conn,
        &mail.link_key,
        u.id,
        Purpose::Verify,
        None,
        mail.verify_ttl,
    )
    .await?;
    outbox::enqueue(
        conn,
        NewMail {
            kind: Kind::VerifyEmail,
            recipient: u.email.clone(),
            link_id: Some(link),
            data: serde_json::json!({ "username": u.username }),
        },
    )
    .await?;
    Ok(())
}

/// Queues the confirmation of `new_email` (to it) and the notice (to the
/// current address) of an address change.
async fn queue_change(
    conn: &impl ConnectionTrait,
    mail: &MailSettings,
    u: &user::Model,
    new_email: &str,
    notify_old: bool,
) -> Result<(), ApiError> {
    let link = links::create(
        conn,
        &mail.link_key,
        u.id,
        Purpose::EmailChange,
        Some(new_email.to_owned()),
        mail.verify_ttl,
    )
    .await?;
    let data = serde_json::json!({ "username": u.username, "new_email": new_email });
    outbox::enqueue(
        conn,
        NewMail {
            kind: Kind::ConfirmNewEmail,
            recipient: new_email.to_owned(),
            link_id: Some(link),
            data: data.clone(),
        },
    )
    .await?;
    if notify_old {
        outbox::enqueue(
            conn,
            NewMail {
                kind: Kind::EmailChangeNotice,
                recipient: u.email.clone(),
                link_id: None,
                data,
            },
        )
        .await?;
    }
    Ok(())
}

/// `POST /auth/email/verify`: spends a verification link (the address is
/// verified) or an address-change link (the pending address becomes the
/// verified email; 409 if another account took it meanwhile, and the link
/// stays usable).
pub async fn verify(
    state: &AppState,
    token: &str,
    client_ip: Option<&str>,
) -> Result<user::Model, ApiError> {
    let attempt =
        limits::begin_link_attempt(&*state.tokens.store, state.settings.login_limits, client_ip)
            .await?;
    const PURPOSES: &[Purpose] = &[Purpose::Verify, Purpose::EmailChange];
    let Some(user_id) = links::owner(&state.db, token, PURPOSES).await? else {
        attempt.invalid();
        return Err(ApiError::LinkInvalid);
    };
    attempt.valid().await;
    let txn = state.db.begin().await?;
    // The user's row first, the lock order of every account change.
    let Some(current) = super::changes::lock_user(&txn, user_id).await? else {
        return Err(ApiError::LinkInvalid);
    };
    let link = links::consume(&txn, token, PURPOSES).await?;
    if link.user_id != user_id {
        return Err(ApiError::LinkInvalid);
    }
    let purpose = Purpose::parse(&link.purpose);
    let mut model: user::ActiveModel = current.clone().into();
    model.email_verified = Set(true);
    if purpose == Some(Purpose::EmailChange) {
        let Some(new_email) = link.new_email.clone() else {
            return Err(ApiError::LinkInvalid);
        };
        let key = email_key(&new_email)?;
        ensure_free(&txn, None, Some(key.clone()), Some(current.id)).await?;
        model.email_key = Set(key);
        model.email = Set(new_email);
        model.pending_email = Set(None);
        // The old address's links (a reset sent there) die with it.
        links::forget_all(&txn, current.id).await?;
    }
    model.updated_at = Set(Utc::now());
    let after = model.update(&txn).await?;
    txn.commit().await?;
    Ok(after)
}

/// `POST /auth/email/resend`: a new link for the pending address if an
/// address change waits, else for an unverified email; 409 when there is
/// nothing to verify. Under the mail limits of the address it goes to.
pub async fn resend(
    state: &AppState,
    current: user::Model,
    client_ip: Option<&str>,
) -> Result<(), ApiError> {
    if !state.mail.verifies() {
        return Err(ApiError::Conflict(
            "Email verification is turned off on this service.".into(),
        ));
    }
    let to = match &current.pending_email {
        Some(pending) => pending.clone(),
        None if current.email_verified => {
            return Err(ApiError::Conflict(
                "This email address is already verified.".into(),
            ));
        }
        None => current.email.clone(),
    };
    limits::count_mail(
        &*state.tokens.store,
        state.mail.per_address,
        state.mail.per_ip,
        &email_key(&to)?,
        client_ip,
    )
    .await?;
    let txn = state.db.begin().await?;
    if current.pending_email.is_some() {
        queue_change(&txn, &state.mail, &current, &to, false).await?;
    } else {
        queue_verification(&txn, &state.mail, &current).await?;
    }
    txn.commit().await?;
    Ok(())
}

/// What an email in `PATCH /users/me` does, given the current row.
pub enum EmailChange {
    /// No email in the body: nothing.
    Same,
    /// The current address (the same key), perhaps spelt differently (case,
    /// Unicode form): the spelling applies at once, and a pending change is
    /// cancelled.
    Respell(String),
    /// Another address.
    To(String),
}

pub fn email_change(current: &user::Model, email: Option<&str>) -> EmailChange {
    match email {
        None => EmailChange::Same,
        Some(e) if entity::email_key::email_key(e).as_deref() == Some(&current.email_key) => {
            EmailChange::Respell(e.to_owned())
        }
        Some(e) => EmailChange::To(e.to_owned()),
    }
}

/// The address part of a profile change with verification on: the new
/// address waits in `pending_email` for its confirmation link; the current
/// one is told. `model` is the row's other changes (a username), saved in
/// the same transaction.
pub async fn request_change(
    state: &AppState,
    current: user::Model,
    mut model: user::ActiveModel,
    new_email: &str,
    client_ip: Option<&str>,
) -> Result<user::Model, ApiError> {
    let key = email_key(new_email)?;
    ensure_free(&state.db, None, Some(key.clone()), Some(current.id)).await?;
    limits::count_mail(
        &*state.tokens.store,
        state.mail.per_address,
        state.mail.per_ip,
        &key,
        client_ip,
    )
    .await?;
    let stored = validation::email_as_stored(new_email);
    let txn = state.db.begin().await?;
    model.pending_email = Set(Some(stored.clone()));
    model.updated_at = Set(Utc::now());
    let after = model.update(&txn).await?;
    queue_change(&txn, &state.mail, &current, &stored, true).await?;
    txn.commit().await?;
    Ok(after)
}
