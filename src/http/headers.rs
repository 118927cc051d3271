//! Security headers on every response, and the CSP of the docs page.

use base64::Engine as _;
use poem::{
    Response,
    http::{HeaderValue, header},
};
use sha2::{Digest, Sha256};

/// CSP of every API response: JSON needs nothing, and nobody may frame it.
pub const API_CSP: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// CSP of the link pages (`/account/reset-password`, `/account/verify-email`):
/// their one script and stylesheet from this origin, no inline script or
/// style, fetches only to this origin, and no native form submission (the
/// script posts JSON; a form that submitted itself would put the password
/// in a request the page did not mean to send).
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The sha256 CSP sources of the inline `<script>` elements of a page.
pub fn inline_script_hashes(html: &str) -> Vec<String> {
    let mut hashes = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        let after = &rest[start..];
        let Some(open_end) = after.find('>') else {
            break;
        };
        let tag = &after[..open_end];
        let body = &after[open_end + 1..];
        let Some(close) = body.find("</script>") else {
            break;
        };
        if !tag.contains("src=") {
            let digest = Sha256::digest(&body.as_bytes()[..close]);
            hashes.push(format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            ));
        }
        rest = &body[close..];
    }
    hashes
}

/// CSP of the Swagger UI page (`docs_html`: the page as served). The page is
/// self-contained: its scripts are allowed by hash (with `'unsafe-inline'`
/// only as the fallback of browsers without CSP 2, which ignore it otherwise),
/// its styles are inline, its images `data:` URIs, and "Try it out" calls
/// this origin.
pub fn docs_csp(docs_html: Option<&str>) -> String {
    let mut script_src = docs_html.map(inline_script_hashes).unwrap_or_default();
    script_src.push("'unsafe-inline'".into());
    format!(
        "default-src 'none'; script-src {}; style-src 'unsafe-inline'; img-src 'self' data:; \
         font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'",
        script_src.join(" ")
    )
}

/// What a path serves, as far as its security headers care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Swagger UI (`/docs` and below): its own CSP, cacheable.
    Docs,
    /// The OpenAPI document: cacheable.
    Document,
    /// A link page: `PAGE_CSP`.
    Page,
    /// Everything else: `API_CSP`.
    Api,
}

impl Served {
    pub fn of(path: &str) -> Self {
        if path == "/docs" || path.starts_with("/docs/") {
            Self::Docs
        } else if path == "/openapi.json" {
            Self::Document
        } else if crate::api::pages::PAGE_PATHS.contains(&path) {
            Self::Page
        } else {
            Self::Api
        }
    }
}

/// Security headers on every response, errors and preflights included.
/// Everything but the public documents is `Cache-Control: no-store` unless the
/// handler chose otherwise: API responses carry tokens and personal data.
pub fn security_headers(resp: &mut Response, served: Served, docs_csp: &HeaderValue) {
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        match served {
            Served::Docs => docs_csp.clone(),
            Served::Page => HeaderValue::from_static(PAGE_CSP),
            Served::Document | Served::Api => HeaderValue::from_static(API_CSP),
        },
    );
    let public = matches!(served, Served::Docs | Served::Document);
    if !public && !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_hashes_and_paths() {
        let html = r#"<html><script charset="UTF-8">alert(1)</script><script src="x.js"></script><script>b()</script>"#;
        let hashes = inline_script_hashes(html);
        assert_eq!(hashes.len(), 2);
        assert_eq!(
            hashes[0],
            format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(Sha256::digest(b"alert(1)"))
            )
        );
        assert!(docs_csp(Some(html)).contains(&hashes[1]));
    }
}
