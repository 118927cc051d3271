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

use crate::{auth::claims::Role, auth::password::Passwords, error::ApiError, validation};

pub fn db_error(e: DbErr) -> ApiError {
    match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => {
            ApiError::Conflict("That value is already taken.".into())
        }
        _ => match e {
            DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => ApiError::unavailable(e),
            other => ApiError::internal(other),
        },
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
    if let Some(username) = username {
        let taken = user::Entity::find()
            .filter(user::Column::UsernameKey.eq(username.to_lowercase()))
            .one(db)
            .await
            .map_err(db_error)?;
        if taken.is_some_and(|u| Some(u.id) != except) {
            return Err(ApiError::Conflict("That username is already taken.".into()));
        }
    }
    if let Some(email) = email {
        let taken = user::Entity::find()
            .filter(user::Column::EmailKey.eq(email.to_lowercase()))
            .one(db)
            .await
            .map_err(db_error)?;
        if taken.is_some_and(|u| Some(u.id) != except) {
            return Err(ApiError::Conflict(
                "That email is already registered.".into(),
            ));
        }
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

/// Checks credentials. Unknown account and wrong password are the same
/// error after the same work (a dummy hash is verified for unknown ones).
pub async fn authenticate(
    db: &DatabaseConnection,
    passwords: &Passwords,
    ident: &Identifier,
    password: SecretString,
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
    let hash = found.as_ref().map(|u| u.password_hash.clone());
    let ok = passwords.verify(password, hash).await?;
    match found {
        Some(u) if ok => {
            if u.blocked {
                Err(ApiError::UserBlocked)
            } else {
                Ok(u)
            }
        }
        _ => Err(ApiError::InvalidCredentials),
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
