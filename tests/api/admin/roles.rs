//! Administration: role changes, blocking, and registration never making an admin.

use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use super::{assert_user_shape, patch_user};
use crate::helpers::{Backend, PASSWORD, spawn_app};

// ---------------------------------------------------------------- roles

async fn promote_revokes_and_grants_admin(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin().await;
    let ann = app.user("ann").await;
    let ann_stale = app.non_fresh_login("ann").await;
    app.get("/users", Some(&ann.access))
        .await
        .assert_error(403, "AdminRequired");

    let r = patch_user(
        &app,
        &ann.user_id,
        json!({"role": "admin"}),
        Some(&admin.access),
    )
    .await;
    r.assert_status(200);
    assert_user_shape(&r.body);
    assert_eq!(
        (r.str("id"), r.str("role"), r.body["blocked"].as_bool()),
        (ann.user_id.clone(), "admin".into(), Some(false))
    );

    // The user's old tokens (which say role user) are dead at once.
    app.assert_revoked(&[&ann, &ann_stale], "/users").await;
    // The admin who made the change is untouched.
    app.verify(&admin.access).await.assert_status(200);

    let again = app.login("ann").await;
    let v = app.verify(&again.access).await;
    v.assert_status(200);
    assert_eq!(v.body["role"], "admin");
    assert_eq!(v.header("x-auth-user-role"), Some("admin"));
    let list = app.get("/users", Some(&again.access)).await;
    list.assert_status(200);
    assert_eq!(list.body["total"], 2);
    // And a refresh keeps the new role.
    let r = app.refresh(&again.refresh).await;
    r.assert_status(200);
    assert_eq!(
        app.verify(&r.str("access_token")).await.body["role"],
        "admin"
    );
}

async fn demoted_admin_loses_access_at_once(b: Backend) {
    let app = spawn_app(b).await;
    let root = app.admin().await;
    let ann = app.user("ann").await;
    patch_user(
        &app,
        &ann.user_id,
        json!({"role": "admin"}),
        Some(&root.access),
    )
    .await
    .assert_status(200);
    let ann_admin = app.login("ann").await;
    app.get("/users", Some(&ann_admin.access))
        .await
        .assert_status(200);

    let r = patch_user(
        &app,
        &ann.user_id,
        json!({"role": "user"}),
        Some(&root.access),
    )
    .await;
    r.assert_status(200);
    assert_eq!(r.body["role"], "user");

    // The old admin token is refused immediately, not when it expires.
    app.get("/users", Some(&ann_admin.access))
        .await
        .assert_error(401, "TokenRevoked");
    app.get(&format!("/users/{}", root.user_id), Some(&ann_admin.access))
        .await
        .assert_error(401, "TokenRevoked");
    patch_user(
        &app,
        &root.user_id,
        json!({"role": "user"}),
        Some(&ann_admin.access),
    )
    .await
    .assert_error(401, "TokenRevoked");
    app.refresh(&ann_admin.refresh)
        .await
        .assert_error(401, "TokenRevoked");

    let again = app.login("ann").await;
    let v = app.verify(&again.access).await;
    assert_eq!(v.body["role"], "user");
    app.get("/users", Some(&again.access))
        .await
        .assert_error(403, "AdminRequired");
    // The root admin was never demoted by the refused PATCH.
    let r = app
        .get(&format!("/users/{}", root.user_id), Some(&root.access))
        .await;
    assert_eq!(r.body["role"], "admin");
}

async fn patch_rejects_values_outside_the_schema(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin().await;
    let ann = app.user("ann").await;
    let before = app
        .get(&format!("/users/{}", ann.user_id), Some(&admin.access))
        .await;

    for body in [
        json!({"role": "superuser"}),
        json!({"role": "Admin"}),
        json!({"role": 1}),
        json!({"blocked": "yes"}),
        json!({"blocked": 1}),
        json!({"role": "admin", "blocked": "true"}),
        json!("admin"),
    ] {
        let r = patch_user(&app, &ann.user_id, body.clone(), Some(&admin.access)).await;
        assert_eq!(r.status.as_u16(), 400, "{body}: {r:?}");
        r.assert_error(400, "BadRequest");
    }
    let r = app
        .send(
            app.request(
                Method::PATCH,
                &format!("/users/{}", ann.user_id),
                Some(&admin.access),
            )
            .header("content-type", "application/json")
            .body("{\"role\":"),
        )
        .await;
    r.assert_error(400, "BadRequest");

    // Nothing changed, nothing was revoked.
    let after = app
        .get(&format!("/users/{}", ann.user_id), Some(&admin.access))
        .await;
    assert_eq!(after.body, before.body);
    app.verify(&ann.access).await.assert_status(200);
}

async fn patch_without_a_change_keeps_tokens(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin().await;
    let ann = app.user("ann").await;
    let before = app
        .get(&format!("/users/{}", ann.user_id), Some(&admin.access))
        .await;
    before.assert_status(200);

    for body in [
        json!({"role": "user"}),
        json!({"blocked": false}),
        json!({"role": "user", "blocked": false}),
        json!({}),
        json!({"role": null, "blocked": null}),
        json!({"unknown": "field"}),
    ] {
        let r = patch_user(&app, &ann.user_id, body.clone(), Some(&admin.access)).await;
        r.assert_status(200);
        assert_eq!(r.body, before.body, "{body} changed the user");
        app.verify(&ann.access).await.assert_status(200);
    }
    app.refresh(&ann.refresh).await.assert_status(200);

    // Same for an admin left an admin.
    let r = patch_user(
        &app,
        &admin.user_id,
        json!({"role": "admin"}),
        Some(&admin.access),
    )
    .await;
    r.assert_status(200);
    assert_eq!(r.body["role"], "admin");
    app.verify(&admin.access).await.assert_status(200);
}

async fn patch_needs_an_admin_and_an_existing_user(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin().await;
    let ann = app.user("ann").await;
    let bob = app.user("bob").await;

    for (id, body) in [
        (&bob.user_id, json!({"blocked": true})),
        (&ann.user_id, json!({"role": "admin"})),
        (&admin.user_id, json!({"role": "user"})),
        // Role comes before the body and the path.
        (&bob.user_id, json!({"role": "superuser"})),
        (&"not-a-uuid".to_owned(), json!({"role": "admin"})),
    ] {
        patch_user(&app, id, body, Some(&ann.access))
            .await
            .assert_error(403, "AdminRequired");
    }
    patch_user(&app, &bob.user_id, json!({"blocked": true}), None)
        .await
        .assert_error(401, "TokenMissing");

    patch_user(
        &app,
        &Uuid::now_v7().to_string(),
        json!({"role": "admin"}),
        Some(&admin.access),
    )
    .await
    .assert_error(404, "NotFound");
    patch_user(
        &app,
        "not-a-uuid",
        json!({"role": "admin"}),
        Some(&admin.access),
    )
    .await
    .assert_error(400, "BadRequest");

    // Nobody changed.
    for (t, role) in [(&ann, "user"), (&bob, "user"), (&admin, "admin")] {
        let v = app.verify(&t.access).await;
        v.assert_status(200);
        assert_eq!(v.body["role"], role);
        let u = app
            .get(&format!("/users/{}", t.user_id), Some(&admin.access))
            .await;
        assert_eq!(
            (u.body["role"].as_str(), u.body["blocked"].as_bool()),
            (Some(role), Some(false))
        );
    }
}

// ---------------------------------------------------------------- blocking

async fn block_revokes_and_refuses_login_until_unblocked(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin().await;
    let ann = app.user("ann").await;
    let other = app.login("ann").await;
    let stale = app.non_fresh_login("ann").await;
    let bob = app.user("bob").await;

    let r = patch_user(
        &app,
        &ann.user_id,
        json!({"blocked": true}),
        Some(&admin.access),
    )
    .await;
    r.assert_status(200);
    assert_user_shape(&r.body);
    assert_eq!(
        (r.body["blocked"].as_bool(), r.body["role"].as_str()),
        (Some(true), Some("user"))
    );

    app.assert_revoked(&[&ann, &other, &stale], "/users/me")
        .await;

    app.login_email("ann@example.com", PASSWORD)
        .await
        .assert_error(403, "UserBlocked");
    app.post_json(
        "/auth/login",
        &json!({"username": "ann", "password": PASSWORD}),
        None,
    )
    .await
    .assert_error(403, "UserBlocked");
    // A wrong password does not reveal that the account is blocked.
    let wrong = app.login_email("ann@example.com", "not the password").await;
    wrong.assert_error(401, "InvalidCredentials");
    let unknown = app
        .login_email("nobody@example.com", "not the password")
        .await;
    assert_eq!(wrong.text, unknown.text);

    let shown = app
        .get(&format!("/users/{}", ann.user_id), Some(&admin.access))
        .await;
    assert_eq!(shown.body["blocked"], true);
    // Bob is untouched.
    app.verify(&bob.access).await.assert_status(200);

    let r = patch_user(
        &app,
        &ann.user_id,
        json!({"blocked": false}),
        Some(&admin.access),
    )
    .await;
    r.assert_status(200);
    assert_eq!(r.body["blocked"], false);
    let again = app.login("ann").await;
    app.verify(&again.access).await.assert_status(200);
    app.refresh(&again.refresh).await.assert_status(200);
    // Unblocking does not bring the old tokens back.
    app.verify(&ann.access)
        .await
        .assert_error(401, "TokenRevoked");
    app.refresh(&other.refresh)
        .await
        .assert_error(401, "TokenRevoked");
}

async fn block_and_promote_in_one_patch(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin().await;
    let ann = app.user("ann").await;
    let r = patch_user(
        &app,
        &ann.user_id,
        json!({"role": "admin", "blocked": true}),
        Some(&admin.access),
    )
    .await;
    r.assert_status(200);
    assert_eq!(
        (r.body["role"].as_str(), r.body["blocked"].as_bool()),
        (Some("admin"), Some(true))
    );
    app.verify(&ann.access)
        .await
        .assert_error(401, "TokenRevoked");
    app.login_email("ann@example.com", PASSWORD)
        .await
        .assert_error(403, "UserBlocked");
}

// ---------------------------------------------------------------- registration

async fn registration_never_creates_an_admin(b: Backend) {
    let app = spawn_app(b).await;
    for (name, extra) in [
        ("eve", json!({"role": "admin"})),
        (
            "mallory",
            json!({"role": "superuser", "is_admin": true, "blocked": true}),
        ),
        ("trudy", json!({"role": ["admin"], "admin": true})),
    ] {
        let mut body = json!({
            "username": name,
            "email": format!("{name}@example.com"),
            "password": PASSWORD,
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = app.post_json("/auth/register", &body, None).await;
        r.assert_status(201);
        assert_user_shape(&r.body);
        assert_eq!(
            (r.body["role"].as_str(), r.body["blocked"].as_bool()),
            (Some("user"), Some(false)),
            "{body}"
        );
        let t = app.login(name).await;
        let v = app.verify(&t.access).await;
        assert_eq!(v.body["role"], "user");
        app.get("/users", Some(&t.access))
            .await
            .assert_error(403, "AdminRequired");
    }
}

crate::both_backends!(
    promote_revokes_and_grants_admin,
    demoted_admin_loses_access_at_once,
    patch_rejects_values_outside_the_schema,
    patch_without_a_change_keeps_tokens,
    patch_needs_an_admin_and_an_existing_user,
    block_revokes_and_refuses_login_until_unblocked,
    block_and_promote_in_one_patch,
    registration_never_creates_an_admin,
);
