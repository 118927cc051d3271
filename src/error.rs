//! `ApiError`: the one place that maps failures to API.md's codes, statuses
//! and JSON body. Framework errors are translated in `http::render_errors`.

use std::collections::BTreeMap;

use poem::{
    Response,
    http::{HeaderValue, StatusCode, header},
};
use poem_openapi::{
    ApiResponse, Enum, Object, ResponseContent,
    payload::Json,
    registry::{MetaHeader, MetaResponse, MetaResponses, MetaSchema, MetaSchemaRef, Registry},
};
use serde::Serialize;

/// Machine-readable error code; the table of codes and when each is sent is in docs/http-api.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize)]
#[oai(rename_all = "PascalCase")]
pub enum ErrorCode {
    BadRequest,
    LinkInvalid,
    TokenMissing,
    TokenInvalid,
    TokenExpired,
    TokenRevoked,
    TokenReused,
    FreshTokenNeeded,
    InvalidCredentials,
    AdminRequired,
    UserBlocked,
    EmailNotVerified,
    MfaRequired,
    CsrfFailed,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
    TooManyRequests,
    InternalError,
    ServiceUnavailable,
}

/// Every error response body.
#[derive(Debug, Clone, Object, Serialize)]
pub struct ErrorBody {
    // No doc comment here: poem-openapi would wrap the `$ref` in an `allOf`
    // to carry it, and generators (openapi-python-client) then lose the type.
    // The enum's own description documents it.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
    /// Per-field problems (only with `ValidationFailed`).
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<BTreeMap<String, String>>,
    /// `MfaRequired` of a login only: send it with a code to
    /// `POST /auth/mfa/verify` (or `/auth/browser/mfa/verify`).
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mfa_token: Option<String>,
    /// `MfaRequired` of a login only: seconds the `mfa_token` stays valid.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<i64>,
}

/// What a login that needs its second factor hands back (API.md).
#[derive(Clone)]
pub struct MfaChallenge {
    pub mfa_token: String,
    pub expires_in: i64,
}

/// The token is a credential: never printed.
impl std::fmt::Debug for MfaChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfaChallenge")
            .field("mfa_token", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("This link is invalid, used, expired or replaced by a newer one; ask for a new one.")]
    LinkInvalid,
    #[error("An access token is required: send `Authorization: Bearer <token>`.")]
    TokenMissing,
    #[error("The token is malformed, has a bad signature or is not valid here.")]
    TokenInvalid,
    #[error("The token has expired; refresh it or log in again.")]
    TokenExpired,
    #[error("The token has been revoked; log in again.")]
    TokenRevoked,
    #[error("This refresh token was already used; the session has been revoked.")]
    TokenReused,
    #[error("This action needs a fresh access token: log in with your password again.")]
    FreshTokenNeeded,
    #[error("Wrong account or password.")]
    InvalidCredentials,
    #[error("This action needs an administrator.")]
    AdminRequired,
    #[error("This account is blocked.")]
    UserBlocked,
    #[error(
        "Verify your email address first: follow the link in the mail we sent (or ask for a new one)."
    )]
    EmailNotVerified,
    /// `Some` for a login (the challenge to answer), `None` for a reset.
    #[error(
        "This account has a second factor: send a code from the authenticator app (or a recovery code)."
    )]
    MfaRequired(Option<MfaChallenge>),
    #[error(
        "This cookie-authenticated request needs the session's X-CSRF-Token header and an allowed Origin."
    )]
    CsrfFailed,
    #[error("{0}")]
    NotFound(String),
    #[error("This method is not allowed on this route.")]
    MethodNotAllowed { allow: String },
    #[error("{0}")]
    Conflict(String),
    #[error("The request body is larger than {0} bytes.")]
    PayloadTooLarge(usize),
    #[error("The request body must be JSON (Content-Type: application/json).")]
    UnsupportedMediaType,
    #[error("Some fields have invalid values.")]
    ValidationFailed(BTreeMap<String, String>),
    #[error("Too many attempts; retry in {retry_after} seconds.")]
    TooManyRequests { retry_after: u64 },
    #[error("An internal error occurred.")]
    Internal,
    #[error("A backing service is unavailable; try again shortly.")]
    ServiceUnavailable,
}

impl ApiError {
    /// Logs the cause (never shown to the client) and returns 500.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        ApiError::Internal
    }

    /// Logs the cause and returns 503: a dependency is unreachable (fail closed).
    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "dependency unavailable");
        ApiError::ServiceUnavailable
    }

    pub fn not_found() -> Self {
        ApiError::NotFound("No such resource.".into())
    }

    pub fn validation(field: &str, problem: &str) -> Self {
        ApiError::ValidationFailed(BTreeMap::from([(field.to_owned(), problem.to_owned())]))
    }

    pub fn code(&self) -> ErrorCode {
        use ApiError::*;
        match self {
            BadRequest(_) => ErrorCode::BadRequest,
            LinkInvalid => ErrorCode::LinkInvalid,
            TokenMissing => ErrorCode::TokenMissing,
            TokenInvalid => ErrorCode::TokenInvalid,
            TokenExpired => ErrorCode::TokenExpired,
            TokenRevoked => ErrorCode::TokenRevoked,
            TokenReused => ErrorCode::TokenReused,
            FreshTokenNeeded => ErrorCode::FreshTokenNeeded,
            InvalidCredentials => ErrorCode::InvalidCredentials,
            AdminRequired => ErrorCode::AdminRequired,
            UserBlocked => ErrorCode::UserBlocked,
            EmailNotVerified => ErrorCode::EmailNotVerified,
            MfaRequired(_) => ErrorCode::MfaRequired,
            CsrfFailed => ErrorCode::CsrfFailed,
            NotFound(_) => ErrorCode::NotFound,
            MethodNotAllowed { .. } => ErrorCode::MethodNotAllowed,
            Conflict(_) => ErrorCode::Conflict,
            PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            UnsupportedMediaType => ErrorCode::UnsupportedMediaType,
            ValidationFailed(_) => ErrorCode::ValidationFailed,
            TooManyRequests { .. } => ErrorCode::TooManyRequests,
            Internal => ErrorCode::InternalError,
            ServiceUnavailable => ErrorCode::ServiceUnavailable,
        }
    }

    pub fn status_code(&self) -> StatusCode {
        use ApiError::*;
        match self {
            BadRequest(_) | LinkInvalid => StatusCode::BAD_REQUEST,
            TokenMissing | TokenInvalid | TokenExpired | TokenRevoked | TokenReused
            | FreshTokenNeeded | InvalidCredentials => StatusCode::UNAUTHORIZED,
            AdminRequired | UserBlocked | EmailNotVerified | MfaRequired(_) | CsrfFailed => {
                StatusCode::FORBIDDEN
            }
            NotFound(_) => StatusCode::NOT_FOUND,
            MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Conflict(_) => StatusCode::CONFLICT,
            PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ValidationFailed(_) => StatusCode::UNPROCESSABLE_ENTITY,
            TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code(),
            message: self.to_string(),
            fields: match self {
                ApiError::ValidationFailed(fields) => Some(fields.clone()),
                _ => None,
            },
            mfa_token: match self {
                ApiError::MfaRequired(Some(c)) => Some(c.mfa_token.clone()),
                _ => None,
            },
            expires_in: match self {
                ApiError::MfaRequired(Some(c)) => Some(c.expires_in),
                _ => None,
            },
        }
    }

    /// RFC 6750 challenge for every 401.
    fn www_authenticate(&self) -> Option<&'static str> {
        use ApiError::*;
        match self {
            TokenMissing | InvalidCredentials => Some(r#"Bearer realm="tessera""#),
            TokenInvalid | TokenExpired | TokenRevoked | TokenReused => Some(
                r#"Bearer realm="tessera", error="invalid_token", error_description="the token is invalid, expired or revoked""#,
            ),
            FreshTokenNeeded => Some(
                r#"Bearer realm="tessera", error="insufficient_user_authentication", error_description="a fresh access token is required""#,
            ),
            _ => None,
        }
    }

    pub fn to_response(&self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_else(|_| {
            br#"{"code":"InternalError","message":"An internal error occurred."}"#.to_vec()
        });
        let mut resp = Response::builder()
            .status(self.status_code())
            .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
            .body(body);
        if let Some(challenge) = self.www_authenticate() {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        match self {
            ApiError::MethodNotAllowed { allow } => {
                if let Ok(v) = HeaderValue::from_str(allow) {
                    resp.headers_mut().insert(header::ALLOW, v);
                }
            }
            ApiError::TooManyRequests { retry_after } => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            _ => {}
        }
        resp
    }
}

impl poem::error::ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        self.status_code()
    }

    fn as_response(&self) -> Response {
        self.to_response()
    }
}

/// Lets handlers return `Result<T, ApiError>` and documents the error schema
/// on every operation of the OpenAPI document.
impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        let documented: [(u16, &'static str); 11] = [
            (400, "BadRequest: malformed body, parameter or query"),
            (
                401,
                "TokenMissing, TokenInvalid, TokenExpired, TokenRevoked, TokenReused, FreshTokenNeeded or InvalidCredentials",
            ),
            (
                403,
                "AdminRequired, UserBlocked, EmailNotVerified, CsrfFailed, or MfaRequired (a login's with `mfa_token` and `expires_in`)",
            ),
            (404, "NotFound"),
            (409, "Conflict"),
            (413, "PayloadTooLarge"),
            (415, "UnsupportedMediaType"),
            (422, "ValidationFailed, with `fields`"),
            (429, "TooManyRequests, with Retry-After"),
            (500, "InternalError"),
            (
                503,
                "ServiceUnavailable: database or token store unreachable",
            ),
        ];
        MetaResponses {
            responses: documented
                .into_iter()
                .map(|(status, description)| MetaResponse {
                    description,
                    status: Some(status),
                    status_range: None,
                    content: <Json<ErrorBody> as ResponseContent>::media_types(),
                    headers: error_headers(status),
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        <Json<ErrorBody> as ResponseContent>::register(registry);
    }
}

/// The headers API.md promises with an error status.
fn error_headers(status: u16) -> Vec<MetaHeader> {
    let header = |name: &str, description: &str, schema: MetaSchema| MetaHeader {
        name: name.to_owned(),
        description: Some(description.to_owned()),
        required: true,
        deprecated: false,
        schema: MetaSchemaRef::Inline(Box::new(schema)),
    };
    match status {
        401 => vec![header(
            "WWW-Authenticate",
            "RFC 6750 challenge, e.g. `Bearer error=\"invalid_token\"`.",
            MetaSchema::new("string"),
        )],
        429 => {
            let mut seconds = MetaSchema::new_with_format("integer", "int64");
            seconds.minimum = Some(0.0);
            vec![header(
                "Retry-After",
                "Seconds until the login window ends.",
                seconds,
            )]
        }
        _ => vec![],
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The one point where a token store failure meets a request, so the one
/// place it is counted.
impl From<crate::auth::store::StoreError> for ApiError {
    fn from(e: crate::auth::store::StoreError) -> Self {
        use crate::{auth::store::StoreError, metrics};
        metrics::event(metrics::Event::StoreUnavailable);
        metrics::store_error(match e {
            StoreError::Unavailable(_) => metrics::StoreErrorKind::Unavailable,
            StoreError::Corrupt(_) => metrics::StoreErrorKind::Corrupt,
        });
        ApiError::unavailable(e)
    }
}

/// Unique and foreign-key refusals are 409; a database that cannot be
/// reached, or whose connection drops in the middle of a query, is 503 (fail
/// closed, try again); anything else is a bug (500). Failures are counted
/// here, the one point where they meet a request.
impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        use crate::metrics;
        use sea_orm::{DbErr, SqlErr};
        match e.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => {
                return ApiError::Conflict("That value is already taken.".into());
            }
            Some(SqlErr::ForeignKeyConstraintViolation(_)) => {
                return ApiError::Conflict("The record is still referenced by others.".into());
            }
            _ => {}
        }
        if is_sqlite_restrict(&e) {
            return ApiError::Conflict("The record is still referenced by others.".into());
        }
        if is_acquire_timeout(&e) {
            metrics::db_acquire_timeout();
        }
        let unavailable =
            matches!(e, DbErr::Conn(_) | DbErr::ConnectionAcquire(_)) || is_connection_loss(&e);
        ApiError::database(unavailable, e)
    }
}

impl ApiError {
    /// A database failure, counted: 503 when the database is unreachable
    /// or busy (fail closed, try again), else 500 (a bug).
    pub(crate) fn database(unavailable: bool, cause: impl std::fmt::Display) -> Self {
        use crate::metrics::{self, DbErrorKind, Event};
        if unavailable {
            metrics::event(Event::DatabaseUnavailable);
            metrics::db_error(DbErrorKind::Unavailable);
            ApiError::unavailable(cause)
        } else {
            metrics::event(Event::DatabaseError);
            metrics::db_error(DbErrorKind::Other);
            ApiError::internal(cause)
        }
    }
}

/// No pool connection within the acquire timeout, as SeaORM reports it or
/// as SQLx does inside a query.
fn is_acquire_timeout(e: &sea_orm::DbErr) -> bool {
    use sea_orm::{ConnAcquireErr, DbErr};
    matches!(e, DbErr::ConnectionAcquire(ConnAcquireErr::Timeout))
        || matches!(sqlx_error(e), Some(sea_orm::sqlx::Error::PoolTimedOut))
}

fn sqlx_error(e: &sea_orm::DbErr) -> Option<&sea_orm::sqlx::Error> {
    use sea_orm::{DbErr, RuntimeErr};
    match e {
        DbErr::Exec(RuntimeErr::SqlxError(inner))
        | DbErr::Query(RuntimeErr::SqlxError(inner))
        | DbErr::Conn(RuntimeErr::SqlxError(inner)) => Some(inner),
        _ => None,
    }
}

/// The connection went away under a running query (server restart, network
/// cut, pool shut down): a dependency failure, not a bug.
fn is_connection_loss(e: &sea_orm::DbErr) -> bool {
    use sea_orm::sqlx::Error;
    matches!(
        sqlx_error(e),
        Some(
            Error::Io(_)
                | Error::Tls(_)
                | Error::Protocol(_)
                | Error::PoolTimedOut
                | Error::PoolClosed
                | Error::WorkerCrashed
        )
    ) || sqlx_error(e).is_some_and(|inner| match inner {
        // PostgreSQL's admin_shutdown / crash_shutdown / cannot_connect_now
        // and connection_exception class (08xxx).
        Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    })
}

/// SQLite reports an `ON DELETE RESTRICT` refusal as SQLITE_CONSTRAINT_TRIGGER
/// (1811), which SeaORM does not classify as a foreign-key violation.
fn is_sqlite_restrict(e: &sea_orm::DbErr) -> bool {
    matches!(sqlx_error(e), Some(sea_orm::sqlx::Error::Database(d))
        if d.code().as_deref() == Some("1811") && d.message().contains("FOREIGN KEY"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_401_has_a_challenge() {
        for e in [
            ApiError::TokenMissing,
            ApiError::TokenInvalid,
            ApiError::TokenExpired,
            ApiError::TokenRevoked,
            ApiError::TokenReused,
            ApiError::FreshTokenNeeded,
            ApiError::InvalidCredentials,
        ] {
            let resp = e.to_response();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
            assert!(
                resp.headers().contains_key(header::WWW_AUTHENTICATE),
                "{e:?}"
            );
        }
    }

    /// The counter `name` in the exposition text (0 when absent).
    fn count(name: &str) -> u64 {
        crate::metrics::render()
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    }

    /// Unit tests share the process: counters are compared before/after and
    /// only ever grow.
    #[test]
    fn failures_are_counted_by_kind() {
        use crate::auth::store::StoreError;
        use sea_orm::{ConnAcquireErr, DbErr};
        let corrupt = r#"tessera_store_errors_total{kind="corrupt"}"#;
        let unavailable = r#"tessera_db_errors_total{kind="unavailable"}"#;
        let other = r#"tessera_db_errors_total{kind="other"}"#;
        let timeouts = "tessera_db_pool_acquire_timeouts_total";
        let before = [corrupt, unavailable, other, timeouts].map(count);

        let e = ApiError::from(StoreError::Corrupt("x".into()));
        assert!(matches!(e, ApiError::ServiceUnavailable));
        let e = ApiError::from(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout));
        assert!(matches!(e, ApiError::ServiceUnavailable));
        let e = ApiError::from(DbErr::Custom("bug".into()));
        assert!(matches!(e, ApiError::Internal));

        let after = [corrupt, unavailable, other, timeouts].map(count);
        for (i, (b, a)) in before.iter().zip(after).enumerate() {
            assert!(a > *b, "series {i} did not grow: {b} -> {a}");
        }
    }

    #[test]
    fn validation_failed_carries_fields() {
        let body = serde_json::to_value(ApiError::validation("email", "bad").body()).unwrap();
        assert_eq!(body["code"], "ValidationFailed");
        assert_eq!(body["fields"]["email"], "bad");
        let body = serde_json::to_value(ApiError::TokenMissing.body()).unwrap();
        assert!(body.get("fields").is_none());
    }
}
