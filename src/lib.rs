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
pub mod mail;
pub mod metrics;
pub mod money;
pub mod paging;
pub mod reads;
pub mod server;
pub mod sqlite_reads;
pub mod state;
pub mod telemetry;
pub mod validation;

use std::sync::Arc;

use poem::{Endpoint, EndpointExt, IntoEndpoint, IntoResponse, Request, Response, Route};

pub use crate::http::{Hardening, harden, harden_with};
use crate::{
    http::{AllowTable, CorsPolicy, RouteTemplates},
    state::AppState,
};

/// The whole HTTP application, used by `main` and by the tests.
pub fn app(state: Arc<AppState>) -> impl Endpoint + 'static {
    let api = api::service();
    let spec_json = api.spec();
    let allow = Arc::new(AllowTable::from_spec(&spec_json));
    // The routes below besides the API's own: every path gets a bounded label.
    let routes = Arc::new(
        OUTSIDE_API
            .iter()
            .fold(RouteTemplates::from_spec(&spec_json), |t, path| {
                t.with_exact(path)
            })
            .with_prefix(DOCS),
    );
    let docs_csp = http::docs_csp(Some(&api.swagger_ui_html()));
    let docs = api.swagger_ui();
    // Rendered once; each request shares the buffer.
    let document = bytes::Bytes::from(api::document::json());
    let spec = poem::endpoint::make_sync(move |_| {
        poem::Response::builder()
            .content_type("application/json; charset=utf-8")
            .body(document.clone())
    });
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
        routes,
    };
    let others = Route::new()
        .at(DOCUMENT, spec)
        .at(METRICS, poem::get(metrics_endpoint))
        // The link pages' script and stylesheet (the pages themselves are
        // API operations, in the document).
        .at(api::pages::SCRIPT_PATH, poem::get(api::pages::script))
        .at(api::pages::STYLE_PATH, poem::get(api::pages::style))
        .nest(DOCS, docs);
    let routes = Dispatch {
        api: api.into_endpoint(),
        others,
        browser_on: state.browser.enabled,
    }
    .data(state);
    harden_with(routes, hardening)
}

/// Sends a request to the API's router, or to the few routes outside the
/// API (the document, metrics, Swagger UI, the link pages' assets). The API
/// used to be nested at `/` in a `Route` of those: every API request then
/// paid a second route lookup, a URI rewrite and two more boxed futures
/// (BENCHMARKS.md, "The request path").
struct Dispatch<A, O> {
    api: A,
    others: O,
    /// With TESSERA_COOKIES off the browser paths do not exist: 404 before
    /// anything of the request (its body included) is looked at.
    browser_on: bool,
}

impl<A: Endpoint, O: Endpoint> Endpoint for Dispatch<A, O> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let path = req.uri().path();
        if outside_api(path) {
            return self.others.call(req).await.map(IntoResponse::into_response);
        }
        if !self.browser_on && path.starts_with("/auth/browser/") {
            return Err(error::ApiError::NotFound("No such route.".into()).into());
        }
        self.api.call(req).await.map(IntoResponse::into_response)
    }
}

const DOCUMENT: &str = "/openapi.json";
const METRICS: &str = "/metrics";
/// Swagger UI: this path and everything below it.
const DOCS: &str = "/docs";

/// The exact paths of the routes outside the API (and outside its document).
const OUTSIDE_API: [&str; 4] = [
    DOCUMENT,
    METRICS,
    api::pages::SCRIPT_PATH,
    api::pages::STYLE_PATH,
];

/// The paths `Dispatch` gives to the routes outside the API: as `Route`
/// matches them (`DOCS` and anything below it, the others exactly).
fn outside_api(path: &str) -> bool {
    OUTSIDE_API.contains(&path)
        || path
            .strip_prefix(DOCS)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The OpenAPI document as YAML (what `tessera openapi` prints).
pub fn openapi_yaml() -> String {
    api::document::yaml()
}

/// `GET /metrics` (not in the OpenAPI document, as API.md says). The pool
/// gauges and the verify cache's figures are sampled here, at scrape time.
#[poem::handler]
fn metrics_endpoint(state: poem::web::Data<&Arc<AppState>>) -> poem::Response {
    poem::Response::builder()
        .header(
            poem::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )
        .body(metrics::render_with_pool(
            [Some(&state.db), state.read_pool.as_ref()]
                .into_iter()
                .flatten()
                .filter_map(metrics::pool_stats)
                .reduce(metrics::PoolStats::plus),
            state.tokens.cache.as_deref().map(|c| c.figures()),
        ))
}

#[cfg(test)]
mod tests {
    use super::outside_api;

    #[test]
    fn only_the_routes_outside_the_api_leave_it() {
        for path in [
            "/openapi.json",
            "/metrics",
            "/docs",
            "/docs/",
            "/docs/index.js",
        ] {
            assert!(outside_api(path), "{path}");
        }
        for path in [
            "/docsx",
            "/metrics/",
            "/auth/verify",
            "/",
            "/account/reset-password",
        ] {
            assert!(!outside_api(path), "{path}");
        }
        assert!(outside_api(crate::api::pages::SCRIPT_PATH));
    }
}
