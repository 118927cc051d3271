//! Bearer security schemes. Each checker does the whole check and yields a
//! value only it can make, so a handler cannot forget a check.

use std::sync::Arc;

use poem::Request;
use poem_openapi::{SecurityScheme, auth::Bearer};

use crate::{
    auth::{
        claims::{Claims, Role},
        sessions,
    },
    error::ApiError,
    state::AppState,
};

fn state(req: &Request) -> Result<&Arc<AppState>, ApiError> {
    req.data::<Arc<AppState>>()
        .ok_or_else(|| ApiError::internal("AppState missing from request data"))
}

/// A valid, unrevoked access token.
#[derive(SecurityScheme)]
#[oai(
    rename = "accessToken",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "check_access"
)]
pub struct Access(pub Claims);

async fn check_access(req: &Request, bearer: Bearer) -> poem::Result<Claims> {
    Ok(sessions::authorize_access(state(req)?, &bearer.token).await?)
}

/// A refresh token with a valid signature and claims (the store decides at
/// rotation whether it is current).
#[derive(SecurityScheme)]
#[oai(
    rename = "refreshToken",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "check_refresh"
)]
pub struct Refresh(pub Claims);

async fn check_refresh(req: &Request, bearer: Bearer) -> poem::Result<Claims> {
    Ok(sessions::verify_refresh(state(req)?, &bearer.token)?)
}

/// A fresh access token: one issued by a password login, not by a refresh.
#[derive(SecurityScheme)]
#[oai(
    rename = "accessToken",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "check_fresh"
)]
pub struct Fresh(pub Claims);

async fn check_fresh(req: &Request, bearer: Bearer) -> poem::Result<Claims> {
    let claims = sessions::authorize_access(state(req)?, &bearer.token).await?;
    if !claims.is_fresh() {
        return Err(ApiError::FreshTokenNeeded.into());
    }
    Ok(claims)
}

/// An administrator's access token.
#[derive(SecurityScheme)]
#[oai(
    rename = "accessToken",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "check_admin"
)]
pub struct Admin(pub Claims);

async fn check_admin(req: &Request, bearer: Bearer) -> poem::Result<Claims> {
    let claims = sessions::authorize_access(state(req)?, &bearer.token).await?;
    if claims.role() != Role::Admin {
        return Err(ApiError::AdminRequired.into());
    }
    Ok(claims)
}

/// A fresh administrator's access token (role is checked before freshness).
#[derive(SecurityScheme)]
#[oai(
    rename = "accessToken",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "check_admin_fresh"
)]
pub struct AdminFresh(pub Claims);

async fn check_admin_fresh(req: &Request, bearer: Bearer) -> poem::Result<Claims> {
    let claims = check_admin(req, bearer).await?;
    if !claims.is_fresh() {
        return Err(ApiError::FreshTokenNeeded.into());
    }
    Ok(claims)
}
