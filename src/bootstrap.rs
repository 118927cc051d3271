//! The first admin, from configuration: created at start if absent.

use sea_orm::DatabaseConnection;
use secrecy::SecretString;

use crate::{
    accounts::{self, Bootstrap},
    auth::password::Passwords,
    state::AppState,
};

/// What a non-admin holding the admin's email or username means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnConflict {
    /// `serve`: log, count and go on without an admin (API.md: a start
    /// never fails because of what users did).
    Serve,
    /// `tessera create-admin`: an operator asked for this admin, so exit 1.
    Fail,
}

pub async fn ensure_admin(
    state: &AppState,
    email: &str,
    username: &str,
    password: SecretString,
) -> anyhow::Result<()> {
    ensure_admin_in(&state.db, &state.passwords, email, username, password).await
}

/// Idempotent across restarts and replicas starting together: the unique
/// index decides, and an existing account with that email is left as it is.
/// A non-admin holding the email or username is logged and counted, and the
/// start goes on without an admin.
pub async fn ensure_admin_in(
    db: &DatabaseConnection,
    passwords: &Passwords,
    email: &str,
    username: &str,
    password: SecretString,
) -> anyhow::Result<()> {
    admin(db, passwords, email, username, password, OnConflict::Serve).await
}

/// `tessera create-admin`: like the bootstrap, but a non-admin holding its
/// email or username is an error (exit 1).
pub async fn create_admin_in(
    db: &DatabaseConnection,
    passwords: &Passwords,
    email: &str,
    username: &str,
    password: SecretString,
) -> anyhow::Result<()> {
    admin(db, passwords, email, username, password, OnConflict::Fail).await
}

async fn admin(
    db: &DatabaseConnection,
    passwords: &Passwords,
    email: &str,
    username: &str,
    password: SecretString,
    on_conflict: OnConflict,
) -> anyhow::Result<()> {
    match accounts::bootstrap_admin(db, passwords, email, username, password).await {
        Ok(Bootstrap::Created(u)) => {
            tracing::info!(user_id = %u.id, "admin account created");
            Ok(())
        }
        Ok(Bootstrap::AlreadyThere(u)) => {
            tracing::info!(user_id = %u.id, "admin account already present");
            Ok(())
        }
        Ok(Bootstrap::Conflict { field, holder }) if on_conflict == OnConflict::Fail => {
            Err(anyhow::anyhow!(
                "cannot create the admin account: its {field} is held by the non-admin account {}",
                holder.id
            ))
        }
        Ok(Bootstrap::Conflict { field, holder }) => {
            crate::metrics::event(crate::metrics::Event::BootstrapConflict);
            tracing::error!(
                conflict = field,
                user_id = %holder.id,
                "bootstrap admin not created: the configured admin {field} (TESSERA_ADMIN_{}) is held by a non-admin account; serving without it",
                field.to_uppercase()
            );
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!(
            "cannot create the admin account: {e}: {:?}",
            e.body().fields
        )),
    }
}
