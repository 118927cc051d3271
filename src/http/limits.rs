//! Limits on what a request may send: body size (with or without
//! `Content-Length`), header size, and time.

use super::errors::error_response;
use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use poem::{
    Body, Endpoint, IntoResponse, Request, Response,
    http::{Method, StatusCode, header},
};

use poem_openapi::error::ParseRequestPayloadError;

use crate::error::{ApiError, ErrorCode};

/// Reads at most `max` bytes of body, with or without `Content-Length`
/// (chunked), before any handler sees it. A JSON body with a duplicate key
/// is refused here for every endpoint, but at the body's place in API.md's
/// error precedence: it reaches the endpoint as bytes no parser accepts,
/// and the parse error that comes back (after routing and authentication
/// had their say) becomes the 400 naming the duplicate.
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
        if super::ambiguous::is_json(&req) && super::has_duplicate_key(&buf) {
            req.set_body(Body::from_bytes(bytes::Bytes::from_static(b"\0")));
            return match ep.call(req).await {
                Err(e) if e.is::<ParseRequestPayloadError>() => {
                    Err(super::ambiguous::duplicate_key_error().into())
                }
                other => other.map(IntoResponse::into_response),
            };
        }
        req.set_body(Body::from(buf));
    }
    ep.call(req).await.map(IntoResponse::into_response)
}

/// Cap on the request target plus all header lines (name, value and 4 bytes
/// of separators each). API.md requires a 100 KB bearer token to reach the
/// token check (401 `TokenInvalid`), so the cap sits well above that. Over it:
/// 431 with the `BadRequest` body. hyper has its own, fixed limits further up
/// (about 408 KB of head, 100 header fields, 64 KB of URI), answered by hyper
/// before the app sees the request; the serve loop makes those answers JSON
/// too (`parse_errors.rs`).
pub const MAX_HEADER_BYTES: usize = 256 * 1024;

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
