//! `GET /metrics`: Prometheus text with request, auth-outcome, error and
//! pool series. Metrics are process-wide and the tests run in parallel in
//! this process, so every assertion is on an increase or on presence.

use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{Backend, PASSWORD, TestApp, spawn_app, spawn_app_with};

/// The value of exactly `series` (name and labels), 0 when absent.
fn counter(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn scrape(app: &TestApp) -> String {
    let r = app.get("/metrics", None).await;
    r.assert_status(200);
    r.text
}

/// Asserts that each series grew by at least `by` between two scrapes.
#[track_caller]
fn assert_grew(before: &str, after: &str, series: &[(&str, f64)]) {
    for (s, by) in series {
        let (b, a) = (counter(before, s), counter(after, s));
        assert!(a >= b + by, "{s}: {b} -> {a}, expected +{by}");
    }
}

/// Any `8-4-4-4-12` hex group, i.e. a UUID, anywhere in `text`.
fn find_uuid(text: &str) -> Option<&str> {
    let b = text.as_bytes();
    (0..b.len().saturating_sub(35)).find_map(|i| {
        let w = &b[i..i + 36];
        let ok = w.iter().enumerate().all(|(j, c)| match j {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        });
        ok.then(|| &text[i..i + 36])
    })
}

async fn metrics_count_requests_and_reuse(b: Backend) {
    let app = spawn_app(b).await;
    let before = app.get("/metrics", None).await;
    before.assert_status(200);
    assert!(
        before
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4"))
    );
    let reused = r#"tessera_auth_events_total{event="refresh_reused"}"#;
    let logins = r#"tessera_auth_events_total{event="login_succeeded"}"#;

    let t = app.user("ann").await;
    app.refresh(&t.refresh).await.assert_status(200);
    app.refresh(&t.refresh)
        .await
        .assert_error(401, "TokenReused");

    let after = app.get("/metrics", None).await;
    // Other tests run in this process too: counters only grow.
    assert_grew(&before.text, &after.text, &[(reused, 1.0), (logins, 1.0)]);
    assert!(
        counter(
            &after.text,
            r#"tessera_http_requests_total{method="POST",route="/auth/refresh",status="401"}"#
        ) >= 1.0
    );
    assert!(after.text.contains(
        r#"tessera_http_request_duration_seconds_bucket{method="POST",route="/auth/refresh",le="+Inf"}"#
    ));
    assert!(!after.text.contains(&t.refresh), "no token in metrics");
}

async fn requests_are_labelled_by_route_template(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.user("ann").await;
    let r = app
        .post_json(
            "/employees",
            &json!({"name": "Bo", "position": "clerk"}),
            Some(&t.access),
        )
        .await;
    r.assert_status(201);
    let id = r.str("id");
    let before = scrape(&app).await;

    app.get(&format!("/employees/{id}"), Some(&t.access))
        .await
        .assert_status(200);
    let missing = Uuid::new_v4();
    app.get(&format!("/employees/{missing}"), Some(&t.access))
        .await
        .assert_status(404);
    app.get(&format!("/no/such/{missing}"), None)
        .await
        .assert_status(404);
    // A literal route next to a template is its own label.
    app.get("/users/me", Some(&t.access))
        .await
        .assert_status(200);
    app.get(&format!("/users/{}", t.user_id), Some(&t.access))
        .await
        .assert_status(200);

    let after = scrape(&app).await;
    let series = |method: &str, route: &str, status: u16| {
        format!(
            r#"tessera_http_requests_total{{method="{method}",route="{route}",status="{status}"}}"#
        )
    };
    assert_grew(
        &before,
        &after,
        &[
            (&series("GET", "/employees/{id}", 200), 1.0),
            (&series("GET", "/employees/{id}", 404), 1.0),
            (&series("GET", "unmatched", 404), 1.0),
            (&series("GET", "/users/me", 200), 1.0),
            (&series("GET", "/users/{id}", 200), 1.0),
            (
                r#"tessera_http_request_duration_seconds_count{method="GET",route="/employees/{id}"}"#,
                2.0,
            ),
        ],
    );
    assert!(after.contains(&series("GET", "/metrics", 200)));
    // Every label is a template: no id of any request made anywhere.
    assert_eq!(find_uuid(&after), None, "a raw id in the metrics");
    assert!(!after.contains("/no/such"), "a raw unknown path");
}

async fn logins_are_counted_by_outcome(b: Backend) {
    let app = spawn_app_with(b, |c| c.login_max_failures = 2).await;
    let admin = app.admin().await;
    let outcome = |o: &str| format!(r#"tessera_logins_total{{outcome="{o}"}}"#);
    let before = scrape(&app).await;

    let ann = app.user("ann").await;
    app.login_email("ann@example.com", "not the password")
        .await
        .assert_error(401, "InvalidCredentials");
    app.send_json(
        Method::PATCH,
        &format!("/users/{}", ann.user_id),
        &json!({"blocked": true}),
        Some(&admin.access),
    )
    .await
    .assert_status(200);
    app.login_email("ann@example.com", PASSWORD)
        .await
        .assert_error(403, "UserBlocked");
    app.register("bob", "bob@example.com", PASSWORD)
        .await
        .assert_status(201);
    for _ in 0..2 {
        app.login_email("bob@example.com", "wrong")
            .await
            .assert_error(401, "InvalidCredentials");
    }
    app.login_email("bob@example.com", "wrong")
        .await
        .assert_error(429, "TooManyRequests");

    let after = scrape(&app).await;
    assert_grew(
        &before,
        &after,
        &[
            (&outcome("success"), 1.0),
            (&outcome("invalid_credentials"), 3.0),
            (&outcome("blocked"), 1.0),
            (&outcome("rate_limited"), 1.0),
            (r#"tessera_revocations_total{cause="block"}"#, 1.0),
        ],
    );
    // Every outcome is exposed from the start, zero or not.
    assert!(after.contains(&format!("{} ", outcome("unavailable"))));
}

async fn refreshes_and_revocations_are_counted(b: Backend) {
    // The default: no reuse grace (strict).
    let app = spawn_app(b).await;
    let refresh = |o: &str| format!(r#"tessera_refreshes_total{{outcome="{o}"}}"#);
    let revocation = |c: &str| format!(r#"tessera_revocations_total{{cause="{c}"}}"#);
    let before = scrape(&app).await;

    let t = app.user("ann").await;
    app.refresh(&t.refresh).await.assert_status(200);
    app.refresh(&t.refresh)
        .await
        .assert_error(401, "TokenReused");
    // The reuse ended the session: its newest token is refused too.
    let t = app.login("ann").await;
    app.post("/auth/logout", Some(&t.access))
        .await
        .assert_status(204);
    app.refresh(&t.refresh)
        .await
        .assert_error(401, "TokenRevoked");
    app.refresh(&t.access)
        .await
        .assert_error(401, "TokenInvalid");

    let one = app.login("ann").await;
    let two = app.login("ann").await;
    let sessions = app.get("/auth/sessions", Some(&two.access)).await;
    sessions.assert_status(200);
    let sid = sessions
        .body
        .as_array()
        .and_then(|l| l.iter().find(|s| s["current"] == false))
        .and_then(|s| s["id"].as_str())
        .expect("the other session")
        .to_owned();
    app.delete(&format!("/auth/sessions/{sid}"), Some(&two.access))
        .await
        .assert_status(204);
    app.refresh(&one.refresh)
        .await
        .assert_error(401, "TokenRevoked");
    app.post("/auth/logout-all", Some(&two.access))
        .await
        .assert_status(204);

    let t = app.login("ann").await;
    app.send_json(
        Method::PUT,
        "/users/me/password",
        &json!({"current_password": PASSWORD, "new_password": "another long password"}),
        Some(&t.access),
    )
    .await
    .assert_status(204);
    let r = app
        .login_email("ann@example.com", "another long password")
        .await;
    r.assert_status(200);
    app.delete("/users/me", Some(&r.str("access_token")))
        .await
        .assert_status(204);

    let after = scrape(&app).await;
    assert_grew(
        &before,
        &after,
        &[
            (&refresh("rotated"), 1.0),
            (&refresh("reused"), 1.0),
            (&refresh("revoked"), 2.0),
            (&refresh("invalid"), 1.0),
            (&revocation("reuse"), 1.0),
            (&revocation("logout"), 1.0),
            (&revocation("session_end"), 1.0),
            (&revocation("logout_all"), 1.0),
            (&revocation("password_change"), 1.0),
            (&revocation("delete"), 1.0),
        ],
    );
}

async fn pool_and_failure_families_are_exposed(b: Backend) {
    let app = spawn_app(b).await;
    let text = scrape(&app).await;
    // Sampled at scrape time from this app's pool.
    let max = counter(&text, "tessera_db_pool_max_connections");
    assert!(max >= 1.0, "{text}");
    let size = counter(&text, "tessera_db_pool_size");
    assert!(size <= max);
    assert!(counter(&text, "tessera_db_pool_in_use") <= size);
    for series in [
        "tessera_db_pool_idle",
        "tessera_db_pool_acquire_timeouts_total",
        r#"tessera_store_errors_total{kind="unavailable"}"#,
        r#"tessera_store_errors_total{kind="corrupt"}"#,
        r#"tessera_db_errors_total{kind="unavailable"}"#,
        r#"tessera_db_errors_total{kind="other"}"#,
    ] {
        assert!(
            text.lines().any(|l| l
                .strip_prefix(series)
                .is_some_and(|rest| rest.starts_with(' '))),
            "{series} missing"
        );
    }
    // Each family is declared once.
    let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
    let mut names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), types);
}

crate::both_backends!(
    metrics_count_requests_and_reuse,
    requests_are_labelled_by_route_template,
    logins_are_counted_by_outcome,
    refreshes_and_revocations_are_counted,
    pool_and_failure_families_are_exposed,
);
