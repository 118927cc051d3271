//! Bearer security schemes. Each checker does the whole check and yields a
//! value only it can make, so a handler cannot forget a check.

use std::sync::Arc;

use poem::Request;
use poem_openapi::{SecurityScheme, auth::Bearer};

use crate::{
    auth::claims::{Claims, Role},
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

async fn checked(req: &Request, bearer: Bearer, d: Demand) -> poem::Result<Claims> {
    let claims = state(req)?.tokens.authorize_access(&bearer.token).await?;
    Ok(demand(claims, d)?)
}

/// Declares a bearer scheme on the `accessToken` security scheme whose
/// checker verifies the token, checks the store, then the role and freshness.
macro_rules! access_scheme {
    ($(#[$doc:meta])* $name:ident, $checker:ident, $checker_name:literal, admin: $admin:expr, fresh: $fresh:expr) => {
        $(#[$doc])*
        #[derive(SecurityScheme)]
        #[oai(
            rename = "accessToken",
            ty = "bearer",
            bearer_format = "JWT",
            checker = $checker_name
        )]
        pub struct $name(pub Claims);

        async fn $checker(req: &Request, bearer: Bearer) -> poem::Result<Claims> {
            let demand = Demand { admin: $admin, fresh: $fresh };
            checked(req, bearer, demand).await
        }
    };
}

access_scheme!(
    /// The `access_token` from POST /auth/login (or /auth/refresh): valid,
    /// unrevoked. Every protected operation but /auth/refresh takes it.
    Access, check_access, "check_access", admin: false, fresh: false
);
access_scheme!(
    /// A fresh access token: one issued by a password login, not by a refresh.
    Fresh, check_fresh, "check_fresh", admin: false, fresh: true
);
access_scheme!(
    /// An administrator's access token.
    Admin, check_admin, "check_admin", admin: true, fresh: false
);
access_scheme!(
    /// A fresh administrator's access token (role is checked before freshness).
    AdminFresh, check_admin_fresh, "check_admin_fresh", admin: true, fresh: true
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

/// Optional authentication: no `Authorization` header is anonymous; a header
/// with a bad, expired or revoked token is the same 401 as anywhere else,
/// never a silent fallback to anonymous.
pub struct MaybeAccess(pub Option<Claims>);

impl<'a> poem_openapi::ApiExtractor<'a> for MaybeAccess {
    const TYPES: &'static [poem_openapi::ApiExtractorType] =
        &[poem_openapi::ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut poem_openapi::registry::Registry) {
        <Access as poem_openapi::ApiExtractor>::register(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        vec!["accessToken"]
    }

    /// Documents `security: [{}, {accessToken: []}]`: the token is optional.
    fn has_security_fallback() -> bool {
        true
    }

    async fn from_request(
        req: &'a Request,
        _body: &mut poem::RequestBody,
        _opts: poem_openapi::ExtractParamOptions<()>,
    ) -> poem::Result<Self> {
        if !req
            .headers()
            .contains_key(poem::http::header::AUTHORIZATION)
        {
            return Ok(Self(None));
        }
        let bearer = <Bearer as poem_openapi::auth::BearerAuthorization>::from_request(req)
            .map_err(|_| ApiError::TokenMissing)?;
        Ok(Self(Some(
            state(req)?.tokens.authorize_access(&bearer.token).await?,
        )))
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
        };
        assert!(matches!(
            demand(claims(Role::User, false), fresh),
            Err(ApiError::FreshTokenNeeded)
        ));
        assert!(demand(claims(Role::User, true), fresh).is_ok());
    }
}
