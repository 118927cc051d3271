//! HTTP plumbing around the API: request ids, the body limit, access logs,
//! the one translation of framework errors into API.md's JSON, and the
//! hygiene layers (security headers, CORS, request deadline, header cap).

use std::{
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use base64::Engine as _;
use futures_util::StreamExt;
use poem::{
    Body, Endpoint, IntoResponse, Middleware, Request, Response,
    error::{CorsError, MethodNotAllowedError, NotFoundError},
    http::{HeaderName, HeaderValue, Method, StatusCode, header},
    middleware::{Cors, CorsEndpoint},
};
use poem_openapi::error::{
    AuthorizationError, ContentTypeError, ParseParamError, ParsePathError, ParseRequestPayloadError,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::{ApiError, ErrorBody, ErrorCode};

pub const REQUEST_ID: &str = "x-request-id";

/// The request id of this request, as echoed or generated.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

fn valid_request_id(v: &HeaderValue) -> Option<String> {
    let b = v.as_bytes();
    ((1..=128).contains(&b.len()) && b.iter().all(|c| (0x21..=0x7e).contains(c)))
        .then(|| String::from_utf8_lossy(b).into_owned())
}

/// Outermost layer: every response carries `x-request-id`, and one log line
/// per request (path without query: tokens must never reach the logs).
pub async fn request_id<E: Endpoint>(ep: Arc<E>, mut req: Request) -> poem::Result<Response> {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(valid_request_id)
        .unwrap_or_else(|| Uuid::now_v7().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = Instant::now();
    let mut resp = match ep.call(req).await {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    tracing::info!(
        request_id = %id,
        %method,
        path = %loggable_path(&path),
        status = resp.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
    Ok(resp)
}

/// The path as logged: at most 200 characters, and any segment longer than
/// 64 (no id of ours is: UUIDs are 36) replaced, so a token pasted into a
/// path never reaches the logs.
fn loggable_path(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.len() > 64 { "{redacted}" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
        .chars()
        .take(200)
        .collect()
}

/// Methods of each OpenAPI path template, for `Allow` on 405s.
pub struct AllowTable(Vec<(Vec<String>, String)>);

impl AllowTable {
    pub fn from_spec(spec_json: &str) -> Self {
        let mut rows = Vec::new();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(spec_json)
            && let Some(paths) = v.get("paths").and_then(|p| p.as_object())
        {
            for (path, ops) in paths {
                let segs = path.split('/').map(str::to_owned).collect();
                let mut methods: Vec<String> = ops
                    .as_object()
                    .map(|o| o.keys().map(|m| m.to_uppercase()).collect())
                    .unwrap_or_default();
                methods.sort();
                rows.push((segs, methods.join(", ")));
            }
        }
        Self(rows)
    }

    pub fn allow(&self, path: &str) -> String {
        let segs: Vec<&str> = path.split('/').collect();
        self.0
            .iter()
            .find(|(pattern, _)| {
                pattern.len() == segs.len()
                    && pattern
                        .iter()
                        .zip(&segs)
                        .all(|(p, s)| p.starts_with('{') || p == s)
            })
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// Turns every error from routing, extraction and handlers into API.md's JSON.
pub async fn render_errors<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    allow: Arc<AllowTable>,
) -> poem::Result<Response> {
    let path = req.uri().path().to_owned();
    let sent_body = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v != "0")
        || req.headers().contains_key(header::TRANSFER_ENCODING);
    match ep.call(req).await {
        Ok(r) => Ok(r.into_response()),
        // Our own errors already render as API.md's JSON.
        Err(e) if e.is::<ApiError>() => Ok(e.into_response()),
        Err(e) => Ok(classify(e, &path, sent_body, &allow).to_response()),
    }
}

fn classify(e: poem::Error, path: &str, sent_body: bool, allow: &AllowTable) -> ApiError {
    if e.is::<NotFoundError>() {
        return ApiError::NotFound("No such route.".into());
    }
    if e.is::<MethodNotAllowedError>() {
        return ApiError::MethodNotAllowed {
            allow: allow.allow(path),
        };
    }
    if e.is::<AuthorizationError>() {
        return ApiError::TokenMissing;
    }
    if e.is::<CorsError>() {
        return cors_rejected();
    }
    if let Some(ct) = e.downcast_ref::<ContentTypeError>() {
        return match ct {
            ContentTypeError::ExpectContentType if !sent_body => {
                ApiError::BadRequest("A JSON request body is required.".into())
            }
            _ => ApiError::UnsupportedMediaType,
        };
    }
    // The parser's reason quotes the offending value, which may be a
    // password: never echo it.
    if e.is::<ParseRequestPayloadError>() {
        return ApiError::BadRequest(
            "The body is not valid JSON, lacks a required field, or has a field of the wrong type."
                .into(),
        );
    }
    if let Some(p) = e.downcast_ref::<ParsePathError>() {
        return ApiError::BadRequest(format!("Invalid path parameter `{}`.", p.name));
    }
    if let Some(p) = e.downcast_ref::<ParseParamError>() {
        return ApiError::BadRequest(format!("Invalid parameter `{}`.", p.name));
    }
    match e.status() {
        StatusCode::NOT_FOUND => ApiError::NotFound("No such route.".into()),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed {
            allow: allow.allow(path),
        },
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(0),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
        StatusCode::UNAUTHORIZED => ApiError::TokenInvalid,
        StatusCode::SERVICE_UNAVAILABLE => ApiError::ServiceUnavailable,
        s if s.is_client_error() => ApiError::BadRequest("The request is not valid.".into()),
        _ => ApiError::internal(e),
    }
}

/// Reads at most `max` bytes of body, with or without `Content-Length`
/// (chunked), before any handler sees it.
pub async fn body_limit<E: Endpoint>(
    ep: Arc<E>,
    mut req: Request,
    max: usize,
) -> poem::Result<Response> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(ApiError::PayloadTooLarge(max).into());
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut stream = req.take_body().into_bytes_stream();
        let mut buf = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|_| ApiError::BadRequest("Could not read the body.".into()))?;
            if buf.len() + chunk.len() > max {
                return Err(ApiError::PayloadTooLarge(max).into());
            }
            buf.extend_from_slice(&chunk);
        }
        req.set_body(Body::from(buf));
    }
    ep.call(req).await.map(IntoResponse::into_response)
}

// ---------------------------------------------------------------- hygiene

/// Cap on the request target plus all header lines (name, value and 4 bytes
/// of separators each). API.md requires a 100 KB bearer token to reach the
/// token check (401 `TokenInvalid`), so the cap sits well above that. Over it:
/// 431 with the `BadRequest` body. hyper has its own, fixed limits further up
/// (about 408 KB of head, 100 header fields, 64 KB of URI), answered by hyper
/// itself with a bare 431/414 before the app sees the request.
pub const MAX_HEADER_BYTES: usize = 256 * 1024;

/// CSP of every API response: JSON needs nothing, and nobody may frame it.
pub const API_CSP: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

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

fn is_docs(path: &str) -> bool {
    path == "/docs" || path.starts_with("/docs/")
}

/// Security headers on every response, errors and preflights included.
/// Everything but the public documents is `Cache-Control: no-store` unless the
/// handler chose otherwise: API responses carry tokens and personal data.
pub async fn security_headers<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    docs_csp: HeaderValue,
) -> poem::Result<Response> {
    let docs = is_docs(req.uri().path());
    let public = docs || req.uri().path() == "/openapi.json";
    let mut resp = ep.get_response(req).await;
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
        if docs {
            docs_csp
        } else {
            HeaderValue::from_static(API_CSP)
        },
    );
    if !public && !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(resp)
}

/// An API.md error body with a status and message of our choosing.
fn error_response(status: StatusCode, code: ErrorCode, message: String) -> Response {
    let body = ErrorBody {
        code,
        message,
        fields: None,
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(serde_json::to_vec(&body).unwrap_or_default())
}

/// Ends a request that takes longer than `limit` (body upload included:
/// this is also what stops a client trickling its body) with 503
/// `ServiceUnavailable`; a zero `limit` means no deadline.
pub async fn deadline<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    limit: Duration,
) -> poem::Result<Response> {
    if limit.is_zero() {
        return Ok(ep.get_response(req).await);
    }
    match tokio::time::timeout(limit, ep.get_response(req)).await {
        Ok(resp) => Ok(resp),
        Err(_) => {
            tracing::warn!(limit_secs = limit.as_secs_f64(), "request timed out");
            Ok(error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::ServiceUnavailable,
                format!(
                    "The request took longer than {} seconds; try again.",
                    limit.as_secs_f64()
                ),
            ))
        }
    }
}

/// Bytes of the request target and header lines, as on the wire (HTTP/1.1).
fn head_bytes(req: &Request) -> usize {
    let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    req.headers().iter().fold(target, |n, (name, value)| {
        n + name.as_str().len() + value.len() + 4
    })
}

/// 431 (with the `BadRequest` body) when the headers exceed `MAX_HEADER_BYTES`.
pub async fn header_cap<E: Endpoint>(ep: Arc<E>, req: Request) -> poem::Result<Response> {
    if head_bytes(&req) > MAX_HEADER_BYTES {
        return Ok(error_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::BadRequest,
            format!("The request headers are larger than {MAX_HEADER_BYTES} bytes."),
        ));
    }
    Ok(ep.get_response(req).await)
}

fn cors_rejected() -> ApiError {
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

/// The client's address: the socket peer, or with `trust_forwarded` the
/// rightmost `X-Forwarded-For` entry (the one our gateway appended).
pub fn client_ip(req: &Request, trust_forwarded: bool) -> Option<String> {
    if trust_forwarded {
        // The rightmost entry of the last header is the one our gateway added.
        let last = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .next_back()
            .and_then(|v| v.rsplit(',').map(str::trim).find(|s| !s.is_empty()))
            .and_then(|s| s.parse::<IpAddr>().ok());
        if let Some(ip) = last {
            return Some(ip.to_string());
        }
    }
    req.remote_addr()
        .as_socket_addr()
        .map(|a| a.ip().to_canonical().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        assert_eq!(
            valid_request_id(&HeaderValue::from_static("abc-123")).as_deref(),
            Some("abc-123")
        );
        assert!(valid_request_id(&HeaderValue::from_static("has space")).is_none());
        assert!(valid_request_id(&HeaderValue::from_str(&"x".repeat(129)).unwrap()).is_none());
        assert!(valid_request_id(&HeaderValue::from_str(&"x".repeat(128)).unwrap()).is_some());
    }

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
        assert_eq!(loggable_path("/users/me"), "/users/me");
        assert_eq!(
            loggable_path(&format!("/x/{}/y", "a".repeat(65))),
            "/x/{redacted}/y"
        );
    }

    #[test]
    fn allow_table_matches_templates() {
        let t = AllowTable::from_spec(
            r#"{"paths":{"/users/me":{"get":{},"patch":{},"put":{}},"/auth/sessions/{id}":{"delete":{}}}}"#,
        );
        assert_eq!(t.allow("/users/me"), "GET, PATCH, PUT");
        assert_eq!(t.allow("/auth/sessions/abc"), "DELETE");
        assert_eq!(t.allow("/nope"), "");
    }
}
