//! The CSRF rule of cookie-authenticated requests (API.md "Browser
//! sessions"), one pure function. The token is an HMAC of the session id
//! under a server key: nothing stored, the same across rotations of the
//! session, and unforgeable by a sibling subdomain that can plant cookies
//! (the signed form of the double-submit pattern OWASP recommends).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use poem::http::Method;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::server_key;
use crate::error::ApiError;

/// The server key CSRF tokens are made with.
#[derive(Clone)]
pub struct CsrfKey([u8; 32]);

impl CsrfKey {
    pub fn derive(material: &[u8]) -> Self {
        Self(server_key::derive(b"tessera csrf key v1\0", material))
    }

    /// The CSRF token of session `sid`.
    pub fn token(&self, sid: Uuid) -> String {
        URL_SAFE_NO_PAD.encode(server_key::mac(&self.0, &[sid.as_bytes()]))
    }
}

impl std::fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfKey([redacted])")
    }
}

/// How the caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `Authorization: Bearer`: a script chose to send it; no CSRF risk.
    Header,
    /// A cookie the browser attached on its own.
    Cookie,
}

/// What the rule looks at.
pub struct Attempt<'a> {
    /// The method being authorised (for forward-auth, the original one).
    pub method: &'a Method,
    pub via: Via,
    /// `X-CSRF-Token` as sent.
    pub header_token: Option<&'a str>,
    /// `Origin` as sent.
    pub origin: Option<&'a str>,
    /// The session's token (`CsrfKey::token`).
    pub expected: &'a str,
}

/// Methods that change nothing (RFC 9110 "safe").
pub fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Allows, or 403 `CsrfFailed`. A bearer request and a safe method pass;
/// an unsafe cookie-authenticated one needs the session's token in the
/// header (compared in constant time) and, if an `Origin` is sent, one that
/// `origin_allowed` accepts (`null` never is).
pub fn check(a: &Attempt<'_>, origin_allowed: impl Fn(&str) -> bool) -> Result<(), ApiError> {
    if a.via == Via::Header || is_safe(a.method) {
        return Ok(());
    }
    let token_ok = a
        .header_token
        .is_some_and(|t| bool::from(t.as_bytes().ct_eq(a.expected.as_bytes())));
    let origin_ok = a
        .origin
        .is_none_or(|o| o != "null" && origin_allowed(&o.to_ascii_lowercase()));
    if token_ok && origin_ok {
        Ok(())
    } else {
        Err(ApiError::CsrfFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &str = "https://auth.example.com";

    fn allowed(o: &str) -> bool {
        o == OWN || o == "https://app.example.com"
    }

    /// The whole truth table: method x transport x token x origin.
    #[test]
    fn truth_table() {
        let key = CsrfKey::derive(b"secret");
        let sid = Uuid::new_v4();
        let good = key.token(sid);
        let other = key.token(Uuid::new_v4());
        let methods = [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ];
        let tokens: [Option<&str>; 4] = [None, Some(""), Some(&other), Some(&good)];
        let origins = [
            None,
            Some(OWN),
            Some("HTTPS://AUTH.EXAMPLE.COM"),
            Some("https://app.example.com"),
            Some("https://evil.example"),
            Some("null"),
        ];
        for method in &methods {
            for via in [Via::Header, Via::Cookie] {
                for token in tokens {
                    for origin in origins {
                        let a = Attempt {
                            method,
                            via,
                            header_token: token,
                            origin,
                            expected: &good,
                        };
                        let want = via == Via::Header
                            || is_safe(method)
                            || (token == Some(good.as_str())
                                && !matches!(origin, Some("https://evil.example" | "null")));
                        assert_eq!(
                            check(&a, allowed).is_ok(),
                            want,
                            "{method} {via:?} token={token:?} origin={origin:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn tokens_are_per_session_and_keyed() {
        let a = CsrfKey::derive(b"a");
        let sid = Uuid::new_v4();
        assert_eq!(a.token(sid), a.token(sid), "stable across rotations");
        assert_ne!(a.token(sid), a.token(Uuid::new_v4()));
        assert_ne!(a.token(sid), CsrfKey::derive(b"b").token(sid));
        assert_eq!(a.token(sid).len(), 43);
    }
}
