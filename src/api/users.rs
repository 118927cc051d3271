use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{Object, OpenApi, payload::Json};
use uuid::Uuid;

use super::{Tag, security::Access, text::Text};
use crate::{
    accounts::{self, ProfileChange},
    auth::claims::Role,
    error::{ApiError, ApiResult},
    state::AppState,
};

/// An account, as clients see it (never the password hash).
#[derive(Object)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub role: Role,
    pub blocked: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<entity::user::Model> for User {
    fn from(u: entity::user::Model) -> Self {
        Self {
            role: accounts::role_of(&u),
            id: u.id,
            username: u.username,
            email: u.email,
            blocked: u.blocked,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// Absent or null fields stay unchanged.
#[derive(Object)]
pub struct UpdateMe {
    pub username: Option<Text>,
    pub email: Option<Text>,
}

pub struct UsersApi;

async fn me(
    state: &AppState,
    claims: &crate::auth::claims::Claims,
) -> ApiResult<entity::user::Model> {
    // A token can outlive nothing: deleting a user ends their sessions,
    // so a missing row here means a race with deletion.
    accounts::find(&state.db, claims.sub)
        .await?
        .ok_or(ApiError::TokenRevoked)
}

async fn update_me(state: &AppState, auth: Access, body: UpdateMe) -> ApiResult<Json<User>> {
    let current = me(state, &auth.0).await?;
    let updated = accounts::update_profile(
        &state.db,
        current,
        ProfileChange {
            username: body.username.map(|t| t.0),
            email: body.email.map(|t| t.0),
        },
    )
    .await?;
    Ok(Json(updated.into()))
}

#[OpenApi(tag = "Tag::Users")]
impl UsersApi {
    /// The caller's account.
    #[oai(path = "/users/me", method = "get", operation_id = "get_me")]
    async fn get_me(&self, state: Data<&Arc<AppState>>, auth: Access) -> ApiResult<Json<User>> {
        Ok(Json(me(&state, &auth.0).await?.into()))
    }

    /// Change the caller's username or email.
    #[oai(path = "/users/me", method = "patch", operation_id = "patch_me")]
    async fn patch_me(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Access,
        body: Json<UpdateMe>,
    ) -> ApiResult<Json<User>> {
        update_me(&state, auth, body.0).await
    }

    /// Same as PATCH: absent fields stay unchanged.
    #[oai(path = "/users/me", method = "put", operation_id = "put_me")]
    async fn put_me(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Access,
        body: Json<UpdateMe>,
    ) -> ApiResult<Json<User>> {
        update_me(&state, auth, body.0).await
    }
}
