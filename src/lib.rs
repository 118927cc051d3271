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
pub mod money;
pub mod paging;
pub mod state;
pub mod telemetry;
pub mod validation;

use std::sync::Arc;

use poem::{Endpoint, EndpointExt, Route, middleware::CatchPanic};

use crate::{error::ApiError, http::AllowTable, state::AppState};

/// The whole HTTP application, used by `main` and by the tests.
pub fn app(state: Arc<AppState>) -> impl Endpoint + 'static {
    let api = api::service();
    let allow = Arc::new(AllowTable::from_spec(&api.spec()));
    let docs = api.swagger_ui();
    let spec = api.spec_endpoint();
    let max_body = state.settings.max_body_bytes;
    let routes = Route::new()
        .at("/openapi.json", spec)
        .nest("/docs", docs)
        .nest("/", api)
        .data(state);
    harden(routes, max_body, allow)
}

/// The layers every request passes, outermost last: body limit, JSON errors
/// for every failure, panics as 500 `InternalError`, request ids and logs.
pub fn harden<E: Endpoint + 'static>(
    routes: E,
    max_body: usize,
    allow: Arc<AllowTable>,
) -> impl Endpoint + 'static {
    routes
        .around(move |ep, req| http::body_limit(ep, req, max_body))
        .around(move |ep, req| http::render_errors(ep, req, allow.clone()))
        .with(CatchPanic::new().with_handler(|_| {
            tracing::error!("a request handler panicked");
            ApiError::Internal.to_response()
        }))
        .around(http::request_id)
}

/// The OpenAPI document as YAML (what `tessera openapi` prints).
pub fn openapi_yaml() -> String {
    api::service().spec_yaml()
}
