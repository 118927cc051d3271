//! CORS for the configured origins only.

use super::REQUEST_ID;
use std::sync::Arc;

use poem::{
    Endpoint, Middleware, Request, Response,
    http::{HeaderName, HeaderValue, Method, header},
    middleware::{Cors, CorsEndpoint},
};

use crate::error::ApiError;

pub(crate) fn cors_rejected() -> ApiError {
    ApiError::BadRequest(
        "This cross-origin request is not allowed (method or request headers).".into(),
    )
}

/// `TESSERA_CORS_ORIGINS`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsPolicy {
    /// `*`: any origin, never with credentials.
    AnyOrigin,
    /// These exact origins (`scheme://host[:port]`, lowercase), with credentials.
    Origins(Vec<String>),
}

impl CorsPolicy {
    /// `None` (or blank): no CORS at all.
    pub fn parse(value: Option<&str>) -> Result<Option<Self>, String> {
        let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let items: Vec<&str> = value
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        if items.contains(&"*") {
            return if items.len() == 1 {
                Ok(Some(Self::AnyOrigin))
            } else {
                Err("`*` cannot be combined with other origins".into())
            };
        }
        let mut origins = Vec::new();
        for item in items {
            let origin = item.strip_suffix('/').unwrap_or(item).to_ascii_lowercase();
            let uri: poem::http::Uri = origin
                .parse()
                .map_err(|_| format!("`{item}` is not an origin (scheme://host[:port])"))?;
            let ok = matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.authority().is_some_and(|a| !a.as_str().contains('@'))
                && uri.path_and_query().is_none_or(|p| p.as_str() == "/")
                && HeaderValue::from_str(&origin).is_ok();
            if !ok {
                return Err(format!(
                    "`{item}` is not an origin (http(s)://host[:port], no path)"
                ));
            }
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
        Ok(Some(Self::Origins(origins)))
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        match self {
            Self::AnyOrigin => true,
            Self::Origins(list) => origin
                .to_str()
                .is_ok_and(|o| list.iter().any(|allowed| allowed == o)),
        }
    }

    /// poem's `Cors`, configured explicitly (its default reflects any origin).
    fn middleware(&self) -> Cors {
        let cors = Cors::new()
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static(REQUEST_ID),
                // Browser sessions: unsafe cookie requests carry it.
                HeaderName::from_static("x-csrf-token"),
            ])
            .expose_headers([
                HeaderName::from_static(REQUEST_ID),
                header::WWW_AUTHENTICATE,
                header::RETRY_AFTER,
                header::LOCATION,
            ])
            .max_age(600);
        match self {
            // No listed origin: poem allows every origin.
            Self::AnyOrigin => cors.allow_credentials(false),
            Self::Origins(list) => cors
                .allow_origins(list.iter().map(String::as_str))
                .allow_credentials(true),
        }
    }
}

/// CORS only for the configured origins. A request from any other origin (or
/// without `Origin`, or with CORS unset) goes to the API untouched and gets no
/// `Access-Control-*` header: the browser then withholds the response, while
/// same-origin callers (Swagger UI's "Try it out") keep working. A preflight
/// is an `OPTIONS` with `Access-Control-Request-Method` from an allowed
/// origin; any other `OPTIONS` is a method like any other (405).
pub struct CorsLayer<E> {
    inner: Arc<E>,
    cors: Option<(CorsEndpoint<Arc<E>>, CorsPolicy)>,
}

impl<E: Endpoint> CorsLayer<E> {
    pub fn new(inner: E, policy: Option<CorsPolicy>) -> Self {
        let inner = Arc::new(inner);
        let cors = policy.map(|p| (p.middleware().transform(inner.clone()), p));
        Self { inner, cors }
    }
}

impl<E: Endpoint> Endpoint for CorsLayer<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let Some((cors, policy)) = &self.cors else {
            return Ok(self.inner.get_response(req).await);
        };
        let allowed = req
            .headers()
            .get(header::ORIGIN)
            .is_some_and(|o| policy.allows(o));
        let stray_options = req.method() == Method::OPTIONS
            && !req
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        let mut resp = if allowed && !stray_options {
            match cors.call(req).await {
                Ok(resp) => resp,
                Err(_) => cors_rejected().to_response(),
            }
        } else {
            self.inner.get_response(req).await
        };
        let h = resp.headers_mut();
        match policy {
            CorsPolicy::AnyOrigin => {
                if h.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
                    h.insert(
                        header::ACCESS_CONTROL_ALLOW_ORIGIN,
                        HeaderValue::from_static("*"),
                    );
                }
            }
            // Whether the response carries CORS headers depends on `Origin`.
            CorsPolicy::Origins(_) => {
                let varies = h.get_all(header::VARY).iter().any(|v| {
                    v.to_str().is_ok_and(|v| {
                        v.split(',')
                            .any(|t| t.trim().eq_ignore_ascii_case("origin"))
                    })
                });
                if !varies {
                    h.append(header::VARY, HeaderValue::from_static("Origin"));
                }
            }
        }
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_origins_parse() {
        assert_eq!(CorsPolicy::parse(None), Ok(None));
        assert_eq!(CorsPolicy::parse(Some("  ")), Ok(None));
        assert_eq!(
            CorsPolicy::parse(Some("*")),
            Ok(Some(CorsPolicy::AnyOrigin))
        );
        assert_eq!(
            CorsPolicy::parse(Some("https://App.example.com/, http://localhost:3000,")),
            Ok(Some(CorsPolicy::Origins(vec![
                "https://app.example.com".into(),
                "http://localhost:3000".into()
            ])))
        );
        for bad in [
            "*, https://a.example",
            "app.example.com",
            "https://a.example/path",
            "ftp://a.example",
            "null",
            "https://u@a.example",
        ] {
            assert!(CorsPolicy::parse(Some(bad)).is_err(), "{bad}");
        }
    }
}
