//! Sessions: listing, deletion, rotation races, the reuse grace and the
//! absolute session lifetime.

use std::time::Duration;

use reqwest::Method;

use crate::helpers::{Backend, PASSWORD, RACE_ROUNDS, race, spawn_app, spawn_app_with};

async fn sessions_list_and_delete(b: Backend) {
    let app = spawn_app(b).await;
    let first = app.user("ann").await;
    let r = app
        .send(
            app.request(Method::POST, "/auth/login", None)
                .header("user-agent", "tab-two/1.0")
                .json(&serde_json::json!({"email": "ann@example.com", "password": PASSWORD})),
        )
        .await;
    r.assert_status(200);
    let second_access = r.str("access_token");
    let second_refresh = r.str("refresh_token");

    let list = app.get("/auth/sessions", Some(&first.access)).await;
    list.assert_status(200);
    let items = list.body.as_array().expect("array of sessions").clone();
    assert_eq!(items.len(), 2, "{list:?}");
    let current: Vec<_> = items.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    let other = items
        .iter()
        .find(|s| s["current"] == false)
        .expect("the other session");
    assert_eq!(other["user_agent"], "tab-two/1.0");
    assert_eq!(other["ip"], "127.0.0.1");
    for k in ["created_at", "last_used_at", "expires_at"] {
        assert!(
            other[k]
                .as_str()
                .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()),
            "{k}"
        );
    }
    let other_id = other["id"].as_str().unwrap().to_owned();

    // Another user cannot see or end it.
    let bob = app.user("bob").await;
    let bob_list = app.get("/auth/sessions", Some(&bob.access)).await;
    assert_eq!(bob_list.body.as_array().map(Vec::len), Some(1));
    app.delete(&format!("/auth/sessions/{other_id}"), Some(&bob.access))
        .await
        .assert_error(404, "NotFound");
    app.verify(&second_access).await.assert_status(200);

    app.delete(&format!("/auth/sessions/{other_id}"), Some(&first.access))
        .await
        .assert_status(204);
    app.verify(&second_access)
        .await
        .assert_error(401, "TokenRevoked");
    app.refresh(&second_refresh)
        .await
        .assert_error(401, "TokenRevoked");
    // The caller's own session is untouched.
    app.verify(&first.access).await.assert_status(200);
    app.refresh(&first.refresh).await.assert_status(200);
    let list = app.get("/auth/sessions", Some(&first.access)).await;
    assert_eq!(list.body.as_array().map(Vec::len), Some(1));

    app.delete(&format!("/auth/sessions/{other_id}"), Some(&first.access))
        .await
        .assert_error(404, "NotFound");
    app.delete("/auth/sessions/not-a-uuid", Some(&first.access))
        .await
        .assert_error(400, "BadRequest");
    app.get("/auth/sessions", None)
        .await
        .assert_error(401, "TokenMissing");
}

async fn reuse_revokes_the_session(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.user("ann").await;
    let r1 = app.refresh(&t.refresh).await;
    r1.assert_status(200);
    let access2 = r1.str("access_token");
    // The spent token again: reuse, and the whole session ends.
    app.refresh(&t.refresh)
        .await
        .assert_error(401, "TokenReused");
    app.refresh(&r1.str("refresh_token"))
        .await
        .assert_error(401, "TokenRevoked");
    // A spent token stays "reused" after the session is gone.
    app.refresh(&t.refresh)
        .await
        .assert_error(401, "TokenReused");
    app.verify(&access2).await.assert_error(401, "TokenRevoked");
    app.verify(&t.access)
        .await
        .assert_error(401, "TokenRevoked");
}

async fn strict_concurrent_refresh_has_one_winner(b: Backend) {
    let app = spawn_app(b).await;
    app.user("ann").await;
    for round in 0..RACE_ROUNDS {
        // A new session each round: the last round's was revoked.
        let t = app.login("ann").await;
        let results = race(8, |_| {
            let (app, token) = (app.clone(), t.refresh.clone());
            async move { app.refresh(&token).await }
        })
        .await;
        let winners: Vec<_> = results.iter().filter(|r| r.status == 200).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        for r in results.iter().filter(|r| r.status != 200) {
            r.assert_error(401, "TokenReused");
        }
        // The losers' reuse revoked the session: even the winner's token is dead.
        app.refresh(&winners[0].str("refresh_token"))
            .await
            .assert_error(401, "TokenRevoked");
    }
}

async fn grace_lets_concurrent_tabs_share_one_token(b: Backend) {
    let app = spawn_app_with(b, |c| c.refresh_reuse_grace = Duration::from_secs(10)).await;
    let t = app.user("ann").await;
    let results = race(8, |_| {
        let (app, token) = (app.clone(), t.refresh.clone());
        async move { app.refresh(&token).await }
    })
    .await;
    for r in &results {
        r.assert_status(200);
    }
    let current = results[0].str("refresh_token");
    assert!(
        results.iter().all(|r| r.str("refresh_token") == current),
        "all tabs get the byte-identical current refresh token"
    );
    let accesses: std::collections::HashSet<_> =
        results.iter().map(|r| r.str("access_token")).collect();
    assert_eq!(accesses.len(), 8, "each gets its own access token");
    for a in &accesses {
        app.verify(a).await.assert_status(200);
    }
    // The shared token rotates normally; after that, the first token is a
    // grandparent: reuse, and the session ends.
    let next = app.refresh(&current).await;
    next.assert_status(200);
    app.refresh(&t.refresh)
        .await
        .assert_error(401, "TokenReused");
    app.refresh(&next.str("refresh_token"))
        .await
        .assert_error(401, "TokenRevoked");
}

async fn grace_expires(b: Backend) {
    let app = spawn_app_with(b, |c| c.refresh_reuse_grace = Duration::from_secs(1)).await;
    let t = app.user("ann").await;
    app.refresh(&t.refresh).await.assert_status(200);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    app.refresh(&t.refresh)
        .await
        .assert_error(401, "TokenReused");
}

async fn session_lifetime_is_absolute(b: Backend) {
    let app = spawn_app_with(b, |c| c.refresh_ttl = Duration::from_secs(4)).await;
    let t = app.user("ann").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = app.refresh(&t.refresh).await;
    r.assert_status(200);
    let left = r.body["refresh_expires_in"].as_i64().unwrap();
    assert!(left <= 3, "rotation keeps the session's end: {left}");
    assert!(
        r.body["expires_in"].as_i64().unwrap() <= left,
        "access never outlives its session"
    );
    // Past the session's end (whole seconds: keep a margin).
    tokio::time::sleep(Duration::from_millis(4200)).await;
    app.refresh(&r.str("refresh_token"))
        .await
        .assert_error(401, "TokenExpired");
}

crate::both_backends!(
    sessions_list_and_delete,
    reuse_revokes_the_session,
    strict_concurrent_refresh_has_one_winner,
    grace_lets_concurrent_tabs_share_one_token,
    grace_expires,
    session_lifetime_is_absolute,
);
