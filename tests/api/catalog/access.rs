//! Catalog access: optional auth on listings, fresh tokens to create, admins to delete.

use super::*;

// ---------------------------------------------------------------- listing

async fn anonymous_listing_is_limited(b: Backend) {
    let app = spawn_app(b).await;
    let ann = app.user("ann").await;
    let c = category(&app, &ann.access, "Books").await;
    let cid = id_of(&c);
    let p1 = product(&app, &ann.access, "Atlas", &cid).await;
    let p2 = product(&app, &ann.access, "Bible", &cid).await;

    // Categories: open to everyone, the same for all.
    let anon = app.get("/categories", None).await;
    anon.assert_status(200);
    assert_eq!(anon.body["total"], 1);
    assert_eq!(anon.body["page"], 1);
    assert_eq!(anon.body["per_page"], 20);
    assert_eq!(anon.body["items"], json!([c.clone()]));
    assert_eq!(sorted_keys(&c), ["created_at", "id", "name"]);
    let authed = app.get("/categories", Some(&ann.access)).await;
    authed.assert_status(200);
    assert_eq!(authed.body, anon.body);

    // Products, anonymous: only id and name, and `limited: true`.
    let r = app.get("/products", None).await;
    r.assert_status(200);
    assert_eq!(r.body["limited"], true, "{r:?}");
    assert_eq!(r.body["total"], 2);
    assert_eq!(r.body["page"], 1);
    assert_eq!(r.body["per_page"], 20);
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    for item in items {
        assert_eq!(sorted_keys(item), ["id", "name"], "{item}");
    }
    let mut got: Vec<(String, String)> = items
        .iter()
        .map(|i| (id_of(i), i["name"].as_str().unwrap().to_owned()))
        .collect();
    got.sort();
    let mut want = vec![
        (id_of(&p1), "Atlas".to_owned()),
        (id_of(&p2), "Bible".to_owned()),
    ];
    want.sort();
    assert_eq!(got, want);
    assert!(!r.text.contains("price") && !r.text.contains("About"));

    // With a valid token (fresh or not): full products, `limited: false`.
    let stale = app.non_fresh(&ann).await.access;
    for token in [&ann.access, &stale] {
        let r = app.get("/products", Some(token)).await;
        r.assert_status(200);
        assert_eq!(r.body["limited"], false, "{r:?}");
        assert_eq!(r.body["total"], 2);
        let items = r.body["items"].as_array().unwrap();
        assert_eq!(items.len(), 2);
        for item in items {
            assert_eq!(sorted_keys(item), PRODUCT_KEYS, "{item}");
            let expected = if item["id"] == p1["id"] { &p1 } else { &p2 };
            assert_eq!(item, expected);
        }
    }
    // An admin sees full products too.
    let admin = app.admin().await;
    let r = app.get("/products", Some(&admin.access)).await;
    assert_eq!(r.body["limited"], false);
    assert_eq!(sorted_keys(&r.body["items"][0]), PRODUCT_KEYS);
}

async fn bad_tokens_on_optional_endpoints_are_401(b: Backend) {
    let app = spawn_app(b).await;
    let ann = app.user("ann").await;
    let c = category(&app, &ann.access, "Books").await;
    product(&app, &ann.access, "Atlas", &id_of(&c)).await;

    let expired = resign(&ann.access, |c| {
        c["iat"] = json!(now() - 120);
        c["nbf"] = json!(now() - 120);
        c["exp"] = json!(now() - 60);
    });
    let other_issuer = resign(&ann.access, |c| c["iss"] = json!("someone-else"));
    for path in ["/categories", "/products", "/products?page=0"] {
        for (token, code) in [
            ("garbage", "TokenInvalid"),
            ("a.b.c", "TokenInvalid"),
            (tampered(&ann.access).as_str(), "TokenInvalid"),
            (other_issuer.as_str(), "TokenInvalid"),
            (ann.refresh.as_str(), "TokenInvalid"),
            (expired.as_str(), "TokenExpired"),
        ] {
            let r = app.get(path, Some(token)).await;
            r.assert_error(401, code);
            assert!(r.body.get("items").is_none(), "{path}: {r:?}");
        }
        // Not a bearer token: TokenMissing, never anonymous.
        for header in ["Basic x", "Basic YW5uOnB3", "Bearer", "Bearer ", ""] {
            let r = get_with_auth(&app, path, header).await;
            r.assert_error(401, "TokenMissing");
        }
        // The scheme name is case-insensitive.
        if !path.contains("page=0") {
            get_with_auth(&app, path, &format!("bearer {}", ann.access))
                .await
                .assert_status(200);
        }
    }
    // A bearer scheme in another case still gets full products.
    let r = get_with_auth(&app, "/products", &format!("BEARER {}", ann.access)).await;
    r.assert_status(200);
    assert_eq!(r.body["limited"], false);

    // Revoked by logout: TokenRevoked, not a silent anonymous 200.
    let stale = app.non_fresh(&ann).await.access;
    app.get("/products", Some(&stale)).await.assert_status(200);
    app.post("/auth/logout", Some(&ann.access))
        .await
        .assert_status(204);
    for path in ["/categories", "/products"] {
        for token in [&ann.access, &stale] {
            app.get(path, Some(token))
                .await
                .assert_error(401, "TokenRevoked");
        }
    }
    // Anonymous still works.
    let r = app.get("/products", None).await;
    r.assert_status(200);
    assert_eq!(r.body["limited"], true);
}

// ---------------------------------------------------------------- creation

async fn creation_needs_a_fresh_token(b: Backend) {
    let app = spawn_app(b).await;
    let ann = app.user("ann").await;
    let stale = app.non_fresh(&ann).await.access;

    // Categories.
    for (token, status, code) in [
        (Some(stale.as_str()), 401, "FreshTokenNeeded"),
        (None, 401, "TokenMissing"),
        (Some(ann.refresh.as_str()), 401, "TokenInvalid"),
    ] {
        app.post_json("/categories", &json!({"name": "Books"}), token)
            .await
            .assert_error(status, code);
        // Freshness and authentication come before the body.
        app.post_json("/categories", &json!({"name": 5}), token)
            .await
            .assert_error(status, code);
    }
    assert_eq!(total(&app, "/categories").await, 0);

    let r = app
        .post_json("/categories", &json!({"name": "Books"}), Some(&ann.access))
        .await;
    r.assert_status(201);
    let c = r.body.clone();
    let cid = id_of(&c);
    assert_eq!(
        r.header("location"),
        Some(format!("/categories/{cid}").as_str())
    );
    assert_eq!(c["name"], "Books");
    assert!(Uuid::parse_str(&cid).is_ok());
    assert!(chrono::DateTime::parse_from_rfc3339(c["created_at"].as_str().unwrap()).is_ok());
    assert_same(
        &app.get(r.header("location").unwrap(), Some(&stale)).await,
        &c,
    );

    // Products.
    let body = json!({
        "name": "Atlas",
        "description": "Maps",
        "price": 19.99,
        "quantity": 4,
        "category_id": cid,
    });
    for (token, status, code) in [
        (Some(stale.as_str()), 401, "FreshTokenNeeded"),
        (None, 401, "TokenMissing"),
        (Some(ann.refresh.as_str()), 401, "TokenInvalid"),
    ] {
        app.post_json("/products", &body, token)
            .await
            .assert_error(status, code);
        app.post_json("/products", &json!({"price": "x"}), token)
            .await
            .assert_error(status, code);
    }
    assert_eq!(total(&app, "/products").await, 0);

    let r = app.post_json("/products", &body, Some(&ann.access)).await;
    r.assert_status(201);
    let p = r.body.clone();
    let pid = id_of(&p);
    assert_eq!(
        r.header("location"),
        Some(format!("/products/{pid}").as_str())
    );
    assert_eq!(sorted_keys(&p), PRODUCT_KEYS);
    assert_eq!(p["name"], "Atlas");
    assert_eq!(p["description"], "Maps");
    assert_eq!(p["price"], 19.99);
    assert_eq!(p["quantity"], 4);
    assert_eq!(p["category_id"], cid.as_str());
    for k in ["created_at", "updated_at"] {
        assert!(chrono::DateTime::parse_from_rfc3339(p[k].as_str().unwrap()).is_ok());
    }
    assert_same(
        &app.get(r.header("location").unwrap(), Some(&stale)).await,
        &p,
    );

    // The description is optional.
    let r = app
        .post_json(
            "/products",
            &json!({"name": "Blank", "price": 1, "quantity": 0, "category_id": cid}),
            Some(&ann.access),
        )
        .await;
    r.assert_status(201);
    assert_eq!(r.body["description"], Value::Null);
    assert_eq!(sorted_keys(&r.body), PRODUCT_KEYS);
    assert_eq!(total(&app, "/products").await, 2);

    // An admin's non-fresh token is not enough either.
    let admin = app.admin().await;
    let admin_stale = app.non_fresh(&admin).await.access;
    app.post_json("/categories", &json!({"name": "Toys"}), Some(&admin_stale))
        .await
        .assert_error(401, "FreshTokenNeeded");
    assert_eq!(total(&app, "/categories").await, 1);
}

async fn names_are_unique_and_validated(b: Backend) {
    let app = spawn_app(b).await;
    let ann = app.user("ann").await;
    let bob = app.user("bob").await;
    let books = category(&app, &ann.access, "Books").await;
    let cid = id_of(&books);

    // Duplicate category names, case-insensitively, by anyone.
    for name in ["Books", "books", "BOOKS", "bOoKs"] {
        app.post_json("/categories", &json!({"name": name}), Some(&bob.access))
            .await
            .assert_error(409, "Conflict");
    }
    let l = app.get("/categories", None).await;
    assert_eq!(l.body["total"], 1);
    assert_eq!(l.body["items"], json!([books.clone()]));

    // Case-insensitive beyond ASCII too.
    let buecher = category(&app, &ann.access, "Bücher").await;
    app.post_json("/categories", &json!({"name": "BÜCHER"}), Some(&bob.access))
        .await
        .assert_error(409, "Conflict");
    app.delete(
        &format!("/categories/{}", id_of(&buecher)),
        Some(&app.admin().await.access),
    )
    .await
    .assert_status(204);

    // Category name validation.
    for name in [String::new(), "x".repeat(101), "ü".repeat(101)] {
        let r = app
            .post_json("/categories", &json!({"name": name}), Some(&ann.access))
            .await;
        assert_fields(&r, &["name"]);
    }
    for body in [
        json!({"name": 5}),
        json!({"name": null}),
        json!({}),
        json!([]),
    ] {
        app.post_json("/categories", &body, Some(&ann.access))
            .await
            .assert_error(400, "BadRequest");
    }
    assert_eq!(total(&app, "/categories").await, 1);
    let umlauts = "ü".repeat(100);
    let r = app
        .post_json("/categories", &json!({"name": umlauts}), Some(&ann.access))
        .await;
    r.assert_status(201);
    assert_eq!(r.body["name"], umlauts.as_str());
    category(&app, &ann.access, "X").await;
    assert_eq!(total(&app, "/categories").await, 3);

    // Products: unique names across the catalog, case-insensitively.
    let toys = id_of(&category(&app, &ann.access, "Toys").await);
    let pen = product(&app, &ann.access, "Pen", &cid).await;
    for (name, category_id) in [("Pen", &cid), ("PEN", &cid), ("pen", &toys)] {
        let r = app
            .post_json(
                "/products",
                &json!({"name": name, "price": 1, "quantity": 1, "category_id": category_id}),
                Some(&bob.access),
            )
            .await;
        r.assert_error(409, "Conflict");
    }
    for name in [String::new(), "y".repeat(101)] {
        let r = app
            .post_json(
                "/products",
                &json!({"name": name, "price": 1, "quantity": 1, "category_id": cid}),
                Some(&ann.access),
            )
            .await;
        assert_fields(&r, &["name"]);
    }
    let l = app.get("/products", Some(&ann.access)).await;
    assert_eq!(l.body["total"], 1);
    assert_eq!(l.body["items"], json!([pen]));
    let r = app
        .post_json(
            "/products",
            &json!({"name": umlauts, "price": 1, "quantity": 1, "category_id": cid}),
            Some(&ann.access),
        )
        .await;
    r.assert_status(201);
    assert_eq!(r.body["name"], umlauts.as_str());
    assert_eq!(total(&app, "/products").await, 2);
}

// ---------------------------------------------------------------- deletion

async fn deletion_is_for_admins(b: Backend) {
    let app = spawn_app(b).await;
    let ann = app.user("ann").await;
    let admin = app.admin().await;
    let admin_stale = app.non_fresh(&admin).await.access;
    let books = category(&app, &ann.access, "Books").await;
    let cid = id_of(&books);
    let atlas = product(&app, &ann.access, "Atlas", &cid).await;
    let bible = product(&app, &ann.access, "Bible", &cid).await;
    let cpath = format!("/categories/{cid}");
    let ppath = format!("/products/{}", id_of(&atlas));

    // Not an admin: 403 AdminRequired (role before parameters); no token: 401.
    for path in [
        cpath.as_str(),
        ppath.as_str(),
        "/categories/not-a-uuid",
        "/products/not-a-uuid",
    ] {
        app.delete(path, Some(&ann.access))
            .await
            .assert_error(403, "AdminRequired");
        app.delete(path, None)
            .await
            .assert_error(401, "TokenMissing");
        app.delete(path, Some(&admin.refresh))
            .await
            .assert_error(401, "TokenInvalid");
    }
    assert_same(&app.get(&cpath, Some(&ann.access)).await, &books);
    assert_same(&app.get(&ppath, Some(&ann.access)).await, &atlas);

    // A category with products: 409, and it stays (products too).
    let r = app.delete(&cpath, Some(&admin.access)).await;
    r.assert_error(409, "Conflict");
    assert_same(&app.get(&cpath, Some(&ann.access)).await, &books);
    assert_eq!(total(&app, "/categories").await, 1);
    assert_eq!(total(&app, "/products").await, 2);

    // Admin deletes the products (a non-fresh admin token is enough).
    let r = app.delete(&ppath, Some(&admin_stale)).await;
    r.assert_status(204);
    assert!(r.text.is_empty(), "204 with a body: {r:?}");
    app.get(&ppath, Some(&ann.access))
        .await
        .assert_error(404, "NotFound");
    app.delete(&ppath, Some(&admin.access))
        .await
        .assert_error(404, "NotFound");
    // Still one product left.
    app.delete(&cpath, Some(&admin.access))
        .await
        .assert_error(409, "Conflict");
    assert_same(&app.get(&cpath, Some(&ann.access)).await, &books);
    app.delete(&format!("/products/{}", id_of(&bible)), Some(&admin.access))
        .await
        .assert_status(204);
    assert_eq!(total(&app, "/products").await, 0);

    // Now the empty category can go.
    let r = app.delete(&cpath, Some(&admin_stale)).await;
    r.assert_status(204);
    assert!(r.text.is_empty());
    app.get(&cpath, Some(&ann.access))
        .await
        .assert_error(404, "NotFound");
    app.delete(&cpath, Some(&admin.access))
        .await
        .assert_error(404, "NotFound");
    assert_eq!(total(&app, "/categories").await, 0);
    // Its name is free again.
    category(&app, &ann.access, "Books").await;

    // Unknown and malformed ids.
    for path in ["/categories", "/products"] {
        app.delete(&format!("{path}/{}", Uuid::now_v7()), Some(&admin.access))
            .await
            .assert_error(404, "NotFound");
        app.delete(&format!("{path}/not-a-uuid"), Some(&admin.access))
            .await
            .assert_error(400, "BadRequest");
    }
}

crate::both_backends!(
    anonymous_listing_is_limited,
    bad_tokens_on_optional_endpoints_are_401,
    creation_needs_a_fresh_token,
    names_are_unique_and_validated,
    deletion_is_for_admins,
);
