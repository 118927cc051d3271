//! The one translation of framework errors (routing, extraction, auth)
//! into API.md's JSON, with `Allow` on 405s.

use super::cors::cors_rejected;
use std::sync::Arc;

use poem::{
    Endpoint, IntoResponse, Request, Response,
    error::{CorsError, MethodNotAllowedError, NotFoundError},
    http::{StatusCode, header},
};
use poem_openapi::error::{
    AuthorizationError, ContentTypeError, ParseParamError, ParsePathError, ParseRequestPayloadError,
};

use crate::error::{ApiError, ErrorBody, ErrorCode};

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
        if path == "/auth/login" {
            // The login body is a oneOf: name the rule a both-or-neither body broke.
            return ApiError::BadRequest(
                "Send `password` with exactly one of `email` and `username`, all strings.".into(),
            );
        }
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

/// An API.md error body with a status and message of our choosing.
pub(crate) fn error_response(status: StatusCode, code: ErrorCode, message: String) -> Response {
    let body = ErrorBody {
        code,
        message,
        fields: None,
        mfa_token: None,
        expires_in: None,
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(serde_json::to_vec(&body).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

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
