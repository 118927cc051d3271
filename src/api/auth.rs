use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use poem::Request;
use poem::web::Data;
use poem_openapi::{
    ApiResponse, Object, OpenApi, Union, param::Path, payload::Json, types::Example,
};
use secrecy::SecretString;
use uuid::Uuid;

use super::{
    Tag,
    responses::{Created, NoContent},
    security::{Access, GatewayAccess, Refresh},
    text::{Email, Password, Text, Username},
    users::User,
};
use crate::{
    accounts::{self, Identifier, NewAccount},
    auth::{claims::Role, tokens::IssuedTokens},
    error::{ApiError, ApiResult},
    state::AppState,
};

#[derive(Object)]
#[oai(example)]
pub struct Register {
    pub username: Username,
    pub email: Email,
    pub password: Password,
}

impl Example for Register {
    fn example() -> Self {
        Register {
            username: Username("ada_lovelace".into()),
            email: Email("ada@example.com".into()),
            password: Password("correct horse battery staple".into()),
        }
    }
}

/// Exactly one of `email` and `username`, with the password. A body with
/// both or neither matches neither branch of the `oneOf`: 400.
#[derive(Union)]
#[oai(one_of)]
pub enum Login {
    ByEmail(LoginByEmail),
    ByUsername(LoginByUsername),
}

impl Login {
    /// The identifier and the password of either form.
    pub fn into_parts(self) -> (Identifier, String) {
        match self {
            Login::ByEmail(b) => (Identifier::Email(b.email.0), b.password.0),
            Login::ByUsername(b) => (Identifier::Username(b.username.0), b.password.0),
        }
    }
}

/// Log in by email (compared case-insensitively).
#[derive(Object)]
#[oai(example)]
pub struct LoginByEmail {
    pub email: Text,
    pub password: Text,
}

impl Example for LoginByEmail {
    fn example() -> Self {
        LoginByEmail {
            email: Text("ada@example.com".into()),
            password: Text("correct horse battery staple".into()),
        }
    }
}

/// Log in by username (compared case-insensitively).
#[derive(Object)]
#[oai(example)]
pub struct LoginByUsername {
    pub username: Text,
    pub password: Text,
}

impl Example for LoginByUsername {
    fn example() -> Self {
        LoginByUsername {
            username: Text("ada_lovelace".into()),
            password: Text("correct horse battery staple".into()),
        }
    }
}

#[derive(Object)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Seconds until the session (and so the refresh token) ends.
    pub refresh_expires_in: i64,
    pub user_id: Uuid,
}

impl From<IssuedTokens> for TokenPair {
    fn from(t: IssuedTokens) -> Self {
        Self {
            access_token: t.access_token,
            refresh_token: t.refresh_token,
            token_type: "Bearer".into(),
            expires_in: t.expires_in,
            refresh_expires_in: t.refresh_expires_in,
            user_id: t.user_id,
        }
    }
}

#[derive(Object)]
pub struct Verified {
    pub sub: Uuid,
    pub role: Role,
    pub sid: Uuid,
    pub jti: Uuid,
    /// Expiry, unix seconds.
    pub exp: i64,
    pub fresh: bool,
}

#[derive(Object)]
pub struct Session {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// `null` when the client sent none.
    #[oai(nullable)]
    pub user_agent: Option<String>,
    /// `null` when the client address is unknown.
    #[oai(nullable)]
    pub ip: Option<String>,
    /// True for the session of the token making this request.
    pub current: bool,
}

#[derive(ApiResponse)]
pub(super) enum Tokens {
    /// Tokens are secrets: never cached.
    #[oai(status = 200)]
    Ok(Json<TokenPair>, #[oai(header = "Cache-Control")] String),
}

pub(super) fn tokens(t: IssuedTokens) -> Tokens {
    Tokens::Ok(Json(t.into()), "no-store".into())
}

#[derive(ApiResponse)]
enum VerifyResponse {
    /// The token is valid; the headers are for gateway forward-auth.
    #[oai(status = 200)]
    Ok(
        Json<Verified>,
        #[oai(header = "x-auth-user-id")] String,
        #[oai(header = "x-auth-user-role")] String,
    ),
}

fn ts(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).single().unwrap_or_default()
}

pub struct AuthApi;

#[OpenApi(tag = "Tag::Auth")]
impl AuthApi {
    /// Create an account (role `user`).
    #[oai(path = "/auth/register", method = "post", operation_id = "register")]
    async fn register(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: Json<Register>,
    ) -> ApiResult<Created<User>> {
        let body = body.0;
        let meta = super::client::client_meta(&state, req);
        let user = accounts::sign_up(
            &state,
            NewAccount {
                username: body.username.0,
                email: body.email.0,
                password: SecretString::from(body.password.0),
            },
            meta.ip.as_deref(),
        )
        .await?;
        let location = format!("/users/{}", user.id);
        Ok(Created::at(user.into(), location))
    }

    /// Log in with email or username and password: a fresh access token and
    /// a refresh token starting a new session.
    #[oai(path = "/auth/login", method = "post", operation_id = "login")]
    async fn login(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: Json<Login>,
    ) -> ApiResult<Tokens> {
        let (ident, password) = body.0.into_parts();
        let meta = super::client::client_meta(&state, req);
        let issued = accounts::login(&state, &ident, SecretString::from(password), meta).await?;
        Ok(tokens(issued))
    }

    /// Rotate the refresh token (send it as the bearer token).
    #[oai(path = "/auth/refresh", method = "post", operation_id = "refresh")]
    async fn refresh(&self, state: Data<&Arc<AppState>>, auth: Refresh) -> ApiResult<Tokens> {
        Ok(tokens(accounts::refresh(&state, &auth.0).await?))
    }

    /// Revoke this access token and end its session.
    #[oai(path = "/auth/logout", method = "post", operation_id = "logout")]
    async fn logout(&self, state: Data<&Arc<AppState>>, auth: Access) -> ApiResult<NoContent> {
        state.tokens.logout(&auth.0).await?;
        Ok(NoContent::Done)
    }

    /// End every session of the caller.
    #[oai(
        path = "/auth/logout-all",
        method = "post",
        operation_id = "logout_all"
    )]
    async fn logout_all(&self, state: Data<&Arc<AppState>>, auth: Access) -> ApiResult<NoContent> {
        accounts::logout_all(&state, auth.0.sub).await?;
        Ok(NoContent::Done)
    }

    /// Check an access token (gateway forward-auth).
    #[oai(path = "/auth/verify", method = "get", operation_id = "verify")]
    async fn verify(&self, auth: GatewayAccess) -> ApiResult<VerifyResponse> {
        let c = auth.0;
        let role = c.role();
        Ok(VerifyResponse::Ok(
            Json(Verified {
                sub: c.sub,
                role,
                sid: c.sid,
                jti: c.jti,
                exp: c.exp,
                fresh: c.is_fresh(),
            }),
            c.sub.to_string(),
            role.as_str().to_owned(),
        ))
    }

    /// The caller's live sessions.
    #[oai(
        path = "/auth/sessions",
        method = "get",
        operation_id = "list_sessions"
    )]
    async fn sessions(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Access,
    ) -> ApiResult<Json<Vec<Session>>> {
        let list = state.tokens.sessions(auth.0.sub).await?;
        Ok(Json(
            list.into_iter()
                .map(|s| Session {
                    current: s.sid == auth.0.sid,
                    id: s.sid,
                    created_at: ts(s.created_at),
                    last_used_at: ts(s.last_used_at),
                    expires_at: ts(s.expires_at),
                    user_agent: s.user_agent,
                    ip: s.ip,
                })
                .collect(),
        ))
    }

    /// End one of the caller's sessions.
    #[oai(
        path = "/auth/sessions/:id",
        method = "delete",
        operation_id = "delete_session"
    )]
    async fn delete_session(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Access,
        id: Path<Uuid>,
    ) -> ApiResult<NoContent> {
        if state.tokens.revoke_session(auth.0.sub, id.0).await? {
            Ok(NoContent::Done)
        } else {
            Err(ApiError::NotFound("No such session.".into()))
        }
    }
}
