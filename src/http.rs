//! HTTP plumbing around the API: request ids, the body limit, access logs,
//! and the one translation of framework errors into API.md's JSON.

use std::{net::IpAddr, sync::Arc, time::Instant};

use futures_util::StreamExt;
use poem::{
    Body, Endpoint, IntoResponse, Request, Response,
    error::{MethodNotAllowedError, NotFoundError},
    http::{HeaderValue, Method, StatusCode, header},
};
use poem_openapi::error::{
    AuthorizationError, ContentTypeError, ParseParamError, ParsePathError, ParseRequestPayloadError,
};
use uuid::Uuid;

use crate::error::ApiError;

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
        path = %path.chars().take(200).collect::<String>(),
        status = resp.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
    Ok(resp)
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
    fn allow_table_matches_templates() {
        let t = AllowTable::from_spec(
            r#"{"paths":{"/users/me":{"get":{},"patch":{},"put":{}},"/auth/sessions/{id}":{"delete":{}}}}"#,
        );
        assert_eq!(t.allow("/users/me"), "GET, PATCH, PUT");
        assert_eq!(t.allow("/auth/sessions/abc"), "DELETE");
        assert_eq!(t.allow("/nope"), "");
    }
}
