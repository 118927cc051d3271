//! The pages of the links in mail (API.md "Email"): `/account/reset-password`
//! and `/account/verify-email`, plus the one script and stylesheet they load.
//! Static and embedded: opening a page reads no token, database or store, so
//! a mail scanner that follows a link spends nothing; the user's button
//! press POSTs the token from the fragment to the JSON endpoints.

use poem_openapi::{ApiResponse, OpenApi, payload::Html};

use super::Tag;

const RESET_PASSWORD: &str = include_str!("../../assets/account/reset-password.html");
const VERIFY_EMAIL: &str = include_str!("../../assets/account/verify-email.html");
/// Served at [`SCRIPT_PATH`], outside the OpenAPI document.
pub const SCRIPT: &str = include_str!("../../assets/account/account.js");
/// Served at [`STYLE_PATH`], outside the OpenAPI document.
pub const STYLE: &str = include_str!("../../assets/account/account.css");
pub const SCRIPT_PATH: &str = "/account/account.js";
pub const STYLE_PATH: &str = "/account/account.css";

/// The two pages, for the security layer: they get `http::PAGE_CSP`.
pub const PAGE_PATHS: [&str; 2] = ["/account/reset-password", "/account/verify-email"];

#[derive(ApiResponse)]
pub enum Page {
    /// The page (HTML, self-contained). Opening it changes nothing.
    #[oai(status = 200)]
    Page(Html<&'static str>),
}

pub struct PagesApi;

#[OpenApi(tag = "Tag::Account")]
impl PagesApi {
    /// The page of a password-reset link
    /// (`/account/reset-password#token=...`): asks for the new password
    /// and POSTs it with the token to `/auth/password/reset`.
    #[oai(
        path = "/account/reset-password",
        method = "get",
        operation_id = "reset_password_page"
    )]
    async fn reset_password_page(&self) -> Page {
        Page::Page(Html(RESET_PASSWORD))
    }

    /// The page of a verification or address-change link
    /// (`/account/verify-email#token=...`): its button POSTs the token to
    /// `/auth/email/verify`.
    #[oai(
        path = "/account/verify-email",
        method = "get",
        operation_id = "verify_email_page"
    )]
    async fn verify_email_page(&self) -> Page {
        Page::Page(Html(VERIFY_EMAIL))
    }
}

/// `GET /account/account.js`.
#[poem::handler]
pub fn script() -> poem::Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /account/account.css`.
#[poem::handler]
pub fn style() -> poem::Response {
    asset("text/css; charset=utf-8", STYLE)
}

fn asset(content_type: &'static str, body: &'static str) -> poem::Response {
    poem::Response::builder()
        .content_type(content_type)
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pages load what the router serves, relative to the page.
    #[test]
    fn pages_reference_the_served_assets() {
        for html in [RESET_PASSWORD, VERIFY_EMAIL] {
            assert!(html.contains(r#"<script src="account.js" defer></script>"#));
            assert!(html.contains(r#"<link rel="stylesheet" href="account.css">"#));
        }
        for (path, page) in PAGE_PATHS.iter().zip(["reset-password", "verify-email"]) {
            assert_eq!(*path, format!("/account/{page}"));
        }
        assert!(SCRIPT_PATH.ends_with("/account.js") && STYLE_PATH.ends_with("/account.css"));
    }
}
