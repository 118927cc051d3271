//! Request ids (echoed or generated), and the one log line and metrics
//! sample per request.

use std::time::Instant;

use super::RouteTemplates;

use poem::{Request, Response, http::HeaderValue};
use uuid::Uuid;

pub const REQUEST_ID: &str = "x-request-id";

fn valid_request_id(v: &HeaderValue) -> Option<String> {
    let b = v.as_bytes();
    ((1..=128).contains(&b.len()) && b.iter().all(|c| (0x21..=0x7e).contains(c)))
        .then(|| String::from_utf8_lossy(b).into_owned())
}

/// Outermost layer: every response carries `x-request-id`, and one log line
/// per request (path without query: tokens must never reach the logs), with
/// the route template that also labels the request's metrics. `next`
/// answers the request.
pub async fn request_id<F, Fut>(req: Request, routes: &RouteTemplates, next: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(valid_request_id)
        .unwrap_or_else(|| Uuid::now_v7().to_string());
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = Instant::now();
    let mut resp = next(req).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    let elapsed = started.elapsed();
    let route = routes.label(&path);
    let status = resp.status().as_u16();
    crate::metrics::record_request(route, method.as_str(), status, elapsed);
    tracing::info!(
        request_id = %id,
        %method,
        route,
        path = %loggable_path(&path),
        status,
        ms = elapsed.as_millis() as u64,
        "request"
    );
    resp
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
    fn long_path_segments_are_redacted() {
        assert_eq!(loggable_path("/users/me"), "/users/me");
        assert_eq!(
            loggable_path(&format!("/x/{}/y", "a".repeat(65))),
            "/x/{redacted}/y"
        );
    }
}
