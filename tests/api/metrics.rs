//! `GET /metrics`: Prometheus text with request and token-event series.

use crate::helpers::{Backend, spawn_app};

fn counter(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
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
    assert!(counter(&after.text, reused) >= counter(&before.text, reused) + 1.0);
    assert!(counter(&after.text, logins) >= counter(&before.text, logins) + 1.0);
    assert!(
        counter(
            &after.text,
            r#"tessera_http_requests_total{method="POST",status="401"}"#
        ) >= 1.0
    );
    assert!(
        after
            .text
            .contains("tessera_http_request_duration_seconds_bucket{le=\"+Inf\"}")
    );
    assert!(!after.text.contains(&t.refresh), "no token in metrics");
}

crate::both_backends!(metrics_count_requests_and_reuse);
