//! HTTP hygiene (issue 5, item 4): security headers on every response, CORS
//! only for `TESSERA_CORS_ORIGINS`, the request deadline, the idle timeout,
//! the header cap, and errors that never echo secrets or tokens.

use std::{
    collections::BTreeSet,
    io::Read,
    net::TcpStream,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use base64::Engine as _;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::helpers::{
    Backend, PASSWORD, Resp, TestApp, free_port,
    process::{Proc, output_within, tessera},
    spawn_app, spawn_app_with,
};

const APP_ORIGIN: &str = "https://app.example.com";
const EVIL_ORIGIN: &str = "https://evil.example.net";

#[track_caller]
fn assert_security_headers(r: &Resp, what: &str) {
    assert_eq!(
        r.header("x-content-type-options"),
        Some("nosniff"),
        "{what}: {r:?}"
    );
    assert_eq!(r.header("x-frame-options"), Some("DENY"), "{what}: {r:?}");
    assert_eq!(
        r.header("referrer-policy"),
        Some("no-referrer"),
        "{what}: {r:?}"
    );
    let csp = r.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"),
        "{what}: CSP {csp:?}"
    );
    assert!(r.header("x-request-id").is_some(), "{what}: {r:?}");
}

/// Headers of an API response: the strict CSP and no caching.
#[track_caller]
fn assert_api_headers(r: &Resp, what: &str) {
    assert_security_headers(r, what);
    assert_eq!(
        r.header("content-security-policy"),
        Some("default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
        "{what}"
    );
    assert_eq!(r.header("cache-control"), Some("no-store"), "{what}: {r:?}");
}

async fn security_headers_on_every_response(b: Backend) {
    let app = spawn_app(b).await;
    let mut seen = Vec::new();
    seen.push(("200 healthz", app.get("/healthz", None).await));
    seen.push(("404", app.get("/nope", None).await));
    seen.push(("405", app.post("/users/me", None).await));
    seen.push((
        "405 OPTIONS",
        app.send(app.request(Method::OPTIONS, "/auth/login", None))
            .await,
    ));
    seen.push(("401", app.get("/users/me", None).await));
    seen.push((
        "400",
        app.send(
            app.request(Method::POST, "/auth/login", None)
                .header("content-type", "application/json")
                .body("{bad"),
        )
        .await,
    ));
    // On a connection of its own: the server answers before reading the
    // body, then closes that connection.
    seen.push((
        "413",
        app.send(
            reqwest::Client::new()
                .post(app.url("/auth/register"))
                .header("content-type", "application/json")
                .body("x".repeat(70_000)),
        )
        .await,
    ));
    seen.push((
        "415",
        app.send(app.request(Method::POST, "/auth/register", None).body("{}"))
            .await,
    ));
    seen.push((
        "201 register",
        app.register("ann", "ann@example.com", PASSWORD).await,
    ));
    let login = app.login_email("ann@example.com", PASSWORD).await;
    login.assert_status(200);
    let access = login.str("access_token");
    let refresh = login.str("refresh_token");
    seen.push(("200 login", login));
    seen.push((
        "401 wrong password",
        app.login_email("ann@example.com", "wrong password").await,
    ));
    seen.push(("200 me", app.get("/users/me", Some(&access)).await));
    seen.push((
        "200 sessions",
        app.get("/auth/sessions", Some(&access)).await,
    ));
    seen.push(("200 verify", app.verify(&access).await));
    let refreshed = app.refresh(&refresh).await;
    refreshed.assert_status(200);
    seen.push(("200 refresh", refreshed));
    seen.push(("401 reuse", app.refresh(&refresh).await));
    seen.push(("200 products (anonymous)", app.get("/products", None).await));
    seen.push(("200 readyz", app.get("/readyz", None).await));
    seen.push(("200 metrics", app.get("/metrics", None).await));
    let t = app.user("bob").await;
    let r = app.post("/auth/logout", Some(&t.access)).await;
    r.assert_status(204);
    seen.push(("204 logout", r));
    for (what, r) in &seen {
        assert_api_headers(r, what);
    }

    // The public documents: security headers, no forced no-store.
    let spec = app.get("/openapi.json", None).await;
    spec.assert_status(200);
    assert_security_headers(&spec, "openapi.json");
    let docs = app.get("/docs", None).await;
    docs.assert_status(200);
    assert_security_headers(&docs, "docs");
}

/// Inline scripts of a page, as an HTML parser sees them: each ends at the
/// first `</script>` after its start tag (the bundle itself holds `<script`).
fn inline_scripts(html: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find("<script") {
        let (tag, after) = rest[i..].split_once('>').expect("start tag ends");
        let (body, tail) = after.split_once("</script>").expect("script ends");
        if !tag.contains("src=") {
            found.push(body);
        }
        rest = tail;
    }
    found
}

async fn docs_csp_lets_swagger_ui_work(b: Backend) {
    let app = spawn_app(b).await;
    for path in ["/docs", "/docs/"] {
        let docs = app.get(path, None).await;
        docs.assert_status(200);
        let csp = docs
            .header("content-security-policy")
            .expect("CSP on /docs")
            .to_owned();
        let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
        let directive = |name: &str| {
            directives
                .iter()
                .find(|d| d.split_whitespace().next() == Some(name))
                .copied()
                .unwrap_or_else(|| panic!("no {name} in {csp}"))
        };
        // Every inline script of the page as served is allowed by its hash
        // (CSP 2+ browsers then ignore 'unsafe-inline').
        let scripts = inline_scripts(&docs.text);
        assert!(scripts.len() >= 2, "bundle and init script");
        let script_src = directive("script-src");
        for s in scripts {
            let hash =
                base64::engine::general_purpose::STANDARD.encode(Sha256::digest(s.as_bytes()));
            assert!(
                script_src.contains(&format!("'sha256-{hash}'")),
                "inline script of {} bytes not allowed by {script_src}",
                s.len()
            );
        }
        assert!(directive("style-src").contains("'unsafe-inline'"));
        assert!(directive("img-src").contains("data:"));
        assert_eq!(directive("connect-src"), "connect-src 'self'", "Try it out");
        assert_eq!(directive("default-src"), "default-src 'none'");
        assert_eq!(directive("frame-ancestors"), "frame-ancestors 'none'");
        assert!(!csp.contains("http:") && !csp.contains("https:"), "{csp}");
        // Nothing is loaded from elsewhere.
        for attr in ["src=\"http", "href=\"http", "src='http", "@import"] {
            assert!(!docs.text.contains(attr), "{attr} in /docs");
        }
    }
}

async fn cors_unset_means_no_cors(b: Backend) {
    let app = spawn_app(b).await;
    let r = app
        .send(
            app.request(Method::GET, "/healthz", None)
                .header("origin", APP_ORIGIN),
        )
        .await;
    r.assert_status(200);
    assert!(
        r.headers
            .keys()
            .all(|k| !k.as_str().starts_with("access-control-")),
        "{r:?}"
    );
    // A preflight is then an OPTIONS like any other: 405 with Allow.
    let r = app
        .send(
            app.request(Method::OPTIONS, "/auth/login", None)
                .header("origin", APP_ORIGIN)
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "content-type"),
        )
        .await;
    r.assert_error(405, "MethodNotAllowed");
    assert_eq!(r.header("allow"), Some("POST"));
    assert!(
        r.headers
            .keys()
            .all(|k| !k.as_str().starts_with("access-control-")),
        "{r:?}"
    );
}

fn preflight(
    app: &TestApp,
    path: &str,
    origin: &str,
    method: &str,
    headers: &str,
) -> reqwest::RequestBuilder {
    app.request(Method::OPTIONS, path, None)
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
}

fn header_list(r: &Resp, name: &str) -> BTreeSet<String> {
    r.header(name)
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

async fn cors_only_for_listed_origins(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.cors_origins = Some(format!("{APP_ORIGIN}, http://localhost:3000/"))
    })
    .await;
    let t = app.user("ann").await;

    for origin in [APP_ORIGIN, "http://localhost:3000"] {
        let r = app
            .send(preflight(
                &app,
                "/users/me",
                origin,
                "PATCH",
                "authorization, content-type, x-csrf-token",
            ))
            .await;
        assert!(r.status.is_success(), "preflight: {r:?}");
        assert_eq!(r.header("access-control-allow-origin"), Some(origin));
        assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
        let methods = header_list(&r, "access-control-allow-methods");
        for m in ["get", "post", "put", "patch", "delete"] {
            assert!(methods.contains(m), "{m} in {methods:?}");
        }
        let headers = header_list(&r, "access-control-allow-headers");
        assert!(
            headers.contains("authorization")
                && headers.contains("content-type")
                && headers.contains("x-csrf-token"),
            "{headers:?}"
        );
        assert!(r.header("access-control-max-age").is_some());
        assert!(header_list(&r, "vary").contains("origin"), "{r:?}");
        assert_security_headers(&r, "preflight");
    }

    // Actual requests from an allowed origin, successes and errors alike,
    // are readable by the page.
    let r = app
        .send(
            app.request(Method::GET, "/users/me", Some(&t.access))
                .header("origin", APP_ORIGIN),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.header("access-control-allow-origin"), Some(APP_ORIGIN));
    assert!(header_list(&r, "access-control-expose-headers").contains("x-request-id"));
    assert!(header_list(&r, "vary").contains("origin"));
    let r = app
        .send(
            app.request(Method::GET, "/users/me", None)
                .header("origin", APP_ORIGIN),
        )
        .await;
    r.assert_error(401, "TokenMissing");
    assert_eq!(r.header("access-control-allow-origin"), Some(APP_ORIGIN));
    assert!(header_list(&r, "access-control-expose-headers").contains("www-authenticate"));

    // Any other origin: served as usual (same-origin pages and non-browser
    // clients keep working), never with an Access-Control-Allow-Origin.
    for origin in [
        EVIL_ORIGIN,
        "null",
        "https://app.example.com.evil.net",
        "http://app.example.com",
    ] {
        let r = app
            .send(
                app.request(Method::GET, "/users/me", Some(&t.access))
                    .header("origin", origin),
            )
            .await;
        r.assert_status(200);
        assert!(
            r.header("access-control-allow-origin").is_none(),
            "{origin}: {r:?}"
        );
        assert!(
            r.header("access-control-allow-credentials").is_none(),
            "{origin}: {r:?}"
        );
        assert!(header_list(&r, "vary").contains("origin"));
        let r = app
            .send(preflight(
                &app,
                "/users/me",
                origin,
                "PATCH",
                "authorization",
            ))
            .await;
        r.assert_error(405, "MethodNotAllowed");
        assert!(
            r.header("access-control-allow-origin").is_none(),
            "{origin}: {r:?}"
        );
    }

    // An allowed origin asking for a method or headers outside the policy:
    // a JSON error without CORS headers, so the browser refuses.
    let r = app
        .send(preflight(
            &app,
            "/users/me",
            APP_ORIGIN,
            "TRACE",
            "authorization",
        ))
        .await;
    r.assert_error(400, "BadRequest");
    assert!(r.header("access-control-allow-origin").is_none(), "{r:?}");
    let r = app
        .send(preflight(&app, "/users/me", APP_ORIGIN, "GET", "x-evil"))
        .await;
    r.assert_error(400, "BadRequest");
    assert!(r.header("access-control-allow-origin").is_none(), "{r:?}");
    // An OPTIONS that is no preflight is an unknown method, CORS or not.
    let r = app
        .send(
            app.request(Method::OPTIONS, "/users/me", None)
                .header("origin", APP_ORIGIN),
        )
        .await;
    r.assert_error(405, "MethodNotAllowed");
}

async fn cors_wildcard_has_no_credentials(b: Backend) {
    let app = spawn_app_with(b, |c| c.cors_origins = Some("*".into())).await;
    let r = app
        .send(preflight(
            &app,
            "/auth/login",
            EVIL_ORIGIN,
            "POST",
            "content-type",
        ))
        .await;
    assert!(r.status.is_success(), "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(
        r.header("access-control-allow-credentials").is_none(),
        "{r:?}"
    );
    let r = app
        .send(
            app.request(Method::GET, "/healthz", None)
                .header("origin", EVIL_ORIGIN),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(
        r.header("access-control-allow-credentials").is_none(),
        "{r:?}"
    );
    // No Origin: not a CORS request.
    let r = app.get("/healthz", None).await;
    assert!(r.header("access-control-allow-origin").is_none(), "{r:?}");
}

async fn slow_requests_time_out(b: Backend) {
    let app = spawn_app_with(b, |c| c.request_timeout = Duration::from_secs(1)).await;
    // A client that sends half a body, then stalls.
    let body = futures_util::stream::iter([0u8, 1]).then(|i| async move {
        if i == 1 {
            tokio::time::sleep(Duration::from_secs(8)).await;
        }
        Ok::<_, std::io::Error>(if i == 0 {
            br#"{"username":"#.to_vec()
        } else {
            br#""x"}"#.to_vec()
        })
    });
    let started = Instant::now();
    let r = app
        .send(
            app.request(Method::POST, "/auth/register", None)
                .header("content-type", "application/json")
                .body(reqwest::Body::wrap_stream(body)),
        )
        .await;
    r.assert_error(503, "ServiceUnavailable");
    assert_api_headers(&r, "503 timeout");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Normal requests are unaffected.
    app.get("/healthz", None).await.assert_status(200);
    app.register("ann", "ann@example.com", PASSWORD)
        .await
        .assert_status(201);
}

fn padded(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    headers: usize,
    each: usize,
) -> reqwest::RequestBuilder {
    let mut req = app.request(Method::GET, path, token);
    for i in 0..headers {
        req = req.header(format!("x-pad-{i}"), "p".repeat(each));
    }
    req
}

async fn oversized_headers_are_431(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.user("ann").await;
    // 200 KB of headers (and a 150 KB bearer token) are still served.
    app.send(padded(&app, "/users/me", Some(&t.access), 4, 50_000))
        .await
        .assert_status(200);
    let r = app.verify(&"a".repeat(150_000)).await;
    r.assert_error(401, "TokenInvalid");
    // Over 256 KB: our 431, as JSON.
    let r = app
        .send(padded(&app, "/users/me", Some(&t.access), 6, 50_000))
        .await;
    r.assert_error(431, "BadRequest");
    assert_api_headers(&r, "431");
    assert!(!r.text.contains("ppppp"), "nothing echoed");
    let r = app.verify(&"a".repeat(300_000)).await;
    r.assert_error(431, "BadRequest");
    // Over hyper's own limits (about 408 KB, or more than 100 fields):
    // hyper answers 431 itself, before the app.
    let r = app.send(padded(&app, "/healthz", None, 9, 50_000)).await;
    r.assert_status(431);
    let r = app.send(padded(&app, "/healthz", None, 120, 10)).await;
    r.assert_status(431);
    app.get("/healthz", None).await.assert_status(200);
}

#[track_caller]
fn assert_no_echo(r: &Resp, secrets: &[&str], what: &str) {
    for s in secrets {
        assert!(!r.text.contains(s), "{what}: {s:?} echoed in {}", r.text);
        for (name, value) in &r.headers {
            assert!(
                !value.to_str().unwrap_or_default().contains(s),
                "{what}: {s:?} echoed in header {name}"
            );
        }
    }
}

async fn errors_never_echo_secrets(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.user("ann").await;
    let secret_pw = "Sup3r-Secret-Passw0rd";
    let sig = t.access.rsplit('.').next().unwrap().to_owned();
    let secrets = [
        t.access.as_str(),
        t.refresh.as_str(),
        sig.as_str(),
        PASSWORD,
        secret_pw,
    ];

    // Tokens in query strings, on known and unknown routes.
    for path in [
        format!("/nope?access_token={}", t.access),
        format!("/users/me?access_token={}", t.access),
        format!("/auth/refresh?refresh_token={}", t.refresh),
        format!("/employees?page={}", t.access),
        format!("/employees?per_page={}&page=1", t.refresh),
        format!("/products?category_id={}", t.access),
    ] {
        let r = app.get(&path, Some(&t.access)).await;
        assert_no_echo(&r, &secrets, &path);
    }
    let r = app
        .get(&format!("/users/me?access_token={}", t.access), None)
        .await;
    r.assert_error(401, "TokenMissing");
    // Tokens in path parameters.
    for path in [
        format!("/users/{}", t.access),
        format!("/auth/sessions/{}", t.refresh),
        format!("/nope/{}", t.access),
    ] {
        for method in [Method::GET, Method::DELETE, Method::POST] {
            let r = app
                .send(app.request(method.clone(), &path, Some(&t.access)))
                .await;
            assert!(r.status.is_client_error(), "{method} {path}: {r:?}");
            assert_no_echo(&r, &secrets, &format!("{method} {path}"));
        }
    }
    // Passwords and tokens in bodies of the wrong shape or type.
    let bodies = [
        json!({"email": "ann@example.com", "password": [secret_pw]}),
        json!({"email": "ann@example.com", "password": {"p": secret_pw}}),
        json!({"email": [secret_pw], "password": secret_pw}),
        json!({"email": "ann@example.com", "username": secret_pw, "password": secret_pw}),
        json!({"username": secret_pw, "password": 12345678}),
        json!({"email": secret_pw, "password": PASSWORD}),
        json!({"email": t.access, "password": t.refresh}),
        json!({"username": t.access, "password": PASSWORD}),
    ];
    for body in &bodies {
        for path in ["/auth/login", "/auth/register"] {
            let r = app.post_json(path, body, None).await;
            assert!(r.status.is_client_error(), "{path} {body}: {r:?}");
            assert_no_echo(&r, &secrets, &format!("{path} {body}"));
        }
    }
    for raw in [
        format!(r#"{{"email":"ann@example.com","password":"{secret_pw}""#),
        format!(r#"{{"email":"ann@example.com","password":"{secret_pw}",}}"#),
        format!(r#"{{"email":"ann@example.com","password":{secret_pw}}}"#),
        format!("{{\"email\":\"ann@example.com\",\"password\":\"{secret_pw}\u{0}\"}}"),
        format!(r#"{{"token":"{}"#, t.refresh),
    ] {
        let r = app
            .send(
                app.request(Method::POST, "/auth/login", None)
                    .header("content-type", "application/json")
                    .body(raw.clone()),
            )
            .await;
        r.assert_error(400, "BadRequest");
        assert_no_echo(&r, &secrets, &raw);
    }
    // Validation and password-change failures name fields, not values.
    let bad = [
        (
            "/auth/register",
            Method::POST,
            json!({"username": "bob", "email": secret_pw, "password": "short"}),
            None,
        ),
        (
            "/auth/register",
            Method::POST,
            json!({"username": "bob", "email": "bob@example.com", "password": format!("{secret_pw}{}", "x".repeat(200))}),
            None,
        ),
        (
            "/users/me",
            Method::PATCH,
            json!({"email": secret_pw}),
            Some(t.access.as_str()),
        ),
        (
            "/users/me",
            Method::PATCH,
            json!({"username": t.access}),
            Some(t.access.as_str()),
        ),
        (
            "/users/me/password",
            Method::PUT,
            json!({"current_password": secret_pw, "new_password": "another password"}),
            Some(t.access.as_str()),
        ),
        (
            "/users/me/password",
            Method::PUT,
            json!({"current_password": PASSWORD, "new_password": [secret_pw]}),
            Some(t.access.as_str()),
        ),
        (
            "/users/me/password",
            Method::PUT,
            json!({"current_password": PASSWORD, "new_password": "x"}),
            Some(t.access.as_str()),
        ),
    ];
    for (path, method, body, token) in bad {
        let r = app.send_json(method, path, &body, token).await;
        assert!(r.status.is_client_error(), "{path} {body}: {r:?}");
        assert_no_echo(&r, &secrets, &format!("{path} {body}"));
    }
    // Tokens in other headers and in the Content-Type.
    let r = app
        .send(
            app.request(Method::POST, "/auth/register", None)
                .header("content-type", format!("text/{sig}"))
                .header("cookie", format!("token={}", t.access))
                .body("{}"),
        )
        .await;
    r.assert_error(415, "UnsupportedMediaType");
    assert_no_echo(&r, &secrets, "content-type");
    // The account still works: nothing above changed it.
    app.get("/users/me", Some(&t.access))
        .await
        .assert_status(200);
}

crate::both_backends!(
    security_headers_on_every_response,
    docs_csp_lets_swagger_ui_work,
    cors_unset_means_no_cors,
    cors_only_for_listed_origins,
    cors_wildcard_has_no_credentials,
    slow_requests_time_out,
    oversized_headers_are_431,
    errors_never_echo_secrets,
);

// ---------------------------------------------------------------- the binary

/// The `tessera` binary serving on a free port, stderr to `log`.
pub struct Binary {
    pub child: Proc,
    pub base: String,
    pub port: u16,
}

impl Binary {
    /// Starts `tessera serve` with a clean environment plus `env`, and waits
    /// until /healthz answers.
    pub async fn start(env: &[(&str, String)], log: &Path) -> Self {
        let port = free_port();
        let mut cmd = tessera(&["serve"]);
        cmd.env("TESSERA_BIND", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", crate::helpers::temp_sqlite_url())
            .env("TESSERA_ARGON2_MEMORY_KIB", "1024")
            .env("TESSERA_ARGON2_ITERATIONS", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("create log file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = Proc::spawn(&mut cmd, "tessera serve");
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if client.get(format!("{base}/healthz")).send().await.is_ok() {
                break;
            }
            if let Some(status) = child.try_wait() {
                panic!(
                    "tessera exited ({status}): {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "tessera did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, base, port }
    }

    /// SIGTERM, then waits for a clean exit.
    pub async fn stop(self) {
        let status = self.child.terminate_and_wait(Duration::from_secs(30)).await;
        assert!(status.success(), "exit status after SIGTERM: {status:?}");
    }
}

fn log_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "tessera-{name}-{}-{}.log",
        std::process::id(),
        free_port()
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    let log = log_path("idle");
    let bin = Binary::start(&[("TESSERA_IDLE_TIMEOUT", "1".into())], &log).await;
    let port = bin.port;
    let closed_after = tokio::task::spawn_blocking(move || {
        let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 64];
        // A silent connection: the server hangs up (EOF or reset).
        let n = conn.read(&mut buf).unwrap_or(0);
        (n, started.elapsed())
    })
    .await
    .unwrap();
    assert_eq!(closed_after.0, 0, "server sent data on a silent connection");
    assert!(
        closed_after.1 < Duration::from_secs(5),
        "idle connection kept for {:?}",
        closed_after.1
    );
    bin.stop().await;
    let _ = std::fs::remove_file(log);
}

#[test]
fn invalid_cors_origins_refuse_to_start() {
    for bad in [
        "app.example.com",
        "*, https://app.example.com",
        "https://app.example.com/path",
    ] {
        let out = output_within(
            tessera(&["serve"])
                .env("TESSERA_BIND", format!("127.0.0.1:{}", free_port()))
                .env("DATABASE_URL", crate::helpers::temp_sqlite_url())
                .env("TESSERA_CORS_ORIGINS", bad),
            Duration::from_secs(20),
        );
        assert!(!out.status.success(), "{bad}: started");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("TESSERA_CORS_ORIGINS"), "{bad}: {err}");
    }
}
