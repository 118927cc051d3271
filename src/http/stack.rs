//! The middleware stack every request passes, in one place.

use std::{sync::Arc, time::Duration};

use poem::{Endpoint, EndpointExt, http::HeaderValue, middleware::CatchPanic};

use super::{AllowTable, CorsLayer, CorsPolicy, RouteTemplates, Served};
use crate::error::ApiError;

/// What `harden_with` needs besides the routes.
pub struct Hardening {
    /// Request body limit in bytes (`TESSERA_MAX_BODY_BYTES`).
    pub max_body: usize,
    /// Methods per path, for `Allow` on 405s.
    pub allow: Arc<AllowTable>,
    /// `None`: no CORS headers at all.
    pub cors: Option<CorsPolicy>,
    /// Deadline of one request, body included; zero means none.
    pub request_timeout: Duration,
    /// Content-Security-Policy of /docs (see `super::docs_csp`).
    pub docs_csp: String,
    /// Route labels of metrics and access logs.
    pub routes: Arc<RouteTemplates>,
}

impl Hardening {
    /// The defaults: no CORS, 30 s per request, Swagger UI CSP without hashes,
    /// no route templates (every request labelled `unmatched`).
    pub fn new(max_body: usize, allow: Arc<AllowTable>) -> Self {
        Self {
            max_body,
            allow,
            cors: None,
            request_timeout: Duration::from_secs(30),
            docs_csp: super::docs_csp(None),
            routes: Arc::default(),
        }
    }
}

/// `harden_with` with the defaults of `Hardening::new`.
pub fn harden<E: Endpoint + 'static>(
    routes: E,
    max_body: usize,
    allow: Arc<AllowTable>,
) -> impl Endpoint + 'static {
    harden_with(routes, Hardening::new(max_body, allow))
}

/// The layers every request passes, innermost first: body limit (and
/// duplicate JSON keys), JSON errors for every failure, one `Authorization`
/// header at most, panics as 500 `InternalError`, the request deadline,
/// the header cap, CORS, security headers, then request ids and logs.
pub fn harden_with<E: Endpoint + 'static>(routes: E, h: Hardening) -> impl Endpoint + 'static {
    let Hardening {
        max_body,
        allow,
        cors,
        request_timeout,
        docs_csp,
        routes: templates,
    } = h;
    let docs_csp = HeaderValue::from_str(&docs_csp)
        .unwrap_or_else(|_| HeaderValue::from_static(super::API_CSP));
    let inner = routes
        .around(move |ep, req| super::body_limit(ep, req, max_body))
        .around({
            let allow = allow.clone();
            move |ep, req| super::render_errors(ep, req, allow.clone())
        })
        .around(move |ep, req| super::single_authorization(ep, req, allow.clone()))
        .with(CatchPanic::new().with_handler(|_| {
            tracing::error!("a request handler panicked");
            ApiError::Internal.to_response()
        }))
        .around(move |ep, req| super::deadline(ep, req, request_timeout))
        .around(super::header_cap)
        // Type erasure: the nested future types otherwise exceed rustc's
        // query depth limit.
        .boxed();
    // Request ids, logs and security headers in one layer: each layer is
    // one more move of the request and one more future per request.
    CorsLayer::new(inner, cors).around(move |ep, req| {
        let docs_csp = docs_csp.clone();
        let templates = templates.clone();
        async move {
            let served = Served::of(req.uri().path());
            let answer = |req| async move {
                let mut resp = ep.get_response(req).await;
                super::security_headers(&mut resp, served, &docs_csp);
                resp
            };
            Ok(super::request_id(req, &templates, answer).await)
        }
    })
}
