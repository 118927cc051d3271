//! Identity rules (API.md "Precise rules"): one account per email however
//! it is written, no invisible characters in emails, the last admin kept,
//! and ambiguous requests (duplicate JSON keys, two `Authorization`
//! headers) refused.

use reqwest::{Method, header::AUTHORIZATION};
use serde_json::json;

use crate::{
    admin::patch_user,
    helpers::{Backend, PASSWORD, RACE_ROUNDS, Resp, TestApp, spawn_app},
};

// ---------------------------------------------------------------- emails

async fn emails_refuse_invisible_characters(b: Backend) {
    let app = spawn_app(b).await;
    let ann = app.user("ann").await;
    for (i, bad) in [
        "admin\u{200b}@example.com",
        "admin\u{202e}@example.com",
        "admin\u{85}@example.com",
        "admin\u{a0}@example.com",
        "admin\u{2028}@example.com",
        "admin@exa\u{200d}mple.com",
    ]
    .into_iter()
    .enumerate()
    {
        let r = app.register(&format!("user{i}"), bad, PASSWORD).await;
        r.assert_error(422, "ValidationFailed");
        assert!(r.body["fields"]["email"].is_string(), "{bad:?}: {r:?}");
        let r = app
            .send_json(
                Method::PATCH,
                "/users/me",
                &json!({ "email": bad }),
                Some(&ann.access),
            )
            .await;
        r.assert_error(422, "ValidationFailed");
        assert!(r.body["fields"]["email"].is_string(), "{bad:?}: {r:?}");
    }
    // A domain that is no valid IDNA (bad Punycode) has no key: 422.
    app.register("user9", "ann@xn--a-ecp.xn--999999999999.example", PASSWORD)
        .await
        .assert_error(422, "ValidationFailed");
}

async fn one_account_per_email_however_written(b: Backend) {
    let app = spawn_app(b).await;
    let nfc = "jos\u{e9}@example.com";
    let nfd = "jose\u{301}@example.com";
    let r = app.register("jose", nfd, PASSWORD).await;
    r.assert_status(201);
    // Stored (and shown) in NFC.
    assert_eq!(r.body["email"], nfc, "{r:?}");
    let id = r.str("id");
    for (i, other) in [nfc, nfd, "JOS\u{c9}@EXAMPLE.COM"].into_iter().enumerate() {
        app.register(&format!("jose{i}"), other, PASSWORD)
            .await
            .assert_error(409, "Conflict");
        let login = app.login_email(other, PASSWORD).await;
        login.assert_status(200);
        assert_eq!(login.str("user_id"), id, "{other:?}");
    }

    let r = app
        .register("bucher", "ann@b\u{fc}cher.example", PASSWORD)
        .await;
    r.assert_status(201);
    let id = r.str("id");
    for (i, other) in [
        "ann@xn--bcher-kva.example",
        "ann@bu\u{308}cher.example",
        "ANN@B\u{dc}CHER.example",
    ]
    .into_iter()
    .enumerate()
    {
        app.register(&format!("bucher{i}"), other, PASSWORD)
            .await
            .assert_error(409, "Conflict");
        let login = app.login_email(other, PASSWORD).await;
        login.assert_status(200);
        assert_eq!(login.str("user_id"), id, "{other:?}");
    }

    // Full case folding: ß and SS are one.
    app.register("strasse", "stra\u{df}e@example.com", PASSWORD)
        .await
        .assert_status(201);
    app.register("strasse2", "STRASSE@example.com", PASSWORD)
        .await
        .assert_error(409, "Conflict");

    // A profile change to another form of a taken address is a conflict too.
    let ann = app.user("ann").await;
    app.send_json(
        Method::PATCH,
        "/users/me",
        &json!({ "email": "ann@xn--bcher-kva.example" }),
        Some(&ann.access),
    )
    .await
    .assert_error(409, "Conflict");
}

// ---------------------------------------------------------------- last admin

async fn demote(app: &TestApp, id: &str, token: &str) -> Resp {
    patch_user(app, id, json!({"role": "user"}), Some(token)).await
}

async fn the_last_admin_is_kept(b: Backend) {
    let app = spawn_app(b).await;
    let root = app.admin().await;
    let me = root.user_id.clone();
    demote(&app, &me, &root.access)
        .await
        .assert_error(409, "Conflict");
    patch_user(&app, &me, json!({"blocked": true}), Some(&root.access))
        .await
        .assert_error(409, "Conflict");
    app.delete("/users/me", Some(&root.access))
        .await
        .assert_error(409, "Conflict");
    app.delete(&format!("/users/{me}"), Some(&root.access))
        .await
        .assert_error(409, "Conflict");
    // Nothing happened: the admin's tokens still work.
    app.verify(&root.access).await.assert_status(200);

    // With a second admin, one may go; a blocked admin does not count.
    let ann = app.user("ann").await;
    patch_user(
        &app,
        &ann.user_id,
        json!({"role": "admin"}),
        Some(&root.access),
    )
    .await
    .assert_status(200);
    patch_user(
        &app,
        &ann.user_id,
        json!({"blocked": true}),
        Some(&root.access),
    )
    .await
    .assert_status(200);
    demote(&app, &me, &root.access)
        .await
        .assert_error(409, "Conflict");
    patch_user(
        &app,
        &ann.user_id,
        json!({"blocked": false}),
        Some(&root.access),
    )
    .await
    .assert_status(200);
    demote(&app, &me, &root.access).await.assert_status(200);
    // Now ann is the last one, also against herself.
    let ann = app.login("ann").await;
    app.delete("/users/me", Some(&ann.access))
        .await
        .assert_error(409, "Conflict");
    demote(&app, &ann.user_id, &ann.access)
        .await
        .assert_error(409, "Conflict");
    // Other users are deleted as before.
    let bob = app.user("bob").await;
    app.delete("/users/me", Some(&bob.access))
        .await
        .assert_status(204);
}

/// Read from the database itself: the survivor's tokens may be gone.
async fn unblocked_admins(app: &TestApp) -> usize {
    use sea_orm::EntityTrait;
    entity::user::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap()
        .iter()
        .filter(|u| u.role == "admin" && !u.blocked)
        .count()
}

/// Two admins demoting (or blocking, or deleting) each other at once
/// never leave zero admins.
async fn admins_removing_each_other_at_once_keep_one(b: Backend) {
    for round in 0..RACE_ROUNDS {
        for how in ["demote", "block", "delete"] {
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
            let ann = app.login("ann").await;
            let remove = |who: String, token: String| {
                let app = &app;
                async move {
                    match how {
                        "demote" => demote(app, &who, &token).await,
                        "block" => {
                            patch_user(app, &who, json!({"blocked": true}), Some(&token)).await
                        }
                        _ => app.delete(&format!("/users/{who}"), Some(&token)).await,
                    }
                }
            };
            let (a, b2) = tokio::join!(
                remove(ann.user_id.clone(), root.access.clone()),
                remove(root.user_id.clone(), ann.access.clone()),
            );
            let ok = [&a, &b2].iter().filter(|r| r.status.is_success()).count();
            assert!(ok <= 1, "round {round} {how}: both succeeded: {a:?} {b2:?}");
            for r in [&a, &b2] {
                // The loser is refused by the rule, or its token was
                // already ended by the winner's change.
                assert!(
                    r.status.is_success() || [401, 409].contains(&r.status.as_u16()),
                    "round {round} {how}: {r:?}"
                );
            }
            assert_eq!(
                unblocked_admins(&app).await,
                2 - ok,
                "round {round} {how}: {a:?} {b2:?}"
            );
        }
    }
}

// ---------------------------------------------------------------- ambiguous requests

async fn raw_json(
    app: &TestApp,
    method: Method,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> Resp {
    app.send(
        app.request(method, path, token)
            .header("content-type", "application/json")
            .body(body.to_owned()),
    )
    .await
}

async fn duplicate_json_keys_are_refused(b: Backend) {
    let app = spawn_app(b).await;
    let ann = app.user("ann").await;
    let dup_register = format!(
        r#"{{"username":"eve","email":"eve@example.com","email":"ann2@example.com","password":"{PASSWORD}"}}"#
    );
    let r = raw_json(&app, Method::POST, "/auth/register", &dup_register, None).await;
    r.assert_error(400, "BadRequest");
    assert!(
        r.body["message"].as_str().unwrap().contains("duplicate"),
        "{r:?}"
    );
    // Nothing was created under either address.
    app.login_email("eve@example.com", PASSWORD)
        .await
        .assert_error(401, "InvalidCredentials");
    app.login_email("ann2@example.com", PASSWORD)
        .await
        .assert_error(401, "InvalidCredentials");

    // Login with the WAF-confusing body of the issue, and an escaped twin.
    for body in [
        format!(r#"{{"email":"nobody@x.org","email":"ann@example.com","password":"{PASSWORD}"}}"#),
        format!(
            r#"{{"email":"ann@example.com","\u0065mail":"ann@example.com","password":"{PASSWORD}"}}"#
        ),
    ] {
        raw_json(&app, Method::POST, "/auth/login", &body, None)
            .await
            .assert_error(400, "BadRequest");
    }
    // Nested, and at depth: still refused; the change is not made.
    for body in [
        r#"{"username":"ann3","extra":{"a":1,"a":2}}"#,
        r#"{"username":"ann3","extra":[{"x":[{"y":1,"y":1}]}]}"#,
    ] {
        raw_json(&app, Method::PATCH, "/users/me", body, Some(&ann.access))
            .await
            .assert_error(400, "BadRequest");
    }
    let me = app.get("/users/me", Some(&ann.access)).await;
    assert_eq!(me.body["username"], "ann");
    // The same keys in different objects are fine.
    raw_json(
        &app,
        Method::PATCH,
        "/users/me",
        r#"{"username":"ann3","extra":{"username":1}}"#,
        Some(&ann.access),
    )
    .await
    .assert_status(200);

    // Precedence: route, then authentication, before the body.
    let dup = r#"{"a":1,"a":2}"#;
    raw_json(&app, Method::POST, "/no/such/route", dup, None)
        .await
        .assert_error(404, "NotFound");
    raw_json(&app, Method::PATCH, "/users/me", dup, None)
        .await
        .assert_error(401, "TokenMissing");
}

async fn two_authorization_headers_are_refused(b: Backend) {
    let app = spawn_app(b).await;
    let ann = app.user("ann").await;
    let bob = app.user("bob").await;
    let two = |method: Method, path: &str| {
        app.client
            .request(method, app.url(path))
            .header(AUTHORIZATION, format!("Bearer {}", ann.access))
            .header(AUTHORIZATION, format!("Bearer {}", bob.access))
    };
    for path in ["/users/me", "/auth/verify", "/healthz"] {
        let r = app.send(two(Method::GET, path)).await;
        r.assert_error(400, "BadRequest");
    }
    // Two copies of one valid token are still two headers.
    let r = app
        .send(
            app.client
                .get(app.url("/users/me"))
                .header(AUTHORIZATION, format!("Bearer {}", ann.access))
                .header(AUTHORIZATION, format!("Bearer {}", ann.access)),
        )
        .await;
    r.assert_error(400, "BadRequest");
    // A public endpoint refuses too, and creates nothing.
    let r = app
        .send(two(Method::POST, "/auth/register").json(&json!({
            "username": "carol", "email": "carol@example.com", "password": PASSWORD
        })))
        .await;
    r.assert_error(400, "BadRequest");
    app.login_email("carol@example.com", PASSWORD)
        .await
        .assert_error(401, "InvalidCredentials");
    // Route and method errors come first.
    app.send(two(Method::GET, "/no/such/route"))
        .await
        .assert_error(404, "NotFound");
    let r = app.send(two(Method::POST, "/users/me")).await;
    r.assert_error(405, "MethodNotAllowed");
    // One header is as before.
    app.get("/users/me", Some(&ann.access))
        .await
        .assert_status(200);
}

crate::both_backends!(
    emails_refuse_invisible_characters,
    one_account_per_email_however_written,
    the_last_admin_is_kept,
    admins_removing_each_other_at_once_keep_one,
    duplicate_json_keys_are_refused,
    two_authorization_headers_are_refused,
);

// ---------------------------------------------------------------- migration

/// Rows written under the old key (`to_lowercase`) get the new one when
/// the migration runs; of two that now collide, the older keeps the key
/// and the younger gets a placeholder no address produces.
async fn migration_rekeys_existing_emails(url: String) {
    use migration::MigratorTrait;
    use sea_orm::EntityTrait;

    let db = sea_orm::Database::connect(url).await.unwrap();
    migration::Migrator::up(&db, Some(3)).await.unwrap();
    let start = chrono::Utc::now();
    let rows = [
        ("jose1", "Jose\u{301}@X.org"),
        ("jose2", "jos\u{e9}@x.org"),
        ("ann", "ann@B\u{fc}cher.example"),
        ("bob", "Bob@Example.com"),
    ];
    let mut ids = Vec::new();
    for (i, (username, email)) in rows.into_iter().enumerate() {
        let id = uuid::Uuid::now_v7();
        let at = start + chrono::Duration::seconds(i as i64);
        // The columns of migration 3 (the model has grown since).
        use sea_orm::{
            ConnectionTrait,
            sea_query::{Alias, Query},
        };
        let insert = Query::insert()
            .into_table(Alias::new("users"))
            .columns(
                [
                    "id",
                    "username",
                    "username_key",
                    "email",
                    "email_key",
                    "password_hash",
                    "role",
                    "blocked",
                    "security_stamp",
                    "created_at",
                    "updated_at",
                ]
                .map(Alias::new),
            )
            .values_panic([
                id.into(),
                username.into(),
                username.into(),
                email.into(),
                email.to_lowercase().into(),
                "x".into(),
                "user".into(),
                false.into(),
                0i64.into(),
                at.into(),
                at.into(),
            ])
            .to_owned();
        db.execute(&insert).await.unwrap();
        ids.push(id);
    }
    migration::Migrator::up(&db, None).await.unwrap();
    let mut keys = Vec::new();
    for id in &ids {
        let u = entity::user::Entity::find_by_id(*id)
            .one(&db)
            .await
            .unwrap()
            .unwrap();
        keys.push(u.email_key);
    }
    assert_eq!(
        keys,
        [
            "jos\u{e9}@x.org".to_owned(),
            format!("conflict:{}", ids[1]),
            "ann@xn--bcher-kva.example".to_owned(),
            "bob@example.com".to_owned(),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_rekeys_existing_emails_sqlite() {
    migration_rekeys_existing_emails(crate::helpers::temp_sqlite_url()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_rekeys_existing_emails_postgres() {
    migration_rekeys_existing_emails(crate::helpers::fresh_postgres_db().await).await
}
