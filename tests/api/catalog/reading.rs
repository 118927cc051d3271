//! Catalog reads and updates: getting and patching categories and products.

use super::*;

// ---------------------------------------------------------------- read and update

async fn get_and_patch_categories(b: Backend) {
    let app = spawn_app(b).await;
    let ann = app.user("ann").await;
    let stale = app.non_fresh(&ann).await.access;
    let books = category(&app, &ann.access, "Books").await;
    let toys = category(&app, &ann.access, "Toys").await;
    let id = id_of(&books);
    let path = format!("/categories/{id}");

    // An access token is needed (a non-fresh one is enough).
    app.get(&path, None).await.assert_error(401, "TokenMissing");
    app.send_json(Method::PATCH, &path, &json!({"name": "Novels"}), None)
        .await
        .assert_error(401, "TokenMissing");
    app.get(&path, Some(&ann.refresh))
        .await
        .assert_error(401, "TokenInvalid");
    assert_same(&app.get(&path, Some(&stale)).await, &books);

    // Conflicts and invalid names leave it unchanged.
    for name in ["Toys", "toys", "TOYS"] {
        app.send_json(Method::PATCH, &path, &json!({"name": name}), Some(&stale))
            .await
            .assert_error(409, "Conflict");
        assert_same(&app.get(&path, Some(&stale)).await, &books);
    }
    for name in [String::new(), "z".repeat(101)] {
        let r = app
            .send_json(Method::PATCH, &path, &json!({"name": name}), Some(&stale))
            .await;
        assert_fields(&r, &["name"]);
        assert_same(&app.get(&path, Some(&stale)).await, &books);
    }
    for body in [json!({"name": 5}), json!({"name": ["x"]}), json!([])] {
        app.send_json(Method::PATCH, &path, &body, Some(&stale))
            .await
            .assert_error(400, "BadRequest");
        assert_same(&app.get(&path, Some(&stale)).await, &books);
    }
    // Absent or null: unchanged.
    for body in [json!({}), json!({"name": null})] {
        let r = app
            .send_json(Method::PATCH, &path, &body, Some(&stale))
            .await;
        assert_same(&r, &books);
    }

    // Rename.
    let r = app
        .send_json(
            Method::PATCH,
            &path,
            &json!({"name": "Novels"}),
            Some(&stale),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.body["name"], "Novels");
    assert_eq!(r.body["id"], id.as_str());
    assert_eq!(r.body["created_at"], books["created_at"]);
    assert_same(&app.get(&path, Some(&stale)).await, &r.body);
    // Only its own name in another case is no conflict.
    let r = app
        .send_json(
            Method::PATCH,
            &path,
            &json!({"name": "NOVELS"}),
            Some(&stale),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.body["name"], "NOVELS");
    // The old name is free again.
    category(&app, &ann.access, "books").await;
    // Toys is untouched.
    assert_same(
        &app.get(&format!("/categories/{}", id_of(&toys)), Some(&stale))
            .await,
        &toys,
    );

    // Ids.
    let missing = format!("/categories/{}", Uuid::now_v7());
    app.get(&missing, Some(&stale))
        .await
        .assert_error(404, "NotFound");
    app.send_json(
        Method::PATCH,
        &missing,
        &json!({"name": "Ghost"}),
        Some(&stale),
    )
    .await
    .assert_error(404, "NotFound");
    app.get("/categories/not-a-uuid", Some(&stale))
        .await
        .assert_error(400, "BadRequest");
    app.send_json(
        Method::PATCH,
        "/categories/not-a-uuid",
        &json!({"name": "Ghost"}),
        Some(&stale),
    )
    .await
    .assert_error(400, "BadRequest");
    app.get("/categories/not-a-uuid", None)
        .await
        .assert_error(401, "TokenMissing");
    assert_eq!(total(&app, "/categories").await, 3);
}

async fn get_and_patch_products(b: Backend) {
    let app = spawn_app(b).await;
    let ann = app.user("ann").await;
    let stale = app.non_fresh(&ann).await.access;
    let books = id_of(&category(&app, &ann.access, "Books").await);
    let toys = id_of(&category(&app, &ann.access, "Toys").await);
    let atlas = product(&app, &ann.access, "Atlas", &books).await;
    let ball = product(&app, &ann.access, "Ball", &toys).await;
    let id = id_of(&atlas);
    let path = format!("/products/{id}");

    app.get(&path, None).await.assert_error(401, "TokenMissing");
    app.send_json(Method::PATCH, &path, &json!({"name": "Globe"}), None)
        .await
        .assert_error(401, "TokenMissing");
    app.send_json(Method::PATCH, &path, &json!({"price": "x"}), None)
        .await
        .assert_error(401, "TokenMissing");
    app.get(&path, Some(&ann.refresh))
        .await
        .assert_error(401, "TokenInvalid");
    assert_same(&app.get(&path, Some(&stale)).await, &atlas);

    // Failed updates leave the record untouched.
    let unknown_category = Uuid::now_v7().to_string();
    for (body, fields) in [
        (json!({"name": "Ball"}), None),
        (json!({"name": "BALL"}), None),
        (json!({"name": ""}), Some(vec!["name"])),
        (json!({"name": "w".repeat(101)}), Some(vec!["name"])),
        (json!({"price": 1.001}), Some(vec!["price"])),
        (json!({"price": -0.01}), Some(vec!["price"])),
        (json!({"quantity": -1}), Some(vec!["quantity"])),
        // One past the schema's maximum (2^53 - 1).
        (
            json!({"quantity": 9007199254740992_i64}),
            Some(vec!["quantity"]),
        ),
        (json!({"price": 1000000000000.01}), Some(vec!["price"])),
        (
            json!({"category_id": unknown_category}),
            Some(vec!["category_id"]),
        ),
        (
            json!({"name": "Fine", "price": -1, "quantity": -5}),
            Some(vec!["price", "quantity"]),
        ),
    ] {
        let r = app
            .send_json(Method::PATCH, &path, &body, Some(&stale))
            .await;
        match fields {
            None => r.assert_error(409, "Conflict"),
            Some(f) => assert_fields(&r, &f),
        }
        assert_same(&app.get(&path, Some(&stale)).await, &atlas);
    }
    for body in [
        json!({"price": "19.99"}),
        json!({"quantity": 1.5}),
        json!({"quantity": "3"}),
        json!({"category_id": "not-a-uuid"}),
        json!({"category_id": 7}),
        json!({"name": 1}),
        json!({"description": 2}),
        json!([]),
    ] {
        app.send_json(Method::PATCH, &path, &body, Some(&stale))
            .await
            .assert_error(400, "BadRequest");
        assert_same(&app.get(&path, Some(&stale)).await, &atlas);
    }
    // Absent or null: unchanged.
    for body in [
        json!({}),
        json!({"name": null, "description": null, "price": null, "quantity": null, "category_id": null}),
    ] {
        let r = app
            .send_json(Method::PATCH, &path, &body, Some(&stale))
            .await;
        assert_same(&r, &atlas);
    }

    // Rename only.
    let r = app
        .send_json(
            Method::PATCH,
            &path,
            &json!({"name": "Globe"}),
            Some(&stale),
        )
        .await;
    r.assert_status(200);
    let mut expected = atlas.clone();
    expected["name"] = json!("Globe");
    expected["updated_at"] = r.body["updated_at"].clone();
    assert_eq!(r.body, expected);
    assert_same(&app.get(&path, Some(&stale)).await, &expected);

    // Price, quantity, description and category; the name stays.
    let r = patch_raw(
        &app,
        &path,
        &format!(
            r#"{{"price": 0.07, "quantity": 0, "description": "Round", "category_id": "{toys}", "name": null}}"#
        ),
        Some(&stale),
    )
    .await;
    r.assert_status(200);
    assert_eq!(raw_price(&r.text), "0.07");
    assert_eq!(r.body["name"], "Globe");
    assert_eq!(r.body["quantity"], 0);
    assert_eq!(r.body["description"], "Round");
    assert_eq!(r.body["category_id"], toys.as_str());
    assert_same(&app.get(&path, Some(&stale)).await, &r.body);

    // Ball is untouched by all of it.
    assert_same(
        &app.get(&format!("/products/{}", id_of(&ball)), Some(&stale))
            .await,
        &ball,
    );

    // Ids.
    let missing = format!("/products/{}", Uuid::now_v7());
    app.get(&missing, Some(&stale))
        .await
        .assert_error(404, "NotFound");
    app.send_json(
        Method::PATCH,
        &missing,
        &json!({"name": "Ghost"}),
        Some(&stale),
    )
    .await
    .assert_error(404, "NotFound");
    app.get("/products/not-a-uuid", Some(&stale))
        .await
        .assert_error(400, "BadRequest");
    app.send_json(
        Method::PATCH,
        "/products/not-a-uuid",
        &json!({"name": "Ghost"}),
        Some(&stale),
    )
    .await
    .assert_error(400, "BadRequest");
    assert_eq!(total(&app, "/products").await, 2);
}

crate::both_backends!(get_and_patch_categories, get_and_patch_products,);
