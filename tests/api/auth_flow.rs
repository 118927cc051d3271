//! Register, login, verify, refresh, logout: the seeds' flow.

use serde_json::json;

use crate::helpers::{Backend, PASSWORD, spawn_app};

async fn register_returns_the_user_without_secrets(b: Backend) {
    let app = spawn_app(b).await;
    let r = app.register("ann", "Ann@Example.com", PASSWORD).await;
    r.assert_status(201);
    assert_eq!(r.body["username"], "ann");
    assert_eq!(r.body["email"], "Ann@Example.com");
    assert_eq!(r.body["role"], "user");
    assert_eq!(r.body["blocked"], false);
    assert!(uuid::Uuid::parse_str(&r.str("id")).is_ok_and(|u| u.get_version_num() == 7));
    let location = format!("/users/{}", r.str("id"));
    assert_eq!(r.header("location"), Some(location.as_str()), "{r:?}");
    for k in ["created_at", "updated_at"] {
        assert!(
            chrono::DateTime::parse_from_rfc3339(&r.str(k)).is_ok(),
            "{k}"
        );
    }
    assert!(!r.text.contains("argon2"), "hash leaked: {}", r.text);
    assert!(r.body.get("password_hash").is_none() && r.body.get("password").is_none());
}

async fn full_flow_and_old_tokens_refused(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.user("ann").await;

    let v = app.verify(&t.access).await;
    v.assert_status(200);
    assert_eq!(v.body["sub"], t.user_id.as_str());
    assert_eq!(v.body["fresh"], true);
    assert_eq!(v.body["role"], "user");
    assert_eq!(v.header("x-auth-user-id"), Some(t.user_id.as_str()));
    assert_eq!(v.header("x-auth-user-role"), Some("user"));

    let me = app.get("/users/me", Some(&t.access)).await;
    me.assert_status(200);
    assert_eq!(me.body["email"], "ann@example.com");

    let r = app.refresh(&t.refresh).await;
    r.assert_status(200);
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let access2 = r.str("access_token");
    let refresh2 = r.str("refresh_token");
    assert_ne!(refresh2, t.refresh);
    let v2 = app.verify(&access2).await;
    v2.assert_status(200);
    assert_eq!(
        v2.body["fresh"], false,
        "refreshed access tokens are not fresh"
    );
    assert_eq!(v2.body["sid"], v.body["sid"], "rotation keeps the session");

    // Rotation does not revoke the previous access token.
    app.verify(&t.access).await.assert_status(200);

    app.post("/auth/logout", Some(&access2))
        .await
        .assert_status(204);
    app.verify(&access2).await.assert_error(401, "TokenRevoked");
    app.verify(&t.access)
        .await
        .assert_error(401, "TokenRevoked");
    app.refresh(&refresh2)
        .await
        .assert_error(401, "TokenRevoked");
}

async fn login_by_username_is_case_insensitive(b: Backend) {
    let app = spawn_app(b).await;
    app.register("Ann.Smith", "ann@example.com", PASSWORD)
        .await
        .assert_status(201);
    let r = app
        .post_json(
            "/auth/login",
            &json!({"username": "ann.smith", "password": PASSWORD}),
            None,
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.body["expires_in"], 900);
    assert_eq!(r.body["refresh_expires_in"], 2_592_000);
    let r = app.login_email("ANN@example.COM", PASSWORD).await;
    r.assert_status(200);
}

async fn bad_credentials_are_indistinguishable(b: Backend) {
    let app = spawn_app(b).await;
    app.user("ann").await;
    let wrong = app.login_email("ann@example.com", "not the password").await;
    let unknown = app.login_email("nobody@example.com", PASSWORD).await;
    wrong.assert_error(401, "InvalidCredentials");
    unknown.assert_error(401, "InvalidCredentials");
    assert_eq!(wrong.text, unknown.text);
    let by_name = app
        .post_json(
            "/auth/login",
            &json!({"username": "nobody", "password": PASSWORD}),
            None,
        )
        .await;
    assert_eq!(by_name.text, unknown.text);
}

async fn login_needs_exactly_one_identifier(b: Backend) {
    let app = spawn_app(b).await;
    app.user("ann").await;
    let both = json!({"email": "ann@example.com", "username": "ann", "password": PASSWORD});
    app.post_json("/auth/login", &both, None)
        .await
        .assert_error(400, "BadRequest");
    let neither = json!({"password": PASSWORD});
    let r = app.post_json("/auth/login", &neither, None).await;
    r.assert_error(400, "BadRequest");
    assert!(
        r.str("message")
            .contains("exactly one of `email` and `username`"),
        "{r:?}"
    );
    // `null` is absent: a username login with `"email": null` is fine.
    let with_null = json!({"email": null, "username": "ann", "password": PASSWORD});
    app.post_json("/auth/login", &with_null, None)
        .await
        .assert_status(200);
}

async fn register_ignores_role_and_rejects_duplicates(b: Backend) {
    let app = spawn_app(b).await;
    let r = app
        .post_json(
            "/auth/register",
            &json!({"username": "eve", "email": "eve@example.com", "password": PASSWORD, "role": "admin"}),
            None,
        )
        .await;
    r.assert_status(201);
    assert_eq!(r.body["role"], "user");
    app.register("EVE", "other@example.com", PASSWORD)
        .await
        .assert_error(409, "Conflict");
    app.register("eve2", "EVE@EXAMPLE.COM", PASSWORD)
        .await
        .assert_error(409, "Conflict");
    // The failed attempts changed nothing.
    app.login("eve").await;
}

async fn register_validates_values(b: Backend) {
    let app = spawn_app(b).await;
    let r = app.register("a", "not-an-email", "short").await;
    r.assert_error(422, "ValidationFailed");
    for f in ["username", "email", "password"] {
        assert!(r.body["fields"][f].is_string(), "no problem for {f}: {r:?}");
    }
    app.register("bad name", "a@example.com", PASSWORD)
        .await
        .assert_error(422, "ValidationFailed");
    let long_local = format!("{}@example.com", "a".repeat(65));
    app.register("ann", &long_local, PASSWORD)
        .await
        .assert_error(422, "ValidationFailed");
    app.register("ann", "a@example.com", &"x".repeat(129))
        .await
        .assert_error(422, "ValidationFailed");
    // 100 x "ü" is a valid password: lengths count characters, not bytes.
    app.register("ann", "ann@example.com", &"ü".repeat(100))
        .await
        .assert_status(201);
    app.post_json(
        "/auth/login",
        &json!({"username": "ann", "password": "ü".repeat(100)}),
        None,
    )
    .await
    .assert_status(200);
}

async fn logout_all_revokes_every_session(b: Backend) {
    let app = spawn_app(b).await;
    let a = app.user("ann").await;
    let b2 = app.login("ann").await;
    let other = app.user("bob").await;
    app.post("/auth/logout-all", Some(&a.access))
        .await
        .assert_status(204);
    app.verify(&a.access)
        .await
        .assert_error(401, "TokenRevoked");
    app.verify(&b2.access)
        .await
        .assert_error(401, "TokenRevoked");
    app.refresh(&b2.refresh)
        .await
        .assert_error(401, "TokenRevoked");
    // Another user is untouched, and the user can log in again.
    app.verify(&other.access).await.assert_status(200);
    let again = app.login("ann").await;
    app.verify(&again.access).await.assert_status(200);
}

async fn update_me_patch_and_put(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.user("ann").await;
    app.user("bob").await;
    let r = app
        .send_json(
            reqwest::Method::PATCH,
            "/users/me",
            &json!({"username": "annie", "email": null}),
            Some(&t.access),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.body["username"], "annie");
    assert_eq!(r.body["email"], "ann@example.com");
    let r = app
        .send_json(
            reqwest::Method::PUT,
            "/users/me",
            &json!({"email": "annie@example.com"}),
            Some(&t.access),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.body["username"], "annie");
    // With verification on (the default) the new address waits for its
    // confirmation link (tests/api/email.rs).
    assert_eq!(r.body["email"], "ann@example.com");
    assert_eq!(r.body["pending_email"], "annie@example.com");
    app.send_json(
        reqwest::Method::PATCH,
        "/users/me",
        &json!({"username": "BOB"}),
        Some(&t.access),
    )
    .await
    .assert_error(409, "Conflict");
    app.send_json(
        reqwest::Method::PATCH,
        "/users/me",
        &json!({"email": "nope"}),
        Some(&t.access),
    )
    .await
    .assert_error(422, "ValidationFailed");
    app.send_json(
        reqwest::Method::PATCH,
        "/users/me",
        &json!({"username": 5}),
        Some(&t.access),
    )
    .await
    .assert_error(400, "BadRequest");
    // Failed updates left the record as it was.
    let me = app.get("/users/me", Some(&t.access)).await;
    assert_eq!(
        (me.str("username"), me.str("email"), me.str("pending_email")),
        (
            "annie".into(),
            "ann@example.com".into(),
            "annie@example.com".into()
        )
    );
    app.send_json(reqwest::Method::PATCH, "/users/me", &json!({}), None)
        .await
        .assert_error(401, "TokenMissing");
}

crate::both_backends!(
    register_returns_the_user_without_secrets,
    full_flow_and_old_tokens_refused,
    login_by_username_is_case_insensitive,
    bad_credentials_are_indistinguishable,
    login_needs_exactly_one_identifier,
    register_ignores_role_and_rejects_duplicates,
    register_validates_values,
    logout_all_revokes_every_session,
    update_me_patch_and_put,
);
