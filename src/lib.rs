//! Tessera: a JWT authentication service.

pub mod accounts;
pub mod api;
pub mod auth;
pub mod bootstrap;
pub mod catalog;
pub mod config;
pub mod employees;
pub mod error;
pub mod http;
pub mod metrics;
pub mod money;
pub mod paging;
pub mod state;
pub mod telemetry;
pub mod validation;

use std::{sync::Arc, time::Duration};

use poem::{Endpoint, EndpointExt, Route, http::HeaderValue, middleware::CatchPanic};

use crate::{
    error::ApiError,
    http::{AllowTable, CorsLayer, CorsPolicy},
    state::AppState,
};

/// The whole HTTP application, used by `main` and by the tests.
pub fn app(state: Arc<AppState>) -> impl Endpoint + 'static {
    let api = api::service();
    let allow = Arc::new(AllowTable::from_spec(&api.spec()));
    let docs_csp = http::docs_csp(Some(&api.swagger_ui_html()));
    let docs = api.swagger_ui();
    let spec = api.spec_endpoint();
    let cors = CorsPolicy::parse(state.settings.cors_origins.as_deref()).unwrap_or_else(|e| {
        // `serve` refuses to start with this; here fail closed.
        tracing::error!(error = %e, "TESSERA_CORS_ORIGINS is invalid: CORS disabled");
        None
    });
    let hardening = Hardening {
        max_body: state.settings.max_body_bytes,
        allow,
        cors,
        request_timeout: state.settings.request_timeout,
        docs_csp,
    };
    let routes = Route::new()
        .at("/openapi.json", spec)
        .at("/metrics", poem::get(metrics::endpoint))
        .nest("/docs", docs)
        .nest("/", api)
        .data(state);
    harden_with(routes, hardening)
}

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
    /// Content-Security-Policy of /docs (see `http::docs_csp`).
    pub docs_csp: String,
}

impl Hardening {
    /// The defaults: no CORS, 30 s per request, Swagger UI CSP without hashes.
    pub fn new(max_body: usize, allow: Arc<AllowTable>) -> Self {
        Self {
            max_body,
            allow,
            cors: None,
            request_timeout: Duration::from_secs(30),
            docs_csp: http::docs_csp(None),
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

/// The layers every request passes, innermost first: body limit, JSON errors
/// for every failure, panics as 500 `InternalError`, the request deadline,
/// the header cap, CORS, security headers, then request ids and logs.
pub fn harden_with<E: Endpoint + 'static>(routes: E, h: Hardening) -> impl Endpoint + 'static {
    let Hardening {
        max_body,
        allow,
        cors,
        request_timeout,
        docs_csp,
    } = h;
    let docs_csp = HeaderValue::from_str(&docs_csp)
        .unwrap_or_else(|_| HeaderValue::from_static(http::API_CSP));
    let inner = routes
        .around(move |ep, req| http::body_limit(ep, req, max_body))
        .around(move |ep, req| http::render_errors(ep, req, allow.clone()))
        .with(CatchPanic::new().with_handler(|_| {
            tracing::error!("a request handler panicked");
            ApiError::Internal.to_response()
        }))
        .around(move |ep, req| http::deadline(ep, req, request_timeout))
        .around(http::header_cap)
        // Type erasure: the nested future types otherwise exceed rustc's
        // query depth limit.
        .boxed();
    CorsLayer::new(inner, cors)
        .around(move |ep, req| http::security_headers(ep, req, docs_csp.clone()))
        .around(http::request_id)
}

/// The OpenAPI document as YAML (what `tessera openapi` prints).
pub fn openapi_yaml() -> String {
    api::service().spec_yaml()
}
