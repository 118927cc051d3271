//! The error model at the HTTP edge: every failure is API.md's JSON.

use std::sync::Arc;

use poem::{Endpoint, EndpointExt, Route, handler};
use reqwest::Method;
use serde_json::json;

use crate::helpers::{Backend, spawn_app};

async fn unknown_route_and_wrong_method(b: Backend) {
    let app = spawn_app(b).await;
    app.get("/nope", None).await.assert_error(404, "NotFound");
    app.get("/auth/nope/deeper", None)
        .await
        .assert_error(404, "NotFound");
    let r = app.post("/users/me", None).await;
    r.assert_error(405, "MethodNotAllowed");
    assert_eq!(r.header("allow"), Some("DELETE, GET, PATCH, PUT"));
    let r = app.delete("/auth/verify", None).await;
    r.assert_error(405, "MethodNotAllowed");
    assert_eq!(r.header("allow"), Some("GET"));
    let r = app.get("/auth/login", None).await;
    r.assert_error(405, "MethodNotAllowed");
    assert_eq!(r.header("allow"), Some("POST"));
    // Route and method come before authentication.
    let r = app
        .send(app.request(Method::PUT, "/auth/sessions", Some("garbage")))
        .await;
    r.assert_error(405, "MethodNotAllowed");
}

async fn bodies_that_are_not_right(b: Backend) {
    let app = spawn_app(b).await;
    let send = |ct: &'static str, body: &'static str| {
        app.send(
            app.request(Method::POST, "/auth/register", None)
                .header("content-type", ct)
                .body(body),
        )
    };
    send("application/json", "{not json")
        .await
        .assert_error(400, "BadRequest");
    send("application/json", "")
        .await
        .assert_error(400, "BadRequest");
    send(
        "application/json",
        r#"{"username":"ann","email":"a@example.com"}"#,
    )
    .await
    .assert_error(400, "BadRequest");
    send(
        "application/json",
        r#"{"username":"ann","email":"a@example.com","password":12345678}"#,
    )
    .await
    .assert_error(400, "BadRequest");
    send("application/json", r#"[1,2]"#)
        .await
        .assert_error(400, "BadRequest");
    send(
        "text/plain",
        r#"{"username":"ann","email":"a@example.com","password":"password1"}"#,
    )
    .await
    .assert_error(415, "UnsupportedMediaType");
    app.send(app.request(Method::POST, "/auth/register", None).body("{}"))
        .await
        .assert_error(415, "UnsupportedMediaType");
    app.post("/auth/register", None)
        .await
        .assert_error(400, "BadRequest");
    // Nothing was created by any of these.
    app.register("ann", "a@example.com", crate::helpers::PASSWORD)
        .await
        .assert_status(201);
}

async fn oversize_bodies_with_and_without_length(b: Backend) {
    let app = spawn_app(b).await;
    // A new client per request: the server closes a connection after an
    // early 413, and a pooled connection would then fail the next request.
    let big = format!(r#"{{"username":"{}"}}"#, "a".repeat(70_000));
    app.send(
        reqwest::Client::new()
            .post(app.url("/auth/register"))
            .header("content-type", "application/json")
            .body(big.clone()),
    )
    .await
    .assert_error(413, "PayloadTooLarge");
    // Chunked: no Content-Length, the stream is cut at the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big
        .into_bytes()
        .chunks(8192)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let r = app
        .send(
            reqwest::Client::new()
                .post(app.url("/auth/register"))
                .header("content-type", "application/json")
                .body(body),
        )
        .await;
    r.assert_error(413, "PayloadTooLarge");
    // A chunked body under the limit is read normally.
    let ok = serde_json::to_vec(
        &json!({"username": "ann", "email": "a@example.com", "password": "password1"}),
    )
    .unwrap();
    let body =
        reqwest::Body::wrap_stream(futures_util::stream::iter(vec![Ok::<_, std::io::Error>(
            ok,
        )]));
    app.send(
        reqwest::Client::new()
            .post(app.url("/auth/register"))
            .header("content-type", "application/json")
            .body(body),
    )
    .await
    .assert_status(201);
}

async fn request_ids(b: Backend) {
    let app = spawn_app(b).await;
    let r = app
        .send(
            app.request(Method::GET, "/healthz", None)
                .header("x-request-id", "abc-123"),
        )
        .await;
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
    let long = "x".repeat(129);
    let r = app
        .send(
            app.request(Method::GET, "/healthz", None)
                .header("x-request-id", long.as_str()),
        )
        .await;
    let id = r.header("x-request-id").expect("generated id").to_owned();
    assert_ne!(id, long);
    assert!(!id.is_empty() && id.len() <= 128);
    let r1 = app.get("/nope", None).await;
    let r2 = app.get("/nope", None).await;
    assert_ne!(r1.header("x-request-id"), r2.header("x-request-id"));
}

async fn health_ready_docs_and_spec(b: Backend) {
    let app = spawn_app(b).await;
    let r = app.get("/healthz", None).await;
    r.assert_status(200);
    assert_eq!(r.body, json!({"status": "ok"}));
    let r = app.get("/readyz", None).await;
    r.assert_status(200);
    assert_eq!(r.body, json!({"status": "ready"}));
    let docs = app.get("/docs", None).await;
    docs.assert_status(200);
    assert!(
        docs.header("content-type")
            .is_some_and(|c| c.starts_with("text/html"))
    );
    assert!(docs.text.contains("swagger"), "Swagger UI page");
    assert!(
        !docs.text.contains("src=\"http"),
        "assets must not come from a CDN"
    );
    assert!(
        !docs.text.contains("href=\"http"),
        "assets must not come from a CDN"
    );
    let spec = app.get("/openapi.json", None).await;
    spec.assert_status(200);
    assert!(
        spec.body["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3."))
    );
}

async fn authentication_comes_before_body_and_parameters(b: Backend) {
    let app = spawn_app(b).await;
    app.delete("/auth/sessions/not-a-uuid", None)
        .await
        .assert_error(401, "TokenMissing");
    let r = app
        .send(
            app.request(Method::PATCH, "/users/me", Some("not.a.token"))
                .header("content-type", "text/plain")
                .body("{bad"),
        )
        .await;
    r.assert_error(401, "TokenInvalid");
    let t = app.user("ann").await;
    let r = app
        .send(
            app.request(Method::PATCH, "/users/me", Some(&t.access))
                .header("content-type", "application/json")
                .body("{bad"),
        )
        .await;
    r.assert_error(400, "BadRequest");
}

crate::both_backends!(
    authentication_comes_before_body_and_parameters,
    unknown_route_and_wrong_method,
    bodies_that_are_not_right,
    oversize_bodies_with_and_without_length,
    request_ids,
    health_ready_docs_and_spec,
);

#[handler]
fn boom() -> &'static str {
    panic!("secret internal detail")
}

#[tokio::test]
async fn a_panic_is_a_json_500_without_internals() {
    let ep = tessera::harden(
        Route::new().at("/boom", boom),
        1024,
        Arc::new(tessera::http::AllowTable::from_spec("{}")),
    );
    let resp = ep
        .map_to_response()
        .get_response(
            poem::Request::builder()
                .uri("/boom".parse().unwrap())
                .finish(),
        )
        .await;
    assert_eq!(resp.status(), 500);
    assert!(resp.headers().contains_key("x-request-id"));
    let text = resp.into_body().into_string().await.unwrap();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["code"], "InternalError");
    assert!(!text.contains("secret internal detail"));
}
