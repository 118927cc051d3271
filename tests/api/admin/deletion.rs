//! Administration: an admin deletes a user.

use serde_json::json;
use uuid::Uuid;

use crate::helpers::{Backend, PASSWORD, spawn_app};

// ---------------------------------------------------------------- deletion

async fn admin_deletes_a_user(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin().await;
    let ann = app.user("ann").await;
    let stale = app.non_fresh_login("ann").await;
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

    app.assert_revoked(&[&ann, &stale], "/users/me").await;
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
    let stale_admin = app.non_fresh_login("root").await;
    let ann = app.user("ann").await;
    let ann_stale = app.non_fresh_login("ann").await;
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

crate::both_backends!(admin_deletes_a_user, admin_delete_needs_a_fresh_admin,);
