//! Administration: listing users and reading one.

use std::collections::BTreeSet;

use serde_json::json;
use uuid::Uuid;

use super::assert_user_shape;
use crate::helpers::{Backend, spawn_app};

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
    let stale = app.non_fresh_login("root").await;
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

crate::both_backends!(
    list_users_paginates,
    list_users_rejects_bad_paging,
    list_users_huge_page_is_never_a_500,
    list_users_needs_an_admin,
    get_user_self_or_admin,
);
