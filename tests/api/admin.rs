//! Administration: listing, reading, role changes, blocking, deletion, bootstrap.

use std::{
    collections::BTreeSet,
    io::Read,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    Backend, PASSWORD, Resp, TestApp, Tokens, free_port, spawn_app, temp_sqlite_url,
};

const USER_KEYS: [&str; 7] = [
    "id",
    "username",
    "email",
    "role",
    "blocked",
    "created_at",
    "updated_at",
];

/// A User body: exactly the contract's fields, never a hash.
#[track_caller]
fn assert_user_shape(user: &Value) {
    let obj = user
        .as_object()
        .unwrap_or_else(|| panic!("not a User: {user}"));
    let keys: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(USER_KEYS), "User fields: {user}");
    let text = user.to_string();
    assert!(
        !text.contains("argon2") && !text.contains("$v=19$"),
        "a password hash leaked: {text}"
    );
}

async fn patch_user(app: &TestApp, id: &str, body: Value, token: Option<&str>) -> Resp {
    app.send_json(Method::PATCH, &format!("/users/{id}"), &body, token)
        .await
}

/// A new session of `name`, rotated once: its access token is not fresh.
async fn non_fresh(app: &TestApp, name: &str) -> Tokens {
    let t = app.login(name).await;
    let r = app.refresh(&t.refresh).await;
    r.assert_status(200);
    Tokens {
        access: r.str("access_token"),
        refresh: r.str("refresh_token"),
        user_id: t.user_id,
    }
}

// ---------------------------------------------------------------- listing

async fn list_users_paginates(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin().await;
    let mut ids = BTreeSet::from([admin.user_id.clone()]);
    for name in ["ann", "bob", "carol"] {
        ids.insert(app.user(name).await.user_id);
    }

    let all = app.get("/users", Some(&admin.access)).await;
    all.assert_status(200);
    assert_eq!(
        (&all.body["page"], &all.body["per_page"], &all.body["total"]),
        (&json!(1), &json!(20), &json!(4)),
        "{all:?}"
    );
    let items = all.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 4);
    for u in items {
        assert_user_shape(u);
    }
    assert!(!all.text.contains("password"), "{all:?}");
    let listed: BTreeSet<String> = items
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, ids);
    let root = items
        .iter()
        .find(|u| u["id"] == admin.user_id.as_str())
        .unwrap();
    assert_eq!(
        (root["role"].as_str(), root["username"].as_str()),
        (Some("admin"), Some("root"))
    );

    let p1 = app.get("/users?per_page=2", Some(&admin.access)).await;
    p1.assert_status(200);
    assert_eq!(
        (&p1.body["page"], &p1.body["per_page"], &p1.body["total"]),
        (&json!(1), &json!(2), &json!(4)),
        "{p1:?}"
    );
    assert_eq!(p1.body["items"].as_array().map(Vec::len), Some(2));

    // per_page=3: page 1 has 3, page 2 the rest, page 3 is past the end.
    let mut seen = BTreeSet::new();
    for (page, expected) in [(1, 3), (2, 1), (3, 0), (50, 0)] {
        let r = app
            .get(
                &format!("/users?page={page}&per_page=3"),
                Some(&admin.access),
            )
            .await;
        r.assert_status(200);
        assert_eq!(
            (&r.body["page"], &r.body["per_page"], &r.body["total"]),
            (&json!(page), &json!(3), &json!(4)),
            "{r:?}"
        );
        let items = r.body["items"].as_array().expect("items");
        assert_eq!(items.len(), expected, "page {page}: {r:?}");
        for u in items {
            assert_user_shape(u);
            assert!(
                seen.insert(u["id"].as_str().unwrap().to_owned()),
                "a user on two pages: {u}"
            );
        }
    }
    assert_eq!(seen, ids, "the pages cover every user once");

    // Bounds that are allowed.
    for q in ["per_page=1", "per_page=100", "page=1&per_page=100"] {
        app.get(&format!("/users?{q}"), Some(&admin.access))
            .await
            .assert_status(200);
    }
    // A non-fresh admin token is enough to list.
    let stale = non_fresh(&app, "root").await;
    let r = app.get("/users?per_page=1", Some(&stale.access)).await;
    r.assert_status(200);
    assert_eq!(r.body["total"], 4);
}

async fn list_users_rejects_bad_paging(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin().await;
    app.user("ann").await;
    for q in [
        "per_page=0",
        "per_page=101",
        "per_page=-1",
        "per_page=1000000",
        "per_page=abc",
        "per_page=1.5",
        "per_page=",
        "page=0",
        "page=-1",
        "page=abc",
        "page=1.5",
        "page=2&per_page=0",
        "page=99999999999999999999999",
    ] {
        let r = app.get(&format!("/users?{q}"), Some(&admin.access)).await;
        assert_eq!(r.status.as_u16(), 400, "?{q}: {r:?}");
        r.assert_error(400, "BadRequest");
    }
}

/// A very large (but well-formed) page number is past the end (or refused
/// as a bad parameter), never a crash.
async fn list_users_huge_page_is_never_a_500(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin().await;
    let mut bad = Vec::new();
    for q in [
        format!("page={}", u32::MAX),
        format!("page={}&per_page=2", i64::MAX / 2 + 1),
        format!("page={}&per_page=100", i64::MAX / 100),
        format!("page={}&per_page=100", i64::MAX),
        format!("page={}", i64::MAX),
    ] {
        let r = app.get(&format!("/users?{q}"), Some(&admin.access)).await;
        let ok = match r.status.as_u16() {
            200 => r.body["items"] == json!([]) && r.body["total"] == 1,
            400 => r.body["code"] == "BadRequest",
            _ => false,
        };
        if !ok {
            bad.push(format!("?{q} -> {} {}", r.status, r.text));
        }
    }
    assert!(bad.is_empty(), "huge pages mishandled:\n{}", bad.join("\n"));
}

async fn list_users_needs_an_admin(b: Backend) {
    let app = spawn_app(b).await;
    app.admin().await;
    let ann = app.user("ann").await;
    app.get("/users", Some(&ann.access))
        .await
        .assert_error(403, "AdminRequired");
    // Role comes before parameters.
    app.get("/users?page=abc&per_page=0", Some(&ann.access))
        .await
        .assert_error(403, "AdminRequired");
    app.get("/users", None)
        .await
        .assert_error(401, "TokenMissing");
    app.get("/users?per_page=0", None)
        .await
        .assert_error(401, "TokenMissing");
    app.get("/users", Some("not.a.token"))
        .await
        .assert_error(401, "TokenInvalid");
    app.get("/users", Some(&ann.refresh))
        .await
        .assert_error(401, "TokenInvalid");
}

// ---------------------------------------------------------------- reading

async fn get_user_self_or_admin(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin().await;
    let ann = app.user("ann").await;
    let bob = app.user("bob").await;

    let me = app
        .get(&format!("/users/{}", ann.user_id), Some(&ann.access))
        .await;
    me.assert_status(200);
    assert_user_shape(&me.body);
    assert_eq!(
        (
            me.str("id"),
            me.str("username"),
            me.str("email"),
            me.str("role")
        ),
        (
            ann.user_id.clone(),
            "ann".into(),
            "ann@example.com".into(),
            "user".into()
        )
    );
    assert_eq!(me.body["blocked"], false);
    assert_eq!(me.body, app.get("/users/me", Some(&ann.access)).await.body);

    // A non-admin reads nobody else, whatever the id looks like.
    for id in [
        bob.user_id.clone(),
        admin.user_id.clone(),
        Uuid::now_v7().to_string(),
        "not-a-uuid".into(),
    ] {
        app.get(&format!("/users/{id}"), Some(&ann.access))
            .await
            .assert_error(403, "AdminRequired");
    }

    // An admin reads anyone.
    for (t, name) in [(&ann, "ann"), (&bob, "bob"), (&admin, "root")] {
        let r = app
            .get(&format!("/users/{}", t.user_id), Some(&admin.access))
            .await;
        r.assert_status(200);
        assert_user_shape(&r.body);
        assert_eq!(r.body["username"], name);
    }
    app.get(&format!("/users/{}", Uuid::now_v7()), Some(&admin.access))
        .await
        .assert_error(404, "NotFound");
    app.get("/users/not-a-uuid", Some(&admin.access))
        .await
        .assert_error(400, "BadRequest");
    app.get(&format!("/users/{}", ann.user_id), None)
        .await
        .assert_error(401, "TokenMissing");
}

// ---------------------------------------------------------------- roles

async fn promote_revokes_and_grants_admin(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin().await;
    let ann = app.user("ann").await;
    let ann_stale = non_fresh(&app, "ann").await;
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
    for t in [&ann, &ann_stale] {
        app.verify(&t.access)
            .await
            .assert_error(401, "TokenRevoked");
        app.get("/users", Some(&t.access))
            .await
            .assert_error(401, "TokenRevoked");
        app.refresh(&t.refresh)
            .await
            .assert_error(401, "TokenRevoked");
    }
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
    let stale = non_fresh(&app, "ann").await;
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

    for t in [&ann, &other, &stale] {
        app.verify(&t.access)
            .await
            .assert_error(401, "TokenRevoked");
        app.get("/users/me", Some(&t.access))
            .await
            .assert_error(401, "TokenRevoked");
        app.refresh(&t.refresh)
            .await
            .assert_error(401, "TokenRevoked");
    }

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

// ---------------------------------------------------------------- deletion

async fn admin_deletes_a_user(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin().await;
    let ann = app.user("ann").await;
    let stale = non_fresh(&app, "ann").await;
    let bob = app.user("bob").await;
    for (t, name) in [(&ann, "Ann's"), (&bob, "Bob's")] {
        app.post_json(
            "/employees",
            &json!({"name": name, "position": "engineer"}),
            Some(&t.access),
        )
        .await
        .assert_status(201);
    }

    let r = app
        .delete(&format!("/users/{}", ann.user_id), Some(&admin.access))
        .await;
    r.assert_status(204);
    // The user's records went with them (hard delete, cascade); Bob's stay.
    {
        use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
        for (owner, expected) in [(&ann.user_id, 0), (&bob.user_id, 1)] {
            let n = entity::employee::Entity::find()
                .filter(entity::employee::Column::OwnerId.eq(Uuid::parse_str(owner).unwrap()))
                .count(&app.state.db)
                .await
                .expect("count employees");
            assert_eq!(n, expected, "employees of {owner}");
        }
    }
    assert!(r.text.is_empty(), "204 with a body: {r:?}");

    for t in [&ann, &stale] {
        app.verify(&t.access)
            .await
            .assert_error(401, "TokenRevoked");
        app.get("/users/me", Some(&t.access))
            .await
            .assert_error(401, "TokenRevoked");
        app.refresh(&t.refresh)
            .await
            .assert_error(401, "TokenRevoked");
    }
    app.get(&format!("/users/{}", ann.user_id), Some(&admin.access))
        .await
        .assert_error(404, "NotFound");
    app.delete(&format!("/users/{}", ann.user_id), Some(&admin.access))
        .await
        .assert_error(404, "NotFound");
    app.login_email("ann@example.com", PASSWORD)
        .await
        .assert_error(401, "InvalidCredentials");
    let list = app.get("/users", Some(&admin.access)).await;
    assert_eq!(list.body["total"], 2, "{list:?}");

    app.delete(&format!("/users/{}", Uuid::now_v7()), Some(&admin.access))
        .await
        .assert_error(404, "NotFound");
    app.delete("/users/not-a-uuid", Some(&admin.access))
        .await
        .assert_error(400, "BadRequest");

    // Hard delete: the name and email are free again.
    app.register("ann", "ann@example.com", PASSWORD)
        .await
        .assert_status(201);
    app.verify(&bob.access).await.assert_status(200);
    app.verify(&admin.access).await.assert_status(200);
}

async fn admin_delete_needs_a_fresh_admin(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin().await;
    let stale_admin = non_fresh(&app, "root").await;
    let ann = app.user("ann").await;
    let ann_stale = non_fresh(&app, "ann").await;
    let bob = app.user("bob").await;
    let target = format!("/users/{}", bob.user_id);

    app.delete(&target, Some(&stale_admin.access))
        .await
        .assert_error(401, "FreshTokenNeeded");
    // Role before freshness: a non-admin is 403 whether fresh or not.
    app.delete(&target, Some(&ann.access))
        .await
        .assert_error(403, "AdminRequired");
    app.delete(&target, Some(&ann_stale.access))
        .await
        .assert_error(403, "AdminRequired");
    app.delete(&format!("/users/{}", admin.user_id), Some(&ann.access))
        .await
        .assert_error(403, "AdminRequired");
    // Freshness before parameters.
    app.delete("/users/not-a-uuid", Some(&stale_admin.access))
        .await
        .assert_error(401, "FreshTokenNeeded");
    app.delete("/users/not-a-uuid", Some(&ann.access))
        .await
        .assert_error(403, "AdminRequired");
    app.delete(&target, None)
        .await
        .assert_error(401, "TokenMissing");

    // Bob is still there with working tokens.
    app.verify(&bob.access).await.assert_status(200);
    let r = app.get(&target, Some(&admin.access)).await;
    r.assert_status(200);
    assert_eq!(r.body["username"], "bob");
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

// ---------------------------------------------------------------- bootstrap

async fn bootstrap_is_idempotent(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin().await;
    let ann = app.user("ann").await;
    let before = app.get("/users", Some(&admin.access)).await;
    assert_eq!(before.body["total"], 2);

    // Again, also with another password and the email in another case: the
    // existing admin is left as it is.
    app.admin().await;
    tessera::bootstrap::ensure_admin(
        &app.state,
        "ROOT@example.com",
        "root2",
        SecretString::from("another password".to_owned()),
    )
    .await
    .expect("bootstrap again");
    let after = app.get("/users", Some(&admin.access)).await;
    after.assert_status(200);
    assert_eq!(after.body["total"], 2, "{after:?}");
    let admins: Vec<_> = after.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["role"] == "admin")
        .collect();
    assert_eq!(admins.len(), 1, "{after:?}");
    assert_eq!(admins[0]["id"], admin.user_id.as_str());
    assert_eq!(admins[0]["username"], "root");
    app.login_email("root@example.com", "another password")
        .await
        .assert_error(401, "InvalidCredentials");
    app.login("root").await;
    // Bootstrapping does not end the admin's sessions.
    app.verify(&admin.access).await.assert_status(200);

    // An existing non-admin account with the configured email is not promoted.
    tessera::bootstrap::ensure_admin(
        &app.state,
        "ann@example.com",
        "ann",
        SecretString::from(PASSWORD.to_owned()),
    )
    .await
    .expect("bootstrap over an existing user");
    let r = app
        .get(&format!("/users/{}", ann.user_id), Some(&admin.access))
        .await;
    assert_eq!(r.body["role"], "user");
    assert_eq!(
        app.get("/users", Some(&admin.access)).await.body["total"],
        2
    );
}

async fn concurrent_bootstrap_in_one_process(b: Backend) {
    let app = spawn_app(b).await;
    let results = futures_util::future::join_all((0..4).map(|_| {
        tessera::bootstrap::ensure_admin(
            &app.state,
            "root@example.com",
            "root",
            SecretString::from(PASSWORD.to_owned()),
        )
    }))
    .await;
    for r in &results {
        assert!(r.is_ok(), "concurrent bootstrap failed: {results:?}");
    }
    let admin = app.login("root").await;
    let list = app.get("/users", Some(&admin.access)).await;
    list.assert_status(200);
    assert_eq!(list.body["total"], 1, "{list:?}");
    assert_eq!(list.body["items"][0]["role"], "admin");
}

crate::both_backends!(
    list_users_paginates,
    list_users_rejects_bad_paging,
    list_users_huge_page_is_never_a_500,
    list_users_needs_an_admin,
    get_user_self_or_admin,
    promote_revokes_and_grants_admin,
    demoted_admin_loses_access_at_once,
    patch_rejects_values_outside_the_schema,
    patch_without_a_change_keeps_tokens,
    patch_needs_an_admin_and_an_existing_user,
    block_revokes_and_refuses_login_until_unblocked,
    block_and_promote_in_one_patch,
    admin_deletes_a_user,
    admin_delete_needs_a_fresh_admin,
    registration_never_creates_an_admin,
    bootstrap_is_idempotent,
    concurrent_bootstrap_in_one_process,
);

// ---------------------------------------------------------------- processes

/// Runs a command to completion, killing it after `limit`. `Err` on timeout,
/// with what it printed so far.
fn run_with_timeout(cmd: &mut Command, limit: Duration) -> Result<Output, String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tessera");
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for tessera") {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => Err(format!(
            "still running after {limit:?}; stdout: {} stderr: {}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        )),
    }
}

fn tessera_cmd(args: &[&str], database_url: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tessera"));
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("TESSERA_ARGON2_MEMORY_KIB", "1024")
        .env("TESSERA_ARGON2_ITERATIONS", "1")
        .env("TESSERA_LOG_FORMAT", "json")
        .stdin(Stdio::null());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_create_admin_processes_make_one_admin() {
    let url = crate::helpers::fresh_postgres_db().await;
    let admin_password = "boss password 123";
    let start = |url: String| {
        std::thread::spawn(move || {
            let mut c = tessera_cmd(&["create-admin"], &url);
            c.env("TESSERA_ADMIN_EMAIL", "boss@example.com")
                .env("TESSERA_ADMIN_USERNAME", "boss")
                .env("TESSERA_ADMIN_PASSWORD", admin_password);
            run_with_timeout(&mut c, Duration::from_secs(60))
        })
    };
    let (one, two) = (start(url.clone()), start(url.clone()));
    for (i, out) in [one.join().unwrap(), two.join().unwrap()]
        .into_iter()
        .enumerate()
    {
        let out = out.unwrap_or_else(|e| panic!("create-admin #{i} hung: {e}"));
        assert!(
            out.status.success(),
            "create-admin #{i} failed: {:?}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !printed.contains(admin_password),
            "the password was printed: {printed}"
        );
    }

    let mut config = crate::helpers::test_config(Backend::PostgresRedis).await;
    config.database_url = url.clone();
    let app = crate::helpers::spawn_with_config(config, Backend::PostgresRedis).await;
    let r = app.login_email("boss@example.com", admin_password).await;
    r.assert_status(200);
    let access = r.str("access_token");
    let v = app.verify(&access).await;
    assert_eq!(v.body["role"], "admin");
    let list = app.get("/users", Some(&access)).await;
    list.assert_status(200);
    assert_eq!(list.body["total"], 1, "exactly one admin row: {list:?}");
    let items = list.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_user_shape(&items[0]);
    assert_eq!(
        (
            items[0]["role"].as_str(),
            items[0]["username"].as_str(),
            items[0]["email"].as_str()
        ),
        (Some("admin"), Some("boss"), Some("boss@example.com"))
    );

    // A third run later is a no-op that succeeds.
    let out = tokio::task::spawn_blocking(move || {
        let mut c = tessera_cmd(&["create-admin"], &url);
        c.env("TESSERA_ADMIN_EMAIL", "boss@example.com")
            .env("TESSERA_ADMIN_USERNAME", "boss")
            .env("TESSERA_ADMIN_PASSWORD", "a different password");
        run_with_timeout(&mut c, Duration::from_secs(60))
    })
    .await
    .unwrap()
    .expect("create-admin hung");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(app.get("/users", Some(&access)).await.body["total"], 1);
    app.login_email("boss@example.com", admin_password)
        .await
        .assert_status(200);
}

/// Without TESSERA_ADMIN_PASSWORD and without a terminal to prompt on,
/// `create-admin` fails instead of waiting forever.
#[test]
fn create_admin_without_password_or_terminal_fails() {
    let db = temp_sqlite_url();
    let mut c = tessera_cmd(&["create-admin"], &db);
    c.env("TESSERA_ADMIN_EMAIL", "boss@example.com")
        .env("TESSERA_ADMIN_USERNAME", "boss");
    // A new session without a controlling terminal: no /dev/tty at all.
    unsafe {
        use std::os::unix::process::CommandExt;
        c.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let out = run_with_timeout(&mut c, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("create-admin hung instead of failing: {e}"));
    assert!(
        !out.status.success(),
        "create-admin without a password succeeded"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("TESSERA_ADMIN_PASSWORD"),
        "the error names the variable to set: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And no account was created.
    let out = run_with_timeout(
        tessera_cmd(&["create-admin"], &db)
            .env("TESSERA_ADMIN_EMAIL", "boss@example.com")
            .env("TESSERA_ADMIN_USERNAME", "boss")
            .env("TESSERA_ADMIN_PASSWORD", "boss password 123"),
        Duration::from_secs(60),
    )
    .expect("create-admin hung");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A pseudo-terminal that the child gets as its controlling terminal.
struct Pty {
    master: libc::c_int,
    slave_path: std::ffi::CString,
}

impl Pty {
    fn open() -> Self {
        unsafe {
            let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
            assert!(master >= 0, "posix_openpt failed");
            assert_eq!(libc::grantpt(master), 0, "grantpt failed");
            assert_eq!(libc::unlockpt(master), 0, "unlockpt failed");
            let mut buf = [0 as libc::c_char; 128];
            assert_eq!(
                libc::ptsname_r(master, buf.as_mut_ptr(), buf.len()),
                0,
                "ptsname_r failed"
            );
            let slave_path = std::ffi::CStr::from_ptr(buf.as_ptr()).to_owned();
            Self { master, slave_path }
        }
    }

    /// Makes the child a session leader whose controlling terminal is this
    /// pty, leaving its stdin/stdout/stderr as they are.
    fn attach(&self, cmd: &mut Command) {
        use std::os::unix::process::CommandExt;
        let path = self.slave_path.clone();
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let fd = libc::open(path.as_ptr(), libc::O_RDWR);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::ioctl(fd, libc::TIOCSCTTY, 0);
                libc::close(fd);
                Ok(())
            });
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        unsafe {
            libc::close(self.master);
        }
    }
}

/// As an operator would run it from a shell script in a terminal with
/// `< /dev/null`: stdin is not a terminal, so there is nobody to answer a
/// prompt, even though a controlling terminal exists.
#[test]
fn create_admin_with_stdin_not_a_terminal_fails_even_with_a_controlling_tty() {
    let pty = Pty::open();
    // The setup really gives a controlling terminal (else this test proves nothing).
    let mut probe = Command::new("sh");
    probe.args(["-c", "exec 3<>/dev/tty"]).stdin(Stdio::null());
    pty.attach(&mut probe);
    let out = run_with_timeout(&mut probe, Duration::from_secs(10)).expect("probe hung");
    assert!(
        out.status.success(),
        "no controlling terminal in the probe: {out:?}"
    );

    let db = temp_sqlite_url();
    let mut c = tessera_cmd(&["create-admin"], &db);
    c.env("TESSERA_ADMIN_EMAIL", "boss@example.com")
        .env("TESSERA_ADMIN_USERNAME", "boss");
    pty.attach(&mut c);
    let out = run_with_timeout(&mut c, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("create-admin with stdin </dev/null hung on a prompt: {e}"));
    assert!(
        !out.status.success(),
        "create-admin without a password succeeded"
    );
}

/// Kills a server left running by a failed assertion.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `serve` with TESSERA_ADMIN_* creates the admin at start, and a restart
/// (with another password configured) leaves it as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_bootstraps_the_admin_at_start() {
    let db = temp_sqlite_url();
    let client = reqwest::Client::new();
    for (run, password) in [(0, "boss password 123"), (1, "another password 456")] {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let mut child = KillOnDrop(
            tessera_cmd(&["serve"], &db)
                .env("TESSERA_BIND", format!("127.0.0.1:{port}"))
                .env("TESSERA_ADMIN_EMAIL", "boss@example.com")
                .env("TESSERA_ADMIN_USERNAME", "boss")
                .env("TESSERA_ADMIN_PASSWORD", password)
                .env("TESSERA_JWT_SECRET", crate::helpers::SECRET)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start tessera serve"),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if client.get(format!("{base}/healthz")).send().await.is_ok() {
                break;
            }
            if let Some(s) = child.0.try_wait().unwrap() {
                panic!("tessera serve exited at start (run {run}): {s:?}");
            }
            assert!(Instant::now() < deadline, "tessera did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let login = |pw: &'static str| {
            client
                .post(format!("{base}/auth/login"))
                .json(&json!({"email": "boss@example.com", "password": pw}))
                .send()
        };
        let r = login("boss password 123").await.unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        if run == 1 {
            // The restart did not reset the password.
            let other = login("another password 456").await.unwrap();
            assert_eq!(other.status(), 401, "run {run}");
        }
        assert_eq!(status, 200, "run {run}: {body}");
        let access = body["access_token"].as_str().unwrap().to_owned();
        let list: Value = client
            .get(format!("{base}/users"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list["total"], 1, "run {run}: {list}");
        assert_eq!(list["items"][0]["role"], "admin", "run {run}: {list}");

        unsafe {
            libc::kill(child.0.id() as libc::pid_t, libc::SIGTERM);
        }
        let status = tokio::task::spawn_blocking(move || child.0.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "run {run}: {status:?}");
    }
}
