//! Fail closed: with Redis down, requests that need the token store get 503
//! and /readyz says so; when Redis is back, the service recovers by itself.

use std::time::Duration;

use crate::helpers::{Backend, RedisServer, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_is_503_and_recovery_is_automatic() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let port = redis.port;
    let app = spawn_app_with(Backend::PostgresRedis, |c| c.redis_url = Some(url)).await;
    let t = app.user("ann").await;
    app.verify(&t.access).await.assert_status(200);

    redis.stop();
    app.verify(&t.access)
        .await
        .assert_error(503, "ServiceUnavailable");
    app.refresh(&t.refresh)
        .await
        .assert_error(503, "ServiceUnavailable");
    app.get("/readyz", None)
        .await
        .assert_error(503, "ServiceUnavailable");
    let r = app
        .login_email("ann@example.com", crate::helpers::PASSWORD)
        .await;
    r.assert_error(503, "ServiceUnavailable");
    let h = app.get("/healthz", None).await;
    h.assert_status(200);
    // Registration fails closed too: its per-address limit is counted in
    // the token store.
    app.register("bob", "bob@example.com", crate::helpers::PASSWORD)
        .await
        .assert_error(503, "ServiceUnavailable");

    // Same port, empty data: old sessions are gone (refused, never accepted
    // unchecked), new logins work again without a restart.
    let _redis = RedisServer::start_on(port);
    let mut ready = false;
    for _ in 0..50 {
        if app.get("/readyz", None).await.status == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the service did not recover when Redis came back");
    app.verify(&t.access)
        .await
        .assert_error(401, "TokenRevoked");
    app.register("bob", "bob@example.com", crate::helpers::PASSWORD)
        .await
        .assert_status(201);
    let again = app.login("ann").await;
    app.verify(&again.access).await.assert_status(200);
    app.refresh(&again.refresh).await.assert_status(200);
}
