//! The rules of accounts: registration, credential checks and profile
//! changes, on SeaORM. No HTTP in here. The changes that end a user's
//! sessions are in `changes`; login and refresh, which join an account to
//! the token engine, in `signin`.

mod changes;
mod signin;
mod signup;

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

async fn ensure_free(
    db: &DatabaseConnection,
    username: Option<&str>,
    email: Option<&str>,
    except: Option<Uuid>,
) -> Result<(), ApiError> {
    use sea_orm::Condition;
    let username = username.map(str::to_lowercase);
    let email = email.map(str::to_lowercase);
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
    register_as(db, passwords, new, role, &Caller::default()).await
}

/// `register` on `caller`'s share of password hashing.
pub async fn register_as(
    db: &DatabaseConnection,
    passwords: &Passwords,
    new: NewAccount,
    role: Role,
    caller: &Caller,
) -> Result<user::Model, ApiError> {
    use secrecy::ExposeSecret;
    let mut problems = validation::Problems::default();
    problems.check("username", validation::username(&new.username));
    problems.check("email", validation::email(&new.email));
    problems.check(
        "password",
        validation::password(new.password.expose_secret()),
    );
    problems.into_result()?;
    ensure_free(db, Some(&new.username), Some(&new.email), None).await?;
    let hash = passwords.hash_new_account(new.password, caller).await?;
    let now = Utc::now();
    let model = user::ActiveModel {
        id: Set(Uuid::now_v7()),
        username_key: Set(new.username.to_lowercase()),
        username: Set(new.username),
        email_key: Set(new.email.to_lowercase()),
        email: Set(new.email),
        password_hash: Set(hash),
        role: Set(role.as_str().to_owned()),
        blocked: Set(false),
        security_stamp: Set(new_stamp(0)),
        created_at: Set(now),
        updated_at: Set(now),
    };
    model.insert(db).await.map_err(ApiError::from)
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
    let query = match ident {
        Identifier::Email(e) => {
            user::Entity::find().filter(user::Column::EmailKey.eq(e.to_lowercase()))
        }
        Identifier::Username(u) => {
            user::Entity::find().filter(user::Column::UsernameKey.eq(u.to_lowercase()))
        }
    };
    // No account holds a NUL (validation refuses it), and PostgreSQL text
    // cannot even compare one: such an identifier names nobody.
    let found = if ident.as_str().contains('\0') {
        None
    } else {
        query.one(db).await?
    };
    let key = limits::account_key(found.as_ref().map(|u| u.id), ident.kind(), ident.as_str());
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

/// Applies a PATCH/PUT of the caller's profile; absent fields stay.
pub async fn update_profile(
    db: &DatabaseConnection,
    current: user::Model,
    change: ProfileChange,
) -> Result<user::Model, ApiError> {
    let mut problems = validation::Problems::default();
    if let Some(u) = &change.username {
        problems.check("username", validation::username(u));
    }
    if let Some(e) = &change.email {
        problems.check("email", validation::email(e));
    }
    problems.into_result()?;
    if change.username.is_none() && change.email.is_none() {
        return Ok(current);
    }
    ensure_free(
        db,
        change.username.as_deref(),
        change.email.as_deref(),
        Some(current.id),
    )
    .await?;
    let mut model: user::ActiveModel = current.into();
    if let Some(u) = change.username {
        model.username_key = Set(u.to_lowercase());
        model.username = Set(u);
    }
    if let Some(e) = change.email {
        model.email_key = Set(e.to_lowercase());
        model.email = Set(e);
    }
    model.updated_at = Set(Utc::now());
    model.update(db).await.map_err(ApiError::from)
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
}

/// Creates the configured admin unless an account with that email exists.
/// Safe when several replicas start together: the unique index decides and
/// the losers find the winner's row.
pub async fn bootstrap_admin(
    db: &DatabaseConnection,
    passwords: &Passwords,
    email: &str,
    username: &str,
    password: SecretString,
) -> Result<Bootstrap, ApiError> {
    let find = || async {
        user::Entity::find()
            .filter(user::Column::EmailKey.eq(email.to_lowercase()))
            .one(db)
            .await
            .map_err(ApiError::from)
    };
    if let Some(u) = find().await? {
        return Ok(Bootstrap::AlreadyThere(u));
    }
    let new = NewAccount {
        username: username.to_owned(),
        email: email.to_owned(),
        password,
    };
    match register(db, passwords, new, Role::Admin).await {
        Ok(u) => Ok(Bootstrap::Created(u)),
        Err(ApiError::Conflict(msg)) => match find().await? {
            Some(u) => Ok(Bootstrap::AlreadyThere(u)),
            None => Err(ApiError::Conflict(msg)),
        },
        Err(e) => Err(e),
    }
}
