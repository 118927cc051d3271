//! Fresh-token actions on the caller's own account.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Backend, PASSWORD, TestApp, Tokens, spawn_app};

const NEW_PASSWORD: &str = "a brand new passphrase";

async fn change_password(
    app: &TestApp,
    token: Option<&str>,
    current: &str,
    new: &str,
) -> crate::helpers::Resp {
    app.send_json(
        Method::PUT,
        "/users/me/password",
        &json!({"current_password": current, "new_password": new}),
        token,
    )
    .await
}

/// Employee rows owned by `owner`, read straight from the database.
async fn employees_of(app: &TestApp, owner: &str) -> u64 {
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    entity::employee::Entity::find()
        .filter(entity::employee::Column::OwnerId.eq(uuid::Uuid::parse_str(owner).unwrap()))
        .count(&app.state.db)
        .await
        .expect("count employees")
}

async fn add_employee(app: &TestApp, t: &Tokens, name: &str) {
    app.post_json(
        "/employees",
        &json!({"name": name, "position": "engineer"}),
        Some(&t.access),
    )
    .await
    .assert_status(201);
}

/// Everything the user can still do with their current password and tokens.
async fn assert_unchanged(app: &TestApp, name: &str, tokens: &[&Tokens]) {
    for t in tokens {
        app.verify(&t.access).await.assert_status(200);
        app.get("/users/me", Some(&t.access))
            .await
            .assert_status(200);
    }
    app.login_email(&format!("{name}@example.com"), NEW_PASSWORD)
        .await
        .assert_error(401, "InvalidCredentials");
    app.login(name).await;
}

async fn change_password_revokes_every_token(b: Backend) {
    let app = spawn_app(b).await;
    let first = app.user("ann").await;
    let second = app.login("ann").await;
    let rotated = app.non_fresh_login("ann").await;
    let bob = app.user("bob").await;

    let r = change_password(&app, Some(&first.access), PASSWORD, NEW_PASSWORD).await;
    r.assert_status(204);
    assert!(r.text.is_empty(), "204 with a body: {r:?}");

    // Every token of every session of the user is refused, including the one
    // that made the change.
    app.assert_revoked(&[&first, &second, &rotated], "/users/me")
        .await;
    let sessions_left = app.get("/auth/sessions", Some(&first.access)).await;
    sessions_left.assert_error(401, "TokenRevoked");

    // The old password no longer logs in; the new one does, with working tokens.
    app.login_email("ann@example.com", PASSWORD)
        .await
        .assert_error(401, "InvalidCredentials");
    app.post_json(
        "/auth/login",
        &json!({"username": "ann", "password": PASSWORD}),
        None,
    )
    .await
    .assert_error(401, "InvalidCredentials");
    let r = app.login_email("ann@example.com", NEW_PASSWORD).await;
    r.assert_status(200);
    let access = r.str("access_token");
    let v = app.verify(&access).await;
    v.assert_status(200);
    assert_eq!(v.body["sub"], first.user_id.as_str());
    assert_eq!(v.body["fresh"], true);
    let list = app.get("/auth/sessions", Some(&access)).await;
    list.assert_status(200);
    assert_eq!(
        list.body.as_array().map(Vec::len),
        Some(1),
        "only the new session is left: {list:?}"
    );
    app.refresh(&r.str("refresh_token"))
        .await
        .assert_status(200);

    // Another user is untouched.
    app.verify(&bob.access).await.assert_status(200);
    app.refresh(&bob.refresh).await.assert_status(200);
}

async fn wrong_current_password_changes_nothing(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.user("ann").await;
    let other = app.login("ann").await;
    let before = app.get("/users/me", Some(&t.access)).await;
    before.assert_status(200);

    let r = change_password(&app, Some(&t.access), "not the password", NEW_PASSWORD).await;
    r.assert_error(401, "InvalidCredentials");

    assert_unchanged(&app, "ann", &[&t, &other]).await;
    app.refresh(&other.refresh).await.assert_status(200);
    let after = app.get("/users/me", Some(&t.access)).await;
    assert_eq!(after.body, before.body, "the record did not change");
}

async fn change_password_validates_the_body(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.user("ann").await;

    let r = change_password(&app, Some(&t.access), PASSWORD, "short").await;
    r.assert_error(422, "ValidationFailed");
    assert!(
        r.body["fields"]["new_password"].is_string(),
        "no problem for new_password: {r:?}"
    );
    let r = change_password(&app, Some(&t.access), PASSWORD, &"x".repeat(129)).await;
    r.assert_error(422, "ValidationFailed");
    assert!(r.body["fields"]["new_password"].is_string(), "{r:?}");

    for body in [
        json!({"current_password": PASSWORD}),
        json!({"new_password": NEW_PASSWORD}),
        json!({}),
        json!({"current_password": PASSWORD, "new_password": 12345678}),
        json!({"current_password": 5, "new_password": NEW_PASSWORD}),
        json!({"current_password": PASSWORD, "new_password": null}),
        json!([PASSWORD, NEW_PASSWORD]),
    ] {
        let r = app
            .send_json(Method::PUT, "/users/me/password", &body, Some(&t.access))
            .await;
        r.assert_error(400, "BadRequest");
    }
    // Not JSON at all.
    let r = app
        .send(
            app.request(Method::PUT, "/users/me/password", Some(&t.access))
                .header("content-type", "application/json")
                .body("{not json"),
        )
        .await;
    r.assert_error(400, "BadRequest");
    // No body.
    app.send(app.request(Method::PUT, "/users/me/password", Some(&t.access)))
        .await
        .assert_error(400, "BadRequest");

    assert_unchanged(&app, "ann", &[&t]).await;
}

/// A malformed body is refused without echoing the passwords it carries
/// (error messages end up in client logs, gateway logs and bug reports).
async fn bad_body_errors_never_echo_passwords(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.user("ann").await;
    let mut leaks = Vec::new();
    for body in [
        json!([PASSWORD, NEW_PASSWORD]),
        json!({"current_password": [PASSWORD], "new_password": NEW_PASSWORD}),
        json!({"current_password": PASSWORD, "new_password": {"value": NEW_PASSWORD}}),
        json!({"current_password": {"value": PASSWORD}}),
    ] {
        let r = app
            .send_json(Method::PUT, "/users/me/password", &body, Some(&t.access))
            .await;
        r.assert_error(400, "BadRequest");
        if r.text.contains(PASSWORD) || r.text.contains(NEW_PASSWORD) {
            leaks.push(format!("{body} -> {}", r.text));
        }
    }
    assert!(
        leaks.is_empty(),
        "passwords echoed in errors:\n{}",
        leaks.join("\n")
    );
}

async fn change_password_needs_a_fresh_token(b: Backend) {
    let app = spawn_app(b).await;
    let fresh = app.user("ann").await;
    let stale = app.non_fresh_login("ann").await;

    change_password(&app, Some(&stale.access), PASSWORD, NEW_PASSWORD)
        .await
        .assert_error(401, "FreshTokenNeeded");
    // Freshness comes before the body.
    app.send_json(
        Method::PUT,
        "/users/me/password",
        &json!({"new_password": 5}),
        Some(&stale.access),
    )
    .await
    .assert_error(401, "FreshTokenNeeded");
    // Authentication comes before everything.
    change_password(&app, None, PASSWORD, NEW_PASSWORD)
        .await
        .assert_error(401, "TokenMissing");
    app.send_json(Method::PUT, "/users/me/password", &json!({}), None)
        .await
        .assert_error(401, "TokenMissing");
    // A refresh token is no access token.
    change_password(&app, Some(&fresh.refresh), PASSWORD, NEW_PASSWORD)
        .await
        .assert_error(401, "TokenInvalid");

    assert_unchanged(&app, "ann", &[&fresh, &stale]).await;
    app.refresh(&stale.refresh).await.assert_status(200);
}

async fn delete_me_needs_a_fresh_token(b: Backend) {
    let app = spawn_app(b).await;
    let fresh = app.user("ann").await;
    let stale = app.non_fresh_login("ann").await;

    app.delete("/users/me", Some(&stale.access))
        .await
        .assert_error(401, "FreshTokenNeeded");
    app.delete("/users/me", None)
        .await
        .assert_error(401, "TokenMissing");
    app.delete("/users/me", Some(&fresh.refresh))
        .await
        .assert_error(401, "TokenInvalid");

    // Nothing happened.
    let me = app.get("/users/me", Some(&stale.access)).await;
    me.assert_status(200);
    assert_eq!(me.body["id"], fresh.user_id.as_str());
    assert_unchanged(&app, "ann", &[&fresh, &stale]).await;
}

async fn delete_me_is_a_hard_delete(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin().await;
    let first = app.user("ann").await;
    let second = app.login("ann").await;
    let rotated = app.non_fresh_login("ann").await;
    let bob = app.user("bob").await;
    add_employee(&app, &first, "Ann's first").await;
    add_employee(&app, &first, "Ann's second").await;
    add_employee(&app, &bob, "Bob's").await;
    assert_eq!(employees_of(&app, &first.user_id).await, 2);

    let r = app.delete("/users/me", Some(&first.access)).await;
    r.assert_status(204);
    assert!(r.text.is_empty(), "204 with a body: {r:?}");

    app.assert_revoked(&[&first, &second, &rotated], "/users/me")
        .await;
    app.delete("/users/me", Some(&first.access))
        .await
        .assert_error(401, "TokenRevoked");
    app.login_email("ann@example.com", PASSWORD)
        .await
        .assert_error(401, "InvalidCredentials");
    // Everything the user owned went with them; other users' records stay.
    assert_eq!(employees_of(&app, &first.user_id).await, 0);
    assert_eq!(employees_of(&app, &bob.user_id).await, 1);
    let bobs = app.get("/employees", Some(&bob.access)).await;
    bobs.assert_status(200);
    assert_eq!(bobs.body["total"], 1, "{bobs:?}");

    // Gone for the admin too.
    app.get(&format!("/users/{}", first.user_id), Some(&admin.access))
        .await
        .assert_error(404, "NotFound");
    let list = app.get("/users", Some(&admin.access)).await;
    list.assert_status(200);
    assert_eq!(list.body["total"], 2, "root and bob are left: {list:?}");
    assert!(
        !list.text.contains(&first.user_id),
        "the deleted user is still listed: {list:?}"
    );

    // Hard delete: the same email and username can be registered again, and
    // the new account is a different one that the old tokens cannot reach.
    let r = app.register("ann", "ann@example.com", PASSWORD).await;
    r.assert_status(201);
    assert_ne!(r.str("id"), first.user_id);
    let again = app.login("ann").await;
    assert_ne!(again.user_id, first.user_id);
    app.verify(&again.access).await.assert_status(200);
    app.verify(&first.access)
        .await
        .assert_error(401, "TokenRevoked");
    app.refresh(&second.refresh)
        .await
        .assert_error(401, "TokenRevoked");

    // Other users are untouched.
    app.verify(&bob.access).await.assert_status(200);
    app.verify(&admin.access).await.assert_status(200);
}

async fn fresh_endpoints_refuse_non_fresh_tokens(b: Backend) {
    let app = spawn_app(b).await;
    app.admin().await;
    let admin = app.non_fresh_login("root").await;
    let ann = app.user("ann").await;
    let stale = app.non_fresh_login("ann").await;

    change_password(&app, Some(&stale.access), PASSWORD, NEW_PASSWORD)
        .await
        .assert_error(401, "FreshTokenNeeded");
    app.delete("/users/me", Some(&stale.access))
        .await
        .assert_error(401, "FreshTokenNeeded");
    app.delete(&format!("/users/{}", ann.user_id), Some(&admin.access))
        .await
        .assert_error(401, "FreshTokenNeeded");
    // The admin's non-fresh token is otherwise a working admin token.
    let v = app.verify(&admin.access).await;
    assert_eq!(
        (v.body["role"].as_str(), v.body["fresh"].as_bool()),
        (Some("admin"), Some(false))
    );
    app.get("/users", Some(&admin.access))
        .await
        .assert_status(200);

    // Nothing changed for ann.
    let got = app
        .get(&format!("/users/{}", ann.user_id), Some(&admin.access))
        .await;
    got.assert_status(200);
    assert_eq!(got.body["username"], "ann");
    assert_unchanged(&app, "ann", &[&ann, &stale]).await;
}

crate::both_backends!(
    change_password_revokes_every_token,
    wrong_current_password_changes_nothing,
    change_password_validates_the_body,
    bad_body_errors_never_echo_passwords,
    change_password_needs_a_fresh_token,
    delete_me_needs_a_fresh_token,
    delete_me_is_a_hard_delete,
    fresh_endpoints_refuse_non_fresh_tokens,
);
