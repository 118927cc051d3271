use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{
    Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use secrecy::SecretString;
use uuid::Uuid;

use super::{
    Tag,
    params::Id,
    responses::{NoContent, Page},
    security::{Access, Admin, AdminFresh, Fresh},
    text::Text,
};
use crate::{
    accounts::{self, AdminChange, ProfileChange},
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

#[derive(Object)]
pub struct ChangePassword {
    pub current_password: Text,
    pub new_password: Text,
}

/// Absent or null fields stay unchanged.
#[derive(Object)]
pub struct AdminUpdate {
    pub role: Option<Role>,
    pub blocked: Option<bool>,
}

pub struct UsersApi;

async fn me(
    db: &sea_orm::DatabaseConnection,
    claims: &crate::auth::claims::Claims,
) -> ApiResult<entity::user::Model> {
    // A token can outlive nothing: deleting a user ends their sessions,
    // so a missing row here means a race with deletion.
    accounts::find(db, claims.sub)
        .await?
        .ok_or(ApiError::TokenRevoked)
}

async fn update_me(state: &AppState, auth: Access, body: UpdateMe) -> ApiResult<Json<User>> {
    let current = me(&state.db, &auth.0).await?;
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
        // A missing row: a race with deletion, as in `me`.
        let user = state.reads().user(auth.0.sub).await?;
        Ok(Json(user.ok_or(ApiError::TokenRevoked)?.into()))
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

    /// Change the caller's password (fresh token). Ends every session.
    #[oai(
        path = "/users/me/password",
        method = "put",
        operation_id = "change_password"
    )]
    async fn change_password(
        &self,
        state: Data<&Arc<AppState>>,
        req: &poem::Request,
        auth: Fresh,
        body: Json<ChangePassword>,
    ) -> ApiResult<NoContent> {
        let current = me(&state.db, &auth.0).await?;
        let body = body.0;
        let ip = super::client::client_meta(&state, req).ip;
        accounts::change_password(
            &state,
            current,
            SecretString::from(body.current_password.0),
            SecretString::from(body.new_password.0),
            ip.as_deref(),
        )
        .await?;
        Ok(NoContent::Done)
    }

    /// Delete the caller's account and everything it owns (fresh token).
    #[oai(path = "/users/me", method = "delete", operation_id = "delete_me")]
    async fn delete_me(&self, state: Data<&Arc<AppState>>, auth: Fresh) -> ApiResult<NoContent> {
        accounts::delete(&state, auth.0.sub).await?;
        Ok(NoContent::Done)
    }

    /// List users (admin).
    #[oai(path = "/users", method = "get", operation_id = "list_users")]
    async fn list_users(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: Admin,
        page: Query<Option<i64>>,
        per_page: Query<Option<i64>>,
    ) -> ApiResult<Json<Page<User>>> {
        let paging = crate::paging::Paging::new(page.0, per_page.0)?;
        let (items, total) = accounts::list(state.reader(), paging).await?;
        Ok(Json(Page::of(items, paging, total)))
    }

    /// One user: yourself, or anyone for an admin.
    #[oai(path = "/users/:id", method = "get", operation_id = "get_user")]
    async fn get_user(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Access,
        id: Path<Id>,
    ) -> ApiResult<Json<User>> {
        // Role before parameters: a non-admin asking for anyone else is 403
        // whatever the id looks like.
        let is_self = id.0.uuid().is_ok_and(|u| u == auth.0.sub);
        if !is_self && auth.0.role() != Role::Admin {
            return Err(ApiError::AdminRequired);
        }
        let id = id.0.uuid()?;
        let user = state
            .reads()
            .user(id)
            .await?
            .ok_or_else(ApiError::not_found)?;
        Ok(Json(user.into()))
    }

    /// Change a user's role or block them (admin). A change ends all of that
    /// user's sessions at once.
    #[oai(path = "/users/:id", method = "patch", operation_id = "update_user")]
    async fn update_user(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: Admin,
        id: Path<Id>,
        body: Json<AdminUpdate>,
    ) -> ApiResult<Json<User>> {
        let id = id.0.uuid()?;
        let current = accounts::find(&state.db, id)
            .await?
            .ok_or_else(ApiError::not_found)?;
        let change = AdminChange {
            role: body.0.role,
            blocked: body.0.blocked,
        };
        let user = accounts::admin_update(&state, current, change)
            .await?
            .ok_or_else(ApiError::not_found)?;
        Ok(Json(user.into()))
    }

    /// Delete a user (fresh admin token).
    #[oai(path = "/users/:id", method = "delete", operation_id = "delete_user")]
    async fn delete_user(
        &self,
        state: Data<&Arc<AppState>>,
        _auth: AdminFresh,
        id: Path<Id>,
    ) -> ApiResult<NoContent> {
        let id = id.0.uuid()?;
        if !accounts::delete(&state, id).await? {
            return Err(ApiError::not_found());
        }
        Ok(NoContent::Done)
    }
}
