//! The first admin, from configuration: created at start if absent.

use sea_orm::DatabaseConnection;
use secrecy::SecretString;

use crate::{
    accounts::{self, Bootstrap},
    auth::password::Passwords,
    state::AppState,
};

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
pub async fn ensure_admin_in(
    db: &DatabaseConnection,
    passwords: &Passwords,
    email: &str,
    username: &str,
    password: SecretString,
) -> anyhow::Result<()> {
    match accounts::bootstrap_admin(db, passwords, email, username, password).await {
        Ok(Bootstrap::Created(u)) => {
            tracing::info!(user_id = %u.id, "admin account created");
            Ok(())
        }
        Ok(Bootstrap::AlreadyThere(u)) => {
            if u.role != "admin" {
                tracing::warn!(user_id = %u.id, "TESSERA_ADMIN_EMAIL names an existing account that is not an admin; left unchanged");
            } else {
                tracing::info!(user_id = %u.id, "admin account already present");
            }
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!(
            "cannot create the admin account: {e}: {:?}",
            e.body().fields
        )),
    }
}
