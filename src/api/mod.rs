//! Thin poem-openapi handlers, one file per tag.

use poem_openapi::{OpenApiService, Tags};

pub mod auth;
pub mod browser;
pub mod catalog;
pub mod client;
pub mod document;
pub mod email;
pub mod employees;
pub mod health;
pub mod jwks;
pub mod mfa;
pub mod pages;
pub mod params;
pub mod responses;
pub mod security;
pub mod text;
pub mod users;

#[derive(Tags)]
pub enum Tag {
    /// Login, refresh, logout and sessions.
    Auth,
    /// Accounts.
    Users,
    /// The caller's employee records.
    Employees,
    /// Categories and products.
    Catalog,
    /// Liveness and readiness.
    Health,
    /// Public keys for verifying tokens (EdDSA).
    Keys,
    /// The pages of the links in mail (password reset, address verification).
    Account,
}

pub type Apis = (
    auth::AuthApi,
    browser::BrowserApi,
    email::EmailApi,
    mfa::MfaApi,
    users::UsersApi,
    employees::EmployeesApi,
    catalog::CatalogApi,
    health::HealthApi,
    jwks::JwksApi,
    pages::PagesApi,
);

pub fn service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            auth::AuthApi,
            browser::BrowserApi,
            email::EmailApi,
            mfa::MfaApi,
            users::UsersApi,
            employees::EmployeesApi,
            catalog::CatalogApi,
            health::HealthApi,
            jwks::JwksApi,
            pages::PagesApi,
        ),
        "Tessera",
        env!("CARGO_PKG_VERSION"),
    )
    .description("JWT authentication service: accounts, access and refresh tokens, sessions.")
}
