//! The rules of accounts: registration, credential checks and profile
//! changes, on SeaORM. No HTTP in here. The changes that end a user's
//! sessions are in `changes`; login and refresh, which join an account to
//! the token engine, in `signin`.

mod changes;
pub mod mfa;
pub mod recovery;
mod session_start;
mod signin;
mod signup;
pub mod verification;

pub use changes::{AdminChange, admin_update, change_password, delete, logout_all};
pub use signin::{login, refresh};
pub use signup::sign_up;

use chrono::Utc;
use entity::user;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    EntityTrait, QueryFilter,
};
use secrecy::SecretString;
use uuid::Uuid;

use crate::{
    auth::{
        claims::Role,
        limits::{self, Limiter},
        password::{Caller, Passwords},
    },
    error::ApiError,
    validation,
};

pub fn role_of(u: &user::Model) -> Role {
    Role::parse(&u.role).unwrap_or(Role::User)
}

pub struct NewAccount {
    pub username: String,
    pub email: String,
    pub password: SecretString,
}

pub async fn find(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<user::Model>, ApiError> {
    user::Entity::find_by_id(id)
        .one(db)
        .await
        .map_err(ApiError::from)
}

/// A new security stamp, different from `old`.
fn new_stamp(old: i64) -> i64 {
    loop {
        let s: i64 = rand::random();
        if s != old {
            return s;
        }
    }
}

/// The key of a validated email (`validation::email` guarantees one).
fn email_key(email: &str) -> Result<String, ApiError> {
    entity::email_key::email_key(email).ok_or_else(|| {
        ApiError::ValidationFailed(
            [("email".to_owned(), "not a valid email address".to_owned())].into(),
        )
    })
}

/// Takes keys (`username_key`, `email_key`), not the values as typed.
async fn ensure_free(
    db: &impl ConnectionTrait,
    username: Option<String>,
    email: Option<String>,
    except: Option<Uuid>,
) -> Result<(), ApiError> {
    use sea_orm::Condition;
    let mut any = Condition::any();
    if let Some(u) = &username {
        any = any.add(user::Column::UsernameKey.eq(u.as_str()));
    }
    if let Some(e) = &email {
        any = any.add(user::Column::EmailKey.eq(e.as_str()));
    }
    if username.is_none() && email.is_none() {
        return Ok(());
    }
    // One query for both values; the unique indexes still decide races.
    let taken = user::Entity::find().filter(any).all(db).await?;
    let others = || taken.iter().filter(|u| Some(u.id) != except);
    if others().any(|u| Some(&u.username_key) == username.as_ref()) {
        return Err(ApiError::Conflict("That username is already taken.".into()));
    }
    if others().any(|u| Some(&u.email_key) == email.as_ref()) {
        return Err(ApiError::Conflict(
            "That email is already registered.".into(),
        ));
    }
    Ok(())
}

/// Registers a user with role `user` (never an admin: the body cannot ask).
pub async fn register(
    db: &DatabaseConnection,
    passwords: &Passwords,
    new: NewAccount,
    role: Role,
) -> Result<user::Model, ApiError> {
    register_as(db, passwords, new, role, &Caller::default(), None).await
}

/// `register` on `caller`'s share of password hashing.
pub async fn register_as(
    db: &DatabaseConnection,
    passwords: &Passwords,
    new: NewAccount,
    role: Role,
    caller: &Caller,
    verify_by: Option<&crate::mail::MailSettings>,
) -> Result<user::Model, ApiError> {
    use sea_orm::TransactionTrait;
    use secrecy::ExposeSecret;
    let mut problems = validation::Problems::default();
    problems.check("username", validation::username(&new.username));
    problems.check("email", validation::email(&new.email));
    problems.check(
        "password",
        validation::password(new.password.expose_secret()),
    );
    problems.into_result()?;
    let key = email_key(&new.email)?;
    ensure_free(
        db,
        Some(new.username.to_lowercase()),
        Some(key.clone()),
        None,
    )
    .await?;
    let hash = passwords.hash_new_account(new.password, caller).await?;
    let now = Utc::now();
    let model = user::ActiveModel {
        id: Set(Uuid::now_v7()),
        username_key: Set(new.username.to_lowercase()),
        username: Set(new.username),
        email_key: Set(key),
        // Stored in NFC: canonically the same text as typed.
        email: Set(validation::email_as_stored(&new.email)),
        password_hash: Set(hash),
        role: Set(role.as_str().to_owned()),
        blocked: Set(false),
        security_stamp: Set(new_stamp(0)),
        // Admins are made by the operator (bootstrap, CLI): verified.
        email_verified: Set(role == Role::Admin),
        pending_email: Set(None),
        mfa_enabled: Set(false),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let Some(mail) = verify_by.filter(|m| m.verifies() && role != Role::Admin) else {
        return model.insert(db).await.map_err(ApiError::from);
    };
    // The account and its verification mail commit together.
    let txn = db.begin().await?;
    let created = model.insert(&txn).await?;
    verification::queue_verification(&txn, mail, &created).await?;
    txn.commit().await?;
    Ok(created)
}

pub enum Identifier {
    Email(String),
    Username(String),
}

impl Identifier {
    /// `email` or `username`: unknown identifiers of different kinds never
    /// share a login counter.
    fn kind(&self) -> &'static str {
        match self {
            Identifier::Email(_) => "email",
            Identifier::Username(_) => "username",
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Identifier::Email(s) | Identifier::Username(s) => s,
        }
    }
}

/// Checks credentials under the login limits (`auth::limits`). Unknown
/// account and wrong password are the same error after the same work (the
/// same store calls, and a dummy hash is verified for unknown ones). Over a
/// limit: `TooManyRequests`, without checking the password.
pub async fn authenticate(
    db: &DatabaseConnection,
    passwords: &Passwords,
    limiter: &Limiter<'_>,
    ident: &Identifier,
    password: SecretString,
    client_ip: Option<&str>,
) -> Result<user::Model, ApiError> {
    // An email without a key (no valid domain) names nobody; one with a key
    // also counts under it, so every form of an address shares a counter.
    let lookup = match ident {
        Identifier::Email(e) => {
            entity::email_key::email_key(e).map(|k| (user::Column::EmailKey, k))
        }
        Identifier::Username(u) => Some((user::Column::UsernameKey, u.to_lowercase())),
    };
    // No account holds a NUL (validation refuses it), and PostgreSQL text
    // cannot even compare one: such an identifier names nobody.
    let found = match &lookup {
        Some((column, k)) if !k.contains('\0') => {
            user::Entity::find()
                .filter(column.eq(k.as_str()))
                .one(db)
                .await?
        }
        _ => None,
    };
    let counted = lookup.as_ref().map_or(ident.as_str(), |(_, k)| k.as_str());
    let key = limits::account_key(found.as_ref().map(|u| u.id), ident.kind(), counted);
    let caller = Caller::new(client_ip, Some(key.clone()));
    let attempt = limiter.begin(key, client_ip).await?;
    let hash = found.as_ref().map(|u| u.password_hash.clone());
    let ok = match passwords.verify(password, hash, &caller).await {
        Ok(ok) => ok,
        Err(e) => {
            attempt.not_counted().await;
            return Err(e);
        }
    };
    match found {
        Some(u) if ok => {
            if u.blocked {
                attempt.not_counted().await;
                Err(ApiError::UserBlocked)
            } else if u.mfa_enabled {
                // Half a login: the counter is cleared by the code
                // (`mfa::verify`), so that a password alone never resets
                // the count of wrong codes.
                attempt.not_counted().await;
                Ok(u)
            } else {
                attempt.succeeded().await?;
                Ok(u)
            }
        }
        _ => {
            attempt.failed();
            crate::metrics::event(crate::metrics::Event::LoginFailed);
            Err(ApiError::InvalidCredentials)
        }
    }
}

pub struct ProfileChange {
    pub username: Option<String>,
    pub email: Option<String>,
}

/// Applies a PATCH/PUT of the caller's profile; absent fields stay. With
/// verification on, a new email needs a `fresh` token and waits in
/// `pending_email` for its confirmation (`verification::request_change`);
/// with it off, the change applies at once. Either way an address change
/// spends the account's one-time links.
pub async fn update_profile(
    state: &crate::state::AppState,
    current: user::Model,
    change: ProfileChange,
    fresh: bool,
    client_ip: Option<&str>,
) -> Result<user::Model, ApiError> {
    use sea_orm::TransactionTrait;
    use verification::EmailChange;
    let verifies = state.mail.verifies();
    let email_change = verification::email_change(&current, change.email.as_deref());
    // Freshness before the body's values (API.md's error precedence).
    if verifies && matches!(email_change, EmailChange::To(_)) && !fresh {
        return Err(ApiError::FreshTokenNeeded);
    }
    let mut problems = validation::Problems::default();
    if let Some(u) = &change.username {
        problems.check("username", validation::username(u));
    }
    if let Some(e) = &change.email {
        problems.check("email", validation::email(e));
    }
    problems.into_result()?;
    // Sending the current address again cancels a pending change; a new
    // spelling of it (case, Unicode form) applies at once.
    let cancels_pending =
        matches!(email_change, EmailChange::Respell(_)) && current.pending_email.is_some();
    let respelt = match &email_change {
        EmailChange::Respell(e) if validation::email_as_stored(e) != current.email => {
            Some(validation::email_as_stored(e))
        }
        _ => None,
    };
    let changes_email = matches!(email_change, EmailChange::To(_));
    if change.username.is_none() && !cancels_pending && respelt.is_none() && !changes_email {
        return Ok(current);
    }
    let new_email_key = match &email_change {
        EmailChange::To(e) if !verifies => Some(email_key(e)?),
        _ => None,
    };
    ensure_free(
        &state.db,
        change.username.as_deref().map(str::to_lowercase),
        new_email_key.clone(),
        Some(current.id),
    )
    .await?;
    let mut model: user::ActiveModel = current.clone().into();
    if let Some(u) = change.username {
        model.username_key = Set(u.to_lowercase());
        model.username = Set(u);
    }
    if let (EmailChange::To(e), true) = (&email_change, verifies) {
        return verification::request_change(state, current, model, e, client_ip).await;
    }
    let txn = state.db.begin().await?;
    if let (EmailChange::To(e), Some(key)) = (&email_change, new_email_key) {
        model.email_key = Set(key);
        model.email = Set(validation::email_as_stored(e));
        model.pending_email = Set(None);
        model.email_verified = Set(false);
        // Links mailed to the old address die with it.
        crate::mail::links::forget_all(&txn, current.id).await?;
    }
    if cancels_pending {
        model.pending_email = Set(None);
        crate::mail::links::forget_all(&txn, current.id).await?;
    }
    if let Some(e) = respelt {
        model.email = Set(e);
    }
    model.updated_at = Set(Utc::now());
    let after = model.update(&txn).await?;
    txn.commit().await?;
    Ok(after)
}

/// One page of users, oldest first, and the total count.
pub async fn list(
    db: &DatabaseConnection,
    paging: crate::paging::Paging,
) -> Result<(Vec<user::Model>, u64), ApiError> {
    use sea_orm::QueryOrder;
    let query = user::Entity::find()
        .order_by_asc(user::Column::CreatedAt)
        .order_by_asc(user::Column::Id);
    crate::paging::fetch(db, query, paging).await
}

pub enum Bootstrap {
    Created(user::Model),
    AlreadyThere(user::Model),
    /// The configured `field` (`email` or `username`) is held by this
    /// non-admin account: no admin was created.
    Conflict {
        field: &'static str,
        holder: user::Model,
    },
}

/// What the configured email and username name today: an admin holding
/// either is the bootstrap admin; a non-admin holding either is a conflict.
async fn bootstrap_state(
    db: &DatabaseConnection,
    email: &str,
    username: &str,
) -> Result<Option<Bootstrap>, ApiError> {
    let by_email = match entity::email_key::email_key(email) {
        Some(key) => {
            user::Entity::find()
                .filter(user::Column::EmailKey.eq(key))
                .one(db)
                .await?
        }
        None => None,
    };
    let by_username = user::Entity::find()
        .filter(user::Column::UsernameKey.eq(username.to_lowercase()))
        .one(db)
        .await?;
    let judged = [("email", by_email), ("username", by_username)]
        .into_iter()
        .filter_map(|(field, u)| u.map(|u| (field, u)))
        .map(|(field, holder)| {
            if role_of(&holder) == Role::Admin {
                Bootstrap::AlreadyThere(holder)
            } else {
                Bootstrap::Conflict { field, holder }
            }
        })
        // A conflict outranks an admin found by the other field.
        .min_by_key(|b| !matches!(b, Bootstrap::Conflict { .. }));
    Ok(judged)
}

/// Creates the configured admin unless its email or username is taken
/// (by an admin: already there; by anyone else: a conflict, reported, never
/// an error, so what users did cannot stop a start). Safe when several
/// replicas start together: the unique index decides and the losers find
/// the winner's row.
pub async fn bootstrap_admin(
    db: &DatabaseConnection,
    passwords: &Passwords,
    email: &str,
    username: &str,
    password: SecretString,
) -> Result<Bootstrap, ApiError> {
    if let Some(found) = bootstrap_state(db, email, username).await? {
        return Ok(found);
    }
    let new = NewAccount {
        username: username.to_owned(),
        email: email.to_owned(),
        password,
    };
    match register(db, passwords, new, Role::Admin).await {
        Ok(u) => Ok(Bootstrap::Created(u)),
        Err(ApiError::Conflict(msg)) => match bootstrap_state(db, email, username).await? {
            Some(found) => Ok(found),
            None => Err(ApiError::Conflict(msg)),
        },
        Err(e) => Err(e),
    }
}
