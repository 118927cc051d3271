//! The rules of accounts: registration, credential checks and profile
//! changes, on SeaORM. No HTTP in here.

use chrono::Utc;
use entity::user;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, SqlErr,
};
use secrecy::SecretString;
use uuid::Uuid;

use crate::{
    auth::{
        claims::Role,
        limits::{self, Limiter},
        password::Passwords,
    },
    error::ApiError,
    validation,
};

pub fn db_error(e: DbErr) -> ApiError {
    match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => {
            ApiError::Conflict("That value is already taken.".into())
        }
        Some(SqlErr::ForeignKeyConstraintViolation(_)) => {
            ApiError::Conflict("The record is still referenced by others.".into())
        }
        _ if is_sqlite_restrict(&e) => {
            ApiError::Conflict("The record is still referenced by others.".into())
        }
        _ => match e {
            DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => ApiError::unavailable(e),
            other => ApiError::internal(other),
        },
    }
}

/// SQLite reports an `ON DELETE RESTRICT` refusal as SQLITE_CONSTRAINT_TRIGGER
/// (1811), which SeaORM does not classify as a foreign-key violation.
fn is_sqlite_restrict(e: &DbErr) -> bool {
    use sea_orm::{RuntimeErr, sqlx};
    match e {
        DbErr::Exec(RuntimeErr::SqlxError(inner)) | DbErr::Query(RuntimeErr::SqlxError(inner)) => {
            matches!(&**inner, sqlx::Error::Database(d)
                if d.code().as_deref() == Some("1811") && d.message().contains("FOREIGN KEY"))
        }
        _ => false,
    }
}

pub fn role_of(u: &user::Model) -> Role {
    Role::parse(&u.role).unwrap_or(Role::User)
}

pub struct NewAccount {
    pub username: String,
    pub email: String,
    pub password: SecretString,
}

pub async fn find(db: &DatabaseConnection, id: Uuid) -> Result<Option<user::Model>, ApiError> {
    user::Entity::find_by_id(id).one(db).await.map_err(db_error)
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
    let taken = user::Entity::find()
        .filter(any)
        .all(db)
        .await
        .map_err(db_error)?;
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
    let hash = passwords.hash(new.password).await?;
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
        created_at: Set(now),
        updated_at: Set(now),
    };
    model.insert(db).await.map_err(db_error)
}

pub enum Identifier {
    Email(String),
    Username(String),
}

impl Identifier {
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
    let found = query.one(db).await.map_err(db_error)?;
    let key = limits::account_key(found.as_ref().map(|u| u.id), ident.as_str());
    let attempt = limiter.begin(key, client_ip).await?;
    let hash = found.as_ref().map(|u| u.password_hash.clone());
    let ok = match passwords.verify(password, hash).await {
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
    model.update(db).await.map_err(db_error)
}

/// Changes the password after checking the current one. The caller revokes
/// the user's tokens afterwards.
pub async fn change_password(
    db: &DatabaseConnection,
    passwords: &Passwords,
    current: user::Model,
    current_password: SecretString,
    new_password: SecretString,
) -> Result<user::Model, ApiError> {
    use secrecy::ExposeSecret;
    let mut problems = validation::Problems::default();
    problems.check(
        "new_password",
        validation::password(new_password.expose_secret()),
    );
    problems.into_result()?;
    if !passwords
        .verify(current_password, Some(current.password_hash.clone()))
        .await?
    {
        return Err(ApiError::InvalidCredentials);
    }
    let hash = passwords.hash(new_password).await?;
    let mut model: user::ActiveModel = current.into();
    model.password_hash = Set(hash);
    model.updated_at = Set(Utc::now());
    model.update(db).await.map_err(db_error)
}

/// Hard delete: the email and username become free; owned rows go with the
/// user (foreign keys with cascade). Returns whether the user existed.
pub async fn delete(db: &DatabaseConnection, id: Uuid) -> Result<bool, ApiError> {
    let res = user::Entity::delete_by_id(id)
        .exec(db)
        .await
        .map_err(db_error)?;
    Ok(res.rows_affected > 0)
}

pub struct AdminChange {
    pub role: Option<Role>,
    pub blocked: Option<bool>,
}

/// Applies an admin's change; returns the user and whether anything changed
/// (a change must revoke the user's tokens).
pub async fn admin_update(
    db: &DatabaseConnection,
    current: user::Model,
    change: AdminChange,
) -> Result<(user::Model, bool), ApiError> {
    let role_changes = change.role.is_some_and(|r| r != role_of(&current));
    let block_changes = change.blocked.is_some_and(|b| b != current.blocked);
    if !role_changes && !block_changes {
        return Ok((current, false));
    }
    let mut model: user::ActiveModel = current.into();
    if let Some(r) = change.role.filter(|_| role_changes) {
        model.role = Set(r.as_str().to_owned());
    }
    if let Some(b) = change.blocked.filter(|_| block_changes) {
        model.blocked = Set(b);
    }
    model.updated_at = Set(Utc::now());
    Ok((model.update(db).await.map_err(db_error)?, true))
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
            .map_err(db_error)
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
