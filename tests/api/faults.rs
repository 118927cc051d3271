//! Failure spends nothing (API.md "Precise rules"): a request answered 503
//! leaves no half-done change. Real faults: a PostgreSQL database that stops
//! taking connections (and drops the ones it had), a Redis that hangs.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database};
use serde_json::json;

use crate::helpers::{
    Backend, PASSWORD, RedisServer, TestApp, shared_postgres_base, spawn_app_with,
};

fn db_name(app: &TestApp) -> String {
    app.config
        .database_url
        .rsplit('/')
        .next()
        .expect("database name")
        .to_owned()
}

/// Cuts the app's database off (`up = false`): no new connections, and the
/// open ones are terminated mid-session. `up = true` lets it back in.
async fn database(app: &TestApp, up: bool) {
    let admin = Database::connect(format!("{}/postgres", shared_postgres_base()))
        .await
        .expect("connect to the test PostgreSQL");
    let name = db_name(app);
    admin
        .execute_unprepared(&format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS {up}"))
        .await
        .expect("alter database");
    if !up {
        admin
            .execute_unprepared(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            ))
            .await
            .expect("terminate connections");
    }
    admin.close().await.ok();
}

/// A refresh during a database outage is 503 and has not spent its token:
/// once the database is back the same token rotates normally. Requests that
/// lose their connection mid-way are 503 too, never 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_during_a_database_outage_spends_nothing() {
    let app = spawn_app_with(Backend::PostgresRedis, |_| {}).await;
    let t = app.user("ann").await;

    database(&app, false).await;
    app.refresh(&t.refresh)
        .await
        .assert_error(503, "ServiceUnavailable");
    app.get("/users/me", Some(&t.access))
        .await
        .assert_error(503, "ServiceUnavailable");
    app.post_json(
        "/employees",
        &json!({"name": "Bob", "position": "engineer"}),
        Some(&t.access),
    )
    .await
    .assert_error(503, "ServiceUnavailable");
    // Tokens alone still verify: the store is up.
    app.verify(&t.access).await.assert_status(200);

    database(&app, true).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let r = loop {
        let r = app.refresh(&t.refresh).await;
        if r.status != 503 || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    r.assert_status(200);
    let again = app.refresh(&r.str("refresh_token")).await;
    again.assert_status(200);
}

/// A password change whose token store hangs after the current password was
/// checked answers 503 and changes nothing: the old password still logs in,
/// the new one does not, and the old sessions are as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change_with_a_hanging_store_changes_nothing() {
    let redis = RedisServer::start();
    let url = redis.url();
    let app = spawn_app_with(Backend::PostgresRedis, |c| {
        c.redis_url = Some(url.clone());
        // Each hash takes long enough to pause Redis while one runs.
        c.argon2_memory_kib = 64 * 1024;
        c.argon2_iterations = 3;
    })
    .await;
    let t = app.user("ann").await;
    let other = app.login("ann").await;

    let change = {
        let req = app
            .request(reqwest::Method::PUT, "/users/me/password", Some(&t.access))
            .json(&json!({"current_password": PASSWORD, "new_password": "a brand new password"}));
        tokio::spawn(req.send())
    };
    // The limiter's store call comes first, then two hashes (verify, new
    // hash): pause Redis while they run, for longer than the store deadline.
    tokio::time::sleep(Duration::from_millis(60)).await;
    // Frozen until the change has answered, however slowly its hashes run
    // on a loaded machine.
    redis.freeze();
    let r = change
        .await
        .expect("join")
        .expect("password change request");
    assert_eq!(r.status().as_u16(), 503, "{:?}", r.text().await);

    redis.thaw();
    // Nothing changed: the sessions live, the old password is the password.
    app.verify(&other.access).await.assert_status(200);
    app.refresh(&other.refresh).await.assert_status(200);
    app.login_email("ann@example.com", "a brand new password")
        .await
        .assert_error(401, "InvalidCredentials");
    app.login_email("ann@example.com", PASSWORD)
        .await
        .assert_status(200);
    drop(redis);
}
