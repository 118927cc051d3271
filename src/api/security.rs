//! Bearer security schemes. Each checker does the whole check and yields a
//! value only it can make, so a handler cannot forget a check.

use std::sync::Arc;

use poem::{Request, http::Method};
use poem_openapi::{SecurityScheme, auth::Bearer};

use crate::{
    auth::{
        claims::{Claims, Role},
        cookies::Cookie,
        csrf::{self, Via},
    },
    error::ApiError,
    state::AppState,
};

fn state(req: &Request) -> Result<&Arc<AppState>, ApiError> {
    req.data::<Arc<AppState>>()
        .ok_or_else(|| ApiError::internal("AppState missing from request data"))
}

/// What a scheme demands beyond a valid, unrevoked access token.
#[derive(Clone, Copy)]
struct Demand {
    admin: bool,
    fresh: bool,
    /// Forward-auth: CSRF judges `X-Forwarded-Method` / `X-Original-Method`.
    gateway: bool,
}

/// Role before freshness (API.md's error precedence).
fn demand(claims: Claims, d: Demand) -> Result<Claims, ApiError> {
    if d.admin && claims.role() != Role::Admin {
        return Err(ApiError::AdminRequired);
    }
    if d.fresh && !claims.is_fresh() {
        return Err(ApiError::FreshTokenNeeded);
    }
    Ok(claims)
}

/// Where a request's access token came from.
enum Credential {
    Header(String),
    Cookie(String),
}

/// The access token of `req`: the `Authorization` header when there is one
/// (it alone decides: a bad header is never saved by a cookie), else the
/// access cookie when `TESSERA_COOKIES` is on. `None`: neither was sent.
fn credential(req: &Request, state: &AppState) -> Result<Option<Credential>, ApiError> {
    if req
        .headers()
        .contains_key(poem::http::header::AUTHORIZATION)
    {
        let bearer = <Bearer as poem_openapi::auth::BearerAuthorization>::from_request(req)
            .map_err(|_| ApiError::TokenMissing)?;
        return Ok(Some(Credential::Header(bearer.token)));
    }
    if !state.browser.enabled {
        return Ok(None);
    }
    let cookies = req.headers().get_all(poem::http::header::COOKIE);
    Ok(state
        .browser
        .jar
        .read(Cookie::Access, cookies.iter())
        .map(Credential::Cookie))
}

/// The method a CSRF check judges: the request's own, or for a gateway's
/// forward-auth call (`/auth/verify`) the original request's, named by
/// `X-Forwarded-Method` (Traefik) or `X-Original-Method` (ingress-nginx).
/// An unreadable one counts as unsafe (fail closed).
fn judged_method(req: &Request, gateway: bool) -> Method {
    if !gateway {
        return req.method().clone();
    }
    let named = ["x-forwarded-method", "x-original-method"]
        .iter()
        .find_map(|h| req.headers().get(*h));
    match named {
        None => req.method().clone(),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|m| Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes()).ok())
            .unwrap_or(Method::POST),
    }
}

/// The CSRF rule (`auth::csrf`) for a request authenticated `via` a header
/// or a cookie, for session `sid`.
pub(crate) fn csrf_guard(
    req: &Request,
    state: &AppState,
    sid: uuid::Uuid,
    via: Via,
    gateway: bool,
) -> Result<(), ApiError> {
    if via == Via::Header {
        return Ok(());
    }
    let method = judged_method(req, gateway);
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let expected = state.browser.csrf_key.token(sid);
    csrf::check(
        &csrf::Attempt {
            method: &method,
            via,
            header_token: header("x-csrf-token"),
            origin: header("origin"),
            expected: &expected,
        },
        |o| state.browser.origin_allowed(o),
    )
}

/// Authentication (header or cookie), then CSRF right after it, then the
/// role and freshness (API.md's error precedence).
async fn authenticate(req: &Request, d: Demand) -> Result<Claims, ApiError> {
    let state = state(req)?;
    let Some(cred) = credential(req, state)? else {
        return Err(ApiError::TokenMissing);
    };
    let (token, via) = match &cred {
        Credential::Header(t) => (t, Via::Header),
        Credential::Cookie(t) => (t, Via::Cookie),
    };
    let claims = state.tokens.authorize_access(token).await?;
    csrf_guard(req, state, claims.sid, via, d.gateway)?;
    demand(claims, d)
}

/// Documents the bearer form of an access token (`Authorization: Bearer`).
/// The `access_token` from POST /auth/login (or /auth/refresh).
#[derive(SecurityScheme)]
#[oai(rename = "accessToken", ty = "bearer", bearer_format = "JWT")]
#[allow(dead_code)]
struct AccessBearer(Bearer);

/// The access token in the browser-session cookie (`TESSERA_COOKIES=true`;
/// `tessera-access` when `TESSERA_COOKIE_SECURE=false`). Unsafe methods
/// also need the `X-CSRF-Token` header. A request with an `Authorization`
/// header is judged by the header alone.
#[derive(SecurityScheme)]
#[oai(
    rename = "accessCookie",
    ty = "api_key",
    key_name = "__Host-tessera-access",
    key_in = "cookie"
)]
#[allow(dead_code)]
struct AccessCookie(poem_openapi::auth::ApiKey);

/// The parts every extractor of ours shares: a security scheme, no
/// parameter, and the documented schemes (alternatives of one another).
macro_rules! scheme_meta {
    ($($scheme:ty => $name:literal),+ $(,)?) => {
        const TYPES: &'static [poem_openapi::ApiExtractorType] =
            &[poem_openapi::ApiExtractorType::SecurityScheme];
        type ParamType = ();
        type ParamRawType = ();

        fn register(registry: &mut poem_openapi::registry::Registry) {
            $(<$scheme as poem_openapi::ApiExtractor>::register(registry);)+
        }

        fn security_schemes() -> Vec<&'static str> {
            vec![$($name),+]
        }
    };
}

/// Declares an extractor that takes the access token from the header or the
/// cookie (both documented as alternatives), checks it, CSRF, the role and
/// freshness; only it can make its value, so a handler cannot skip a check.
macro_rules! access_scheme {
    ($(#[$doc:meta])* $name:ident, admin: $admin:expr, fresh: $fresh:expr, gateway: $gateway:expr) => {
        $(#[$doc])*
        pub struct $name(pub Claims);

        impl<'a> poem_openapi::ApiExtractor<'a> for $name {
            scheme_meta!(AccessBearer => "accessToken", AccessCookie => "accessCookie");

            async fn from_request(
                req: &'a Request,
                _body: &mut poem::RequestBody,
                _opts: poem_openapi::ExtractParamOptions<()>,
            ) -> poem::Result<Self> {
                let demand = Demand { admin: $admin, fresh: $fresh, gateway: $gateway };
                Ok(Self(authenticate(req, demand).await?))
            }
        }
    };
}

access_scheme!(
    /// A valid, unrevoked access token. Every protected operation but
    /// /auth/refresh takes it.
    Access, admin: false, fresh: false, gateway: false
);
access_scheme!(
    /// A fresh access token: one issued by a password login, not by a refresh.
    Fresh, admin: false, fresh: true, gateway: false
);
access_scheme!(
    /// An administrator's access token.
    Admin, admin: true, fresh: false, gateway: false
);
access_scheme!(
    /// A fresh administrator's access token (role is checked before freshness).
    AdminFresh, admin: true, fresh: true, gateway: false
);
access_scheme!(
    /// `/auth/verify`: as `Access`, but a gateway's forward-auth call is
    /// judged by the original request's method for CSRF.
    GatewayAccess, admin: false, fresh: false, gateway: true
);

/// The `refresh_token` from POST /auth/login (or /auth/refresh); only
/// POST /auth/refresh takes it, and spends it.
// A valid signature and claims here; the store decides at rotation whether
// it is current.
#[derive(SecurityScheme)]
#[oai(
    rename = "refreshToken",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "check_refresh"
)]
pub struct Refresh(pub Claims);

async fn check_refresh(req: &Request, bearer: Bearer) -> poem::Result<Claims> {
    Ok(state(req)?.tokens.verify_refresh(&bearer.token)?)
}

/// The refresh token in the browser-session cookie
/// (`__Secure-tessera-refresh`, sent only to /auth/browser/*). Only
/// POST /auth/browser/refresh takes it (with `X-CSRF-Token`).
#[derive(SecurityScheme)]
#[oai(
    rename = "refreshCookie",
    ty = "api_key",
    key_name = "__Secure-tessera-refresh",
    key_in = "cookie"
)]
#[allow(dead_code)]
struct RefreshCookieScheme(poem_openapi::auth::ApiKey);

/// The refresh cookie's value, if sent (never an error: the handler answers
/// a missing or bad one itself, clearing the cookies).
pub struct RefreshCookie(pub Option<String>);

impl<'a> poem_openapi::ApiExtractor<'a> for RefreshCookie {
    scheme_meta!(RefreshCookieScheme => "refreshCookie");

    async fn from_request(
        req: &'a Request,
        _body: &mut poem::RequestBody,
        _opts: poem_openapi::ExtractParamOptions<()>,
    ) -> poem::Result<Self> {
        let state = state(req)?;
        let cookies = req.headers().get_all(poem::http::header::COOKIE);
        Ok(Self(
            state.browser.jar.read(Cookie::Refresh, cookies.iter()),
        ))
    }
}

/// The access token (header or cookie) as `Access` checks it, with the
/// failure handed to the handler instead of answered (browser logout clears
/// the cookies on failure).
pub struct BrowserAccess(pub Result<Claims, ApiError>);

impl<'a> poem_openapi::ApiExtractor<'a> for BrowserAccess {
    scheme_meta!(AccessBearer => "accessToken", AccessCookie => "accessCookie");

    async fn from_request(
        req: &'a Request,
        _body: &mut poem::RequestBody,
        _opts: poem_openapi::ExtractParamOptions<()>,
    ) -> poem::Result<Self> {
        let demand = Demand {
            admin: false,
            fresh: false,
            gateway: false,
        };
        Ok(Self(authenticate(req, demand).await))
    }
}

/// Optional authentication: no `Authorization` header is anonymous; a header
/// with a bad, expired or revoked token is the same 401 as anywhere else,
/// never a silent fallback to anonymous.
pub struct MaybeAccess(pub Option<Claims>);

impl<'a> poem_openapi::ApiExtractor<'a> for MaybeAccess {
    scheme_meta!(AccessBearer => "accessToken", AccessCookie => "accessCookie");

    /// Documents `security: [{accessToken: []}, {accessCookie: []}, {}]`:
    /// the token is optional.
    fn has_security_fallback() -> bool {
        true
    }

    async fn from_request(
        req: &'a Request,
        _body: &mut poem::RequestBody,
        _opts: poem_openapi::ExtractParamOptions<()>,
    ) -> poem::Result<Self> {
        let state = state(req)?;
        if credential(req, state)?.is_none() {
            return Ok(Self(None));
        }
        let demand = Demand {
            admin: false,
            fresh: false,
            gateway: false,
        };
        Ok(Self(Some(authenticate(req, demand).await?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::claims::{TokenType, test_claims};

    fn claims(role: Role, fresh: bool) -> Claims {
        Claims {
            role: Some(role),
            fresh: Some(fresh),
            ..test_claims(TokenType::Access)
        }
    }

    #[test]
    fn role_is_checked_before_freshness() {
        let both = Demand {
            admin: true,
            fresh: true,
            gateway: false,
        };
        assert!(matches!(
            demand(claims(Role::User, false), both),
            Err(ApiError::AdminRequired)
        ));
        assert!(matches!(
            demand(claims(Role::Admin, false), both),
            Err(ApiError::FreshTokenNeeded)
        ));
        assert!(demand(claims(Role::Admin, true), both).is_ok());
        let fresh = Demand {
            admin: false,
            fresh: true,
            gateway: false,
        };
        assert!(matches!(
            demand(claims(Role::User, false), fresh),
            Err(ApiError::FreshTokenNeeded)
        ));
        assert!(demand(claims(Role::User, true), fresh).is_ok());
    }
}
