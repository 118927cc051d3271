use std::{borrow::Cow, sync::Arc};

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{
    Object, OpenApi,
    param::{Path, Query},
    payload::Json,
    registry::{MetaSchema, MetaSchemaRef},
    types::{Example, ParseError, ParseFromJSON, ParseResult, ToJSON, Type},
};
use secrecy::SecretString;
use uuid::Uuid;

use super::{
    Tag,
    params::{Id, PageNumber, PerPage},
    responses::{NoContent, Page},
    security::{Access, Admin, AdminFresh, Fresh},
    text::{Email, Password, Text, Username},
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
    /// The mailbox of `email` was proven by a verification or reset link.
    pub email_verified: bool,
    /// A new address waiting for its confirmation link (null: none).
    #[oai(nullable)]
    pub pending_email: Option<String>,
    /// A second factor (TOTP) guards logins and password resets.
    pub mfa_enabled: bool,
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
            email_verified: u.email_verified,
            pending_email: u.pending_email,
            mfa_enabled: u.mfa_enabled,
            blocked: u.blocked,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// Absent or null fields stay unchanged.
#[derive(Object)]
#[oai(example)]
pub struct UpdateMe {
    #[oai(nullable)]
    pub username: Option<Username>,
    #[oai(nullable)]
    pub email: Option<Email>,
}

impl Example for UpdateMe {
    fn example() -> Self {
        UpdateMe {
            username: Some(Username("ada_l".into())),
            email: None,
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct ChangePassword {
    pub current_password: Text,
    pub new_password: Password,
}

impl Example for ChangePassword {
    fn example() -> Self {
        ChangePassword {
            current_password: Text("correct horse battery staple".into()),
            new_password: Password("a longer passphrase, never reused".into()),
        }
    }
}

/// Absent or null fields stay unchanged.
#[derive(Object)]
#[oai(example)]
pub struct AdminUpdate {
    #[oai(nullable)]
    pub role: Option<RoleField>,
    #[oai(nullable)]
    pub blocked: Option<bool>,
}

/// `role` of an admin update, documented as an inline nullable enum: a
/// nullable `$ref` needs an `allOf` wrapper, and generators drop those.
pub struct RoleField(pub Role);

impl Type for RoleField {
    const IS_REQUIRED: bool = true;
    type RawValueType = Role;
    type RawElementValueType = Role;

    fn name() -> Cow<'static, str> {
        "role_or_null".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        let mut schema = MetaSchema::new("string");
        schema.enum_items = [Role::User, Role::Admin]
            .iter()
            .filter_map(ToJSON::to_json)
            .collect();
        schema.nullable = true;
        schema.description = Some("The new role; absent or null leaves it.");
        MetaSchemaRef::Inline(Box::new(schema))
    }

    fn as_raw_value(&self) -> Option<&Role> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Role> + 'a> {
        Box::new(std::iter::once(&self.0))
    }
}

impl ParseFromJSON for RoleField {
    fn parse_from_json(value: Option<serde_json::Value>) -> ParseResult<Self> {
        Role::parse_from_json(value)
            .map(RoleField)
            .map_err(ParseError::propagate)
    }
}

impl ToJSON for RoleField {
    fn to_json(&self) -> Option<serde_json::Value> {
        self.0.to_json()
    }
}

impl Example for AdminUpdate {
    fn example() -> Self {
        AdminUpdate {
            role: None,
            blocked: Some(true),
        }
    }
}

pub struct UsersApi;

pub(super) async fn me(
    db: &sea_orm::DatabaseConnection,
    claims: &crate::auth::claims::Claims,
) -> ApiResult<entity::user::Model> {
    // A token can outlive nothing: deleting a user ends their sessions,
    // so a missing row here means a race with deletion.
    accounts::find(db, claims.sub)
        .await?
        .ok_or(ApiError::TokenRevoked)
}

async fn update_me(
    state: &AppState,
    req: &poem::Request,
    auth: Access,
    body: UpdateMe,
) -> ApiResult<Json<User>> {
    let current = me(&state.db, &auth.0).await?;
    let ip = super::client::client_meta(state, req).ip;
    let updated = accounts::update_profile(
        state,
        current,
        ProfileChange {
            username: body.username.map(|t| t.0),
            email: body.email.map(|t| t.0),
        },
        auth.0.is_fresh(),
        ip.as_deref(),
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
    #[oai(path = "/users/me", method = "patch", operation_id = "update_me")]
    async fn patch_me(
        &self,
        state: Data<&Arc<AppState>>,
        req: &poem::Request,
        auth: Access,
        body: Json<UpdateMe>,
    ) -> ApiResult<Json<User>> {
        update_me(&state, req, auth, body.0).await
    }

    /// Same as PATCH: absent fields stay unchanged.
    #[oai(path = "/users/me", method = "put", operation_id = "put_me")]
    async fn put_me(
        &self,
        state: Data<&Arc<AppState>>,
        req: &poem::Request,
        auth: Access,
        body: Json<UpdateMe>,
    ) -> ApiResult<Json<User>> {
        update_me(&state, req, auth, body.0).await
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
        page: Query<Option<PageNumber>>,
        per_page: Query<Option<PerPage>>,
    ) -> ApiResult<Json<Page<User>>> {
        let paging = super::params::paging(page.0, per_page.0)?;
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
            role: body.0.role.map(|r| r.0),
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
