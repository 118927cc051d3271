//! Browser sessions (API.md "Browser sessions"): login, refresh and logout
//! with the tokens in HttpOnly cookies, never in a body. Failures clear the
//! cookies, except a CSRF refusal, which changes nothing.

use std::sync::Arc;

use poem::{
    IntoResponse, Request, Response,
    http::{HeaderValue, StatusCode, header},
    web::Data,
};
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    payload::Json,
    registry::{MetaHeader, MetaMediaType, MetaResponse, MetaResponses, Registry},
    types::{ToJSON, Type},
};
use secrecy::SecretString;
use uuid::Uuid;

use super::{
    Tag,
    auth::Login,
    mfa::MfaVerify,
    security::{self, BrowserAccess, RefreshCookie},
};
use crate::{
    accounts,
    auth::{cookies::Cookie, csrf::Via, tokens::IssuedTokens},
    error::{ApiError, ApiResult},
    state::AppState,
};

/// A browser session: the tokens are in the cookies, never here.
#[derive(Object)]
pub struct BrowserSession {
    pub user_id: Uuid,
    /// Seconds until the access token (and its cookie) expires.
    pub expires_in: i64,
    /// Seconds until the session (and the refresh cookie) ends.
    pub refresh_expires_in: i64,
    /// Send it as `X-CSRF-Token` on every unsafe request (also in the
    /// readable CSRF cookie). The same for the whole session.
    pub csrf_token: String,
}

/// What a browser endpoint answers: the session and its cookies, the
/// cookies cleared (logout), or an error that clears them.
pub enum BrowserAnswer {
    Session(BrowserSession, Vec<HeaderValue>),
    LoggedOut(Vec<HeaderValue>),
    Failed(ApiError, Vec<HeaderValue>),
}

fn clear_all(state: &AppState) -> Vec<HeaderValue> {
    Cookie::ALL
        .iter()
        .map(|c| state.browser.jar.clear(*c))
        .collect()
}

/// The session's cookies and body from issued tokens.
fn session(state: &AppState, t: IssuedTokens) -> BrowserAnswer {
    let jar = &state.browser.jar;
    let csrf = state.browser.csrf_key.token(t.sid);
    let cookies = vec![
        jar.set(Cookie::Access, &t.access_token, t.expires_in),
        jar.set(Cookie::Refresh, &t.refresh_token, t.refresh_expires_in),
        jar.set(Cookie::Csrf, &csrf, t.refresh_expires_in),
    ];
    BrowserAnswer::Session(
        BrowserSession {
            user_id: t.user_id,
            expires_in: t.expires_in,
            refresh_expires_in: t.refresh_expires_in,
            csrf_token: csrf,
        },
        cookies,
    )
}

/// A failure: the error, with the cookies cleared unless it is a CSRF
/// refusal (which must change nothing, not even the browser's cookies).
fn failed(state: &AppState, e: ApiError) -> ApiResult<BrowserAnswer> {
    match e {
        ApiError::CsrfFailed | ApiError::ServiceUnavailable => Err(e),
        e => Ok(BrowserAnswer::Failed(e, clear_all(state))),
    }
}

impl IntoResponse for BrowserAnswer {
    fn into_response(self) -> Response {
        let (mut resp, cookies) = match self {
            BrowserAnswer::Session(body, cookies) => {
                let json = body.to_json_string();
                (
                    Response::builder()
                        .status(StatusCode::OK)
                        .content_type("application/json; charset=utf-8")
                        .body(json),
                    cookies,
                )
            }
            BrowserAnswer::LoggedOut(cookies) => (
                Response::builder().status(StatusCode::NO_CONTENT).finish(),
                cookies,
            ),
            BrowserAnswer::Failed(e, cookies) => (e.to_response(), cookies),
        };
        let headers = resp.headers_mut();
        for c in cookies {
            headers.append(header::SET_COOKIE, c);
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}

fn header_meta(name: &str, description: &str) -> MetaHeader {
    MetaHeader {
        name: name.to_owned(),
        description: Some(description.to_owned()),
        required: true,
        deprecated: false,
        schema: String::schema_ref(),
    }
}

const COOKIES_SET: &str = "The three cookies: `__Host-tessera-access` (HttpOnly), \
     `__Secure-tessera-refresh` (HttpOnly, Path=/auth/browser) and `__Host-tessera-csrf` \
     (readable); one header each.";

impl ApiResponse for BrowserAnswer {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "The session; the tokens are in the cookies.",
                status: Some(200),
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: "application/json; charset=utf-8",
                    schema: BrowserSession::schema_ref(),
                }],
                headers: vec![
                    header_meta("Set-Cookie", COOKIES_SET),
                    header_meta("Cache-Control", "`no-store`"),
                ],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        BrowserSession::register(registry);
    }
}

/// `BrowserAnswer` documented as logout's 204.
pub struct LogoutAnswer(BrowserAnswer);

impl IntoResponse for LogoutAnswer {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

impl ApiResponse for LogoutAnswer {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "Logged out; the cookies are cleared.",
                status: Some(204),
                status_range: None,
                content: vec![],
                headers: vec![header_meta(
                    "Set-Cookie",
                    "The three cookies, cleared (`Max-Age=0`); one header each.",
                )],
            }],
        }
    }

    fn register(_registry: &mut Registry) {}
}

pub struct BrowserApi;

#[OpenApi(tag = "Tag::Auth")]
impl BrowserApi {
    /// Log in for a browser app (`TESSERA_COOKIES=true`): as /auth/login,
    /// but the tokens go into HttpOnly cookies and the body carries the
    /// CSRF token.
    #[oai(
        path = "/auth/browser/login",
        method = "post",
        operation_id = "browser_login"
    )]
    async fn login(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: Json<Login>,
    ) -> ApiResult<BrowserAnswer> {
        let (ident, password) = body.0.into_parts();
        let meta = super::client::client_meta(&state, req);
        match accounts::login(&state, &ident, SecretString::from(password), meta).await {
            Ok(issued) => Ok(session(&state, issued)),
            Err(e) => failed(&state, e),
        }
    }

    /// Finish a browser login that answered 403 `MfaRequired` (as
    /// /auth/mfa/verify): the session goes into the cookies.
    #[oai(
        path = "/auth/browser/mfa/verify",
        method = "post",
        operation_id = "browser_verify_mfa"
    )]
    async fn verify_mfa(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: Json<MfaVerify>,
    ) -> ApiResult<BrowserAnswer> {
        let meta = super::client::client_meta(&state, req);
        let body = body.0;
        match accounts::mfa::verify(&state, &body.mfa_token.0, &body.code.0, meta).await {
            Ok(issued) => Ok(session(&state, issued)),
            Err(e) => failed(&state, e),
        }
    }

    /// Rotate the browser session's refresh cookie (needs `X-CSRF-Token`).
    /// The rules of /auth/refresh: reuse revokes the session, the grace
    /// applies, the session's end is absolute.
    #[oai(
        path = "/auth/browser/refresh",
        method = "post",
        operation_id = "browser_refresh"
    )]
    async fn refresh(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: RefreshCookie,
    ) -> ApiResult<BrowserAnswer> {
        let Some(token) = auth.0 else {
            return failed(&state, ApiError::TokenMissing);
        };
        let claims = match state.tokens.verify_refresh(&token) {
            Ok(c) => c,
            Err(e) => return failed(&state, e),
        };
        // Before anything is spent: a refusal rotates nothing.
        security::csrf_guard(req, &state, claims.sid, Via::Cookie, false)?;
        match accounts::refresh(&state, &claims).await {
            Ok(issued) => Ok(session(&state, issued)),
            Err(e) => failed(&state, e),
        }
    }

    /// End the browser session (as /auth/logout) and clear its cookies. With
    /// the access cookie gone (expired), the refresh cookie names the
    /// session to end.
    #[oai(
        path = "/auth/browser/logout",
        method = "post",
        operation_id = "browser_logout"
    )]
    async fn logout(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: BrowserAccess,
        refresh: RefreshCookie,
    ) -> ApiResult<LogoutAnswer> {
        let logged_out = || Ok(LogoutAnswer(BrowserAnswer::LoggedOut(clear_all(&state))));
        match auth.0 {
            Ok(claims) => match state.tokens.logout(&claims).await {
                Ok(()) => logged_out(),
                Err(e) => failed(&state, e).map(LogoutAnswer),
            },
            // The access cookie expired (the browser dropped it) or its
            // token did: the refresh cookie, sent to this path too, still
            // names the session, which must end rather than outlive the
            // cleared cookies.
            Err(e @ (ApiError::TokenMissing | ApiError::TokenExpired)) => {
                let Some(claims) = refresh.0.and_then(|t| state.tokens.verify_refresh(&t).ok())
                else {
                    return failed(&state, e).map(LogoutAnswer);
                };
                security::csrf_guard(req, &state, claims.sid, Via::Cookie, false)?;
                match state.tokens.revoke_session(claims.sub, claims.sid).await {
                    Ok(_) => logged_out(),
                    Err(e) => failed(&state, e.into()).map(LogoutAnswer),
                }
            }
            Err(e) => failed(&state, e).map(LogoutAnswer),
        }
    }
}
