//! Account changes that end all of the user's sessions: password change,
//! role change, block, delete, logout-all. Every entry point (handlers, the
//! CLI) goes through `apply`, whose order makes API.md's two rules hold:
//!
//! - The change wins against logins in flight: it replaces the user's
//!   security stamp, and a login compares the stamp it read with the account
//!   against the row once its session is stored (`signin::login`). A login
//!   whose session was stored before the sessions end is ended with them; one
//!   stored after sees the new stamp and ends itself. Refreshes create no
//!   session, so ending the sessions is enough for them.
//! - Failure spends nothing: the sessions end *inside* the database
//!   transaction, before the commit, so a token store that fails answers 503
//!   with nothing committed; they end once more after the commit, for a login
//!   that stored its session in between. (Should that second step fail, the
//!   503 still leaves no session of the old state except one such login that
//!   also read the stamp before the commit: the narrowest window the two
//!   stores without a shared transaction allow.)

use chrono::Utc;
use entity::user;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    TransactionTrait, sea_query::Expr,
};
use secrecy::SecretString;
use uuid::Uuid;

use super::{new_stamp, role_of};
use crate::{
    auth::{claims::Role, limits::Limiter, password::Caller, store::LimitKey},
    error::ApiError,
    mail::{
        Kind, links,
        outbox::{self, NewMail},
    },
    metrics::{self, Event, RevocationCause, event},
    state::AppState,
    validation,
};

/// What `apply` does to the user's row.
pub(super) enum Change {
    /// Save these fields (a new stamp is added).
    Update(Box<user::ActiveModel>),
    /// Only a new stamp (logout-all).
    Stamp,
    Delete,
}

/// Applies `change` to the user's row and ends all their sessions, in the
/// order described at the top of this file. `Ok(None)`: no such user.
async fn apply(
    state: &AppState,
    user_id: Uuid,
    change: Change,
    notice: Option<Kind>,
) -> Result<Option<user::Model>, ApiError> {
    let txn = state.db.begin().await?;
    apply_in(state, txn, user_id, change, notice).await
}

/// `apply` in a transaction the caller began (a password reset spends its
/// link in it first). A change of the row (password, role, block) also
/// spends every one-time link of the user, and `notice` is queued to the
/// user's address, both in the same transaction.
pub(super) async fn apply_in(
    state: &AppState,
    txn: DatabaseTransaction,
    user_id: Uuid,
    change: Change,
    notice: Option<Kind>,
) -> Result<Option<user::Model>, ApiError> {
    // The row is locked before any of its links: the one lock order of
    // every change, reset and verification. Removing an admin locks every
    // unblocked admin in id order instead (this one among them), so two
    // admins removing each other queue instead of deadlocking.
    let Some(seen) = user::Entity::find_by_id(user_id).one(&txn).await? else {
        return Ok(None);
    };
    let guarded = removes_an_admin(&seen, &change);
    if guarded {
        ensure_another_admin(&txn, user_id).await?;
    }
    let Some(current) = lock_user(&txn, user_id).await? else {
        return Ok(None);
    };
    // Promoted meanwhile: the rule applies after all.
    if !guarded && removes_an_admin(&current, &change) {
        ensure_another_admin(&txn, user_id).await?;
    }
    let stamp = new_stamp(current.security_stamp);
    let after = match change {
        Change::Update(model) => {
            let mut model = *model;
            model.security_stamp = Set(stamp);
            model.updated_at = Set(Utc::now());
            links::forget_all(&txn, user_id).await?;
            model.update(&txn).await?
        }
        Change::Stamp => {
            user::Entity::update_many()
                .col_expr(user::Column::SecurityStamp, Expr::value(stamp))
                .filter(user::Column::Id.eq(user_id))
                .exec(&txn)
                .await?;
            user::Model {
                security_stamp: stamp,
                ..current
            }
        }
        Change::Delete => {
            user::Entity::delete_by_id(user_id).exec(&txn).await?;
            current
        }
    };
    if let Some(kind) = notice {
        outbox::enqueue(
            &txn,
            NewMail {
                kind,
                recipient: after.email.clone(),
                link_id: None,
                data: serde_json::json!({ "username": after.username }),
            },
        )
        .await?;
    }
    // Before the commit: a store failure rolls the change back (the
    // transaction is dropped uncommitted).
    state.tokens.end_user_sessions(user_id).await?;
    txn.commit().await?;
    // After: a login that stored its session while we committed.
    state.tokens.end_user_sessions(user_id).await?;
    Ok(Some(after))
}

/// Whether `change` leaves `current`, an unblocked admin, demoted, blocked
/// or deleted.
fn removes_an_admin(current: &user::Model, change: &Change) -> bool {
    use sea_orm::ActiveValue;
    if role_of(current) != Role::Admin || current.blocked {
        return false;
    }
    match change {
        Change::Update(model) => {
            let demoted = matches!(&model.role, ActiveValue::Set(r) if r != Role::Admin.as_str());
            let blocked = matches!(model.blocked, ActiveValue::Set(true));
            demoted || blocked
        }
        Change::Stamp => false,
        Change::Delete => true,
    }
}

/// 409 unless an unblocked admin other than `user_id` remains. The admin
/// rows are locked (`FOR UPDATE`, in id order) until the commit, so two
/// admins demoting each other at once cannot both pass: the second waits,
/// then sees the first's change. SQLite has one writer connection, so its
/// transactions are serial anyway.
async fn ensure_another_admin(
    txn: &sea_orm::DatabaseTransaction,
    user_id: Uuid,
) -> Result<(), ApiError> {
    use sea_orm::{QueryOrder, QuerySelect};
    let admins = user::Entity::find()
        .filter(user::Column::Role.eq(Role::Admin.as_str()))
        .filter(user::Column::Blocked.eq(false))
        .order_by_asc(user::Column::Id)
        .lock_exclusive()
        .all(txn)
        .await?;
    if admins.iter().any(|u| u.id != user_id) {
        Ok(())
    } else {
        Err(ApiError::Conflict(
            "The last unblocked admin cannot be demoted, blocked or deleted.".into(),
        ))
    }
}

/// Changes the password after checking the current one, under the login
/// limits of the account (a wrong `current_password` is a failed login), and
/// ends every session.
pub async fn change_password(
    state: &AppState,
    current: user::Model,
    current_password: SecretString,
    new_password: SecretString,
    client_ip: Option<&str>,
) -> Result<(), ApiError> {
    use secrecy::ExposeSecret;
    let mut problems = validation::Problems::default();
    problems.check(
        "new_password",
        validation::password(new_password.expose_secret()),
    );
    problems.into_result()?;
    let limiter = Limiter::new(&*state.tokens.store, state.settings.login_limits);
    let caller = Caller::new(client_ip, Some(LimitKey::Account(current.id)));
    let attempt = limiter
        .begin(LimitKey::Account(current.id), client_ip)
        .await?;
    let ok = match state
        .passwords
        .verify(
            current_password,
            Some(current.password_hash.clone()),
            &caller,
        )
        .await
    {
        Ok(ok) => ok,
        Err(e) => {
            attempt.not_counted().await;
            return Err(e);
        }
    };
    if !ok {
        attempt.failed();
        event(Event::LoginFailed);
        return Err(ApiError::InvalidCredentials);
    }
    // The right password: whatever happens next, it was no guess.
    let changed = async {
        let hash = state.passwords.hash(new_password, &caller).await?;
        let id = current.id;
        let mut model: user::ActiveModel = current.into();
        model.password_hash = Set(hash);
        apply(
            state,
            id,
            Change::Update(Box::new(model)),
            Some(Kind::PasswordChanged),
        )
        .await
    }
    .await;
    match changed {
        Ok(Some(_)) => {
            metrics::revocation(RevocationCause::PasswordChange);
            attempt.succeeded().await
        }
        Ok(None) => {
            attempt.not_counted().await;
            Err(ApiError::TokenRevoked)
        }
        Err(e) => {
            attempt.not_counted().await;
            Err(e)
        }
    }
}

pub struct AdminChange {
    pub role: Option<Role>,
    pub blocked: Option<bool>,
}

/// Applies an admin's change; a real change (a new role, a block or an
/// unblock) ends all of the user's sessions. `None`: no such user.
pub async fn admin_update(
    state: &AppState,
    current: user::Model,
    change: AdminChange,
) -> Result<Option<user::Model>, ApiError> {
    let role_changes = change.role.is_some_and(|r| r != role_of(&current));
    let block_changes = change.blocked.is_some_and(|b| b != current.blocked);
    if !role_changes && !block_changes {
        return Ok(Some(current));
    }
    let id = current.id;
    let mut model: user::ActiveModel = current.into();
    if let Some(r) = change.role.filter(|_| role_changes) {
        model.role = Set(r.as_str().to_owned());
    }
    if let Some(b) = change.blocked.filter(|_| block_changes) {
        model.blocked = Set(b);
    }
    let after = apply(state, id, Change::Update(Box::new(model)), None).await?;
    if after.is_some() {
        // One action, one count: a block with a role change is a block.
        metrics::revocation(if block_changes {
            RevocationCause::Block
        } else {
            RevocationCause::RoleChange
        });
    }
    Ok(after)
}

/// Hard delete: the email and username become free, owned rows go with the
/// user (foreign keys with cascade), every session ends. Returns whether the
/// user existed.
pub async fn delete(state: &AppState, id: Uuid) -> Result<bool, ApiError> {
    let existed = apply(state, id, Change::Delete, None).await?.is_some();
    if existed {
        metrics::revocation(RevocationCause::Delete);
    }
    Ok(existed)
}

/// Ends every session of the user, winning against logins in flight.
pub async fn logout_all(state: &AppState, id: Uuid) -> Result<(), ApiError> {
    if apply(state, id, Change::Stamp, None).await?.is_none() {
        // Deleted meanwhile: the deletion ended the sessions already.
        state.tokens.end_user_sessions(id).await?;
    }
    event(Event::Logout);
    metrics::revocation(RevocationCause::LogoutAll);
    Ok(())
}

/// The user's row, locked until the transaction ends (`FOR UPDATE` on
/// PostgreSQL; SQLite's one writer needs no lock).
pub(super) async fn lock_user(
    txn: &sea_orm::DatabaseTransaction,
    id: Uuid,
) -> Result<Option<user::Model>, ApiError> {
    use sea_orm::QuerySelect;
    Ok(user::Entity::find_by_id(id)
        .lock_exclusive()
        .one(txn)
        .await?)
}
