//! The catalog: optional auth listings, fresh creation, admin deletion, exact prices.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Backend, Resp, SECRET, TestApp, Tokens, spawn_app};

const PRODUCT_KEYS: [&str; 8] = [
    "category_id",
    "created_at",
    "description",
    "id",
    "name",
    "price",
    "quantity",
    "updated_at",
];

// ---------------------------------------------------------------- helpers

fn sorted_keys(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    keys.sort_unstable();
    keys
}

fn id_of(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_owned()
}

fn ids(r: &Resp) -> Vec<String> {
    r.body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {r:?}"))
        .iter()
        .map(id_of)
        .collect()
}

/// The literal text of the first `"price":` value in a raw JSON response.
fn raw_price(text: &str) -> String {
    let start = text
        .find("\"price\":")
        .unwrap_or_else(|| panic!("no price in {text}"))
        + "\"price\":".len();
    text[start..]
        .chars()
        .take_while(|c| !matches!(c, ',' | '}'))
        .collect::<String>()
        .trim()
        .to_owned()
}

/// A non-fresh access token (issued by a refresh).
async fn non_fresh(app: &TestApp, t: &Tokens) -> String {
    let r = app.refresh(&t.refresh).await;
    r.assert_status(200);
    r.str("access_token")
}

async fn post_raw(app: &TestApp, path: &str, body: &str, token: Option<&str>) -> Resp {
    app.send(
        app.request(Method::POST, path, token)
            .header("content-type", "application/json")
            .body(body.to_owned()),
    )
    .await
}

async fn patch_raw(app: &TestApp, path: &str, body: &str, token: Option<&str>) -> Resp {
    app.send(
        app.request(Method::PATCH, path, token)
            .header("content-type", "application/json")
            .body(body.to_owned()),
    )
    .await
}

async fn get_with_auth(app: &TestApp, path: &str, authorization: &str) -> Resp {
    app.send(
        app.client
            .get(app.url(path))
            .header("authorization", authorization),
    )
    .await
}

async fn category(app: &TestApp, fresh: &str, name: &str) -> Value {
    let r = app
        .post_json("/categories", &json!({"name": name}), Some(fresh))
        .await;
    r.assert_status(201);
    r.body
}

async fn product(app: &TestApp, fresh: &str, name: &str, category_id: &str) -> Value {
    let r = app
        .post_json(
            "/products",
            &json!({
                "name": name,
                "description": format!("About {name}"),
                "price": 9.5,
                "quantity": 3,
                "category_id": category_id,
            }),
            Some(fresh),
        )
        .await;
    r.assert_status(201);
    r.body
}

async fn total(app: &TestApp, path: &str) -> u64 {
    let r = app.get(path, None).await;
    r.assert_status(200);
    r.body["total"]
        .as_u64()
        .unwrap_or_else(|| panic!("no total: {r:?}"))
}

#[track_caller]
fn assert_fields(r: &Resp, fields: &[&str]) {
    r.assert_error(422, "ValidationFailed");
    let got: Vec<String> = sorted_keys(&r.body["fields"]);
    let mut want: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
    want.sort_unstable();
    assert_eq!(got, want, "{r:?}");
    for f in fields {
        assert!(r.body["fields"][f].is_string(), "{r:?}");
    }
}

#[track_caller]
fn assert_same(r: &Resp, expected: &Value) {
    r.assert_status(200);
    assert_eq!(&r.body, expected, "the record changed");
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A token's header and claims, changed and signed again with the right key.
fn resign(token: &str, change: impl FnOnce(&mut Value)) -> String {
    let mut it = token.split('.');
    let mut part = || -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap()).unwrap()
    };
    let header = part();
    let mut claims = part();
    change(&mut claims);
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
    );
    let sig = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(SECRET.as_bytes()),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{message}.{sig}")
}

/// The same token with its signature altered.
fn tampered(token: &str) -> String {
    let (rest, sig) = token.rsplit_once('.').unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(sig).unwrap();
    bytes[0] ^= 0x01;
    format!("{rest}.{}", URL_SAFE_NO_PAD.encode(bytes))
}

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
    let stale = non_fresh(&app, &ann).await;
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
    let stale = non_fresh(&app, &ann).await;
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
    let stale = non_fresh(&app, &ann).await;

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
    let admin_stale = non_fresh(&app, &admin).await;
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

// ---------------------------------------------------------------- read and update

async fn get_and_patch_categories(b: Backend) {
    let app = spawn_app(b).await;
    let ann = app.user("ann").await;
    let stale = non_fresh(&app, &ann).await;
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
    let stale = non_fresh(&app, &ann).await;
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

// ---------------------------------------------------------------- deletion

async fn deletion_is_for_admins(b: Backend) {
    let app = spawn_app(b).await;
    let ann = app.user("ann").await;
    let admin = app.admin().await;
    let admin_stale = non_fresh(&app, &admin).await;
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

// ---------------------------------------------------------------- prices

async fn prices_round_trip_exactly(b: Backend) {
    let app = spawn_app(b).await;
    let ann = app.user("ann").await;
    let cid = id_of(&category(&app, &ann.access, "Books").await);

    for (i, (literal, value)) in [
        ("19.99", 19.99),
        ("0", 0.0),
        ("0.1", 0.1),
        ("1234567.89", 1234567.89),
        ("20", 20.0),
        ("0.07", 0.07),
        ("4.5", 4.5),
    ]
    .into_iter()
    .enumerate()
    {
        let body = format!(
            r#"{{"name": "P{i}", "price": {literal}, "quantity": {i}, "category_id": "{cid}"}}"#
        );
        let r = post_raw(&app, "/products", &body, Some(&ann.access)).await;
        r.assert_status(201);
        assert!(
            r.text.contains(&format!("\"price\":{literal}")),
            "{literal}: {}",
            r.text
        );
        assert_eq!(raw_price(&r.text), literal, "{}", r.text);
        assert_eq!(r.body["price"].as_f64(), Some(value));
        assert_eq!(r.body["quantity"], i);

        // The same on read, one by one and in the list.
        let id = id_of(&r.body);
        let g = app.get(&format!("/products/{id}"), Some(&ann.access)).await;
        g.assert_status(200);
        assert_eq!(raw_price(&g.text), literal, "{}", g.text);
        assert_eq!(g.body["price"].as_f64(), Some(value));
    }
    let l = app.get("/products?per_page=100", Some(&ann.access)).await;
    assert!(l.text.contains("\"price\":19.99"), "{}", l.text);
    assert!(l.text.contains("\"price\":1234567.89"), "{}", l.text);
    assert!(!l.text.contains("19.98999"), "{}", l.text);
    assert_eq!(l.body["total"], 7);

    // Updating a price round-trips too.
    let id = id_of(&l.body["items"][0]);
    let path = format!("/products/{id}");
    let r = patch_raw(&app, &path, r#"{"price": 19.99}"#, Some(&ann.access)).await;
    r.assert_status(200);
    assert_eq!(raw_price(&r.text), "19.99");
    let g = app.get(&path, Some(&ann.access)).await;
    assert_eq!(raw_price(&g.text), "19.99");
}

async fn invalid_products_are_refused_and_leave_nothing(b: Backend) {
    let app = spawn_app(b).await;
    let ann = app.user("ann").await;
    let cid = id_of(&category(&app, &ann.access, "Books").await);
    let unknown = Uuid::now_v7().to_string();

    let body = |price: &str, quantity: &str, category: &str| {
        format!(
            r#"{{"name": "Thing", "price": {price}, "quantity": {quantity}, "category_id": {category}}}"#
        )
    };
    let good_cat = format!("\"{cid}\"");
    let unknown_cat = format!("\"{unknown}\"");

    // Values of the right type but invalid: 422 with the fields.
    for (raw, fields) in [
        (body("19.999", "1", &good_cat), vec!["price"]),
        (body("0.001", "1", &good_cat), vec!["price"]),
        (body("-1", "1", &good_cat), vec!["price"]),
        (body("-0.01", "1", &good_cat), vec!["price"]),
        (body("1", "-1", &good_cat), vec!["quantity"]),
        (body("1", "1", &unknown_cat), vec!["category_id"]),
        (
            body("19.999", "-1", &unknown_cat),
            vec!["category_id", "price", "quantity"],
        ),
    ] {
        let r = post_raw(&app, "/products", &raw, Some(&ann.access)).await;
        assert_fields(&r, &fields);
        assert!(r.header("location").is_none());
    }

    // Wrong types, missing fields: 400.
    for raw in [
        body("\"19.99\"", "1", &good_cat),
        body("null", "1", &good_cat),
        body("true", "1", &good_cat),
        body("1", "1.5", &good_cat),
        body("1", "\"3\"", &good_cat),
        body("1", "null", &good_cat),
        body("1", "1", "\"not-a-uuid\""),
        body("1", "1", "42"),
        body("1", "1", "null"),
        format!(r#"{{"name": "Thing", "quantity": 1, "category_id": "{cid}"}}"#),
        format!(r#"{{"name": "Thing", "price": 1, "category_id": "{cid}"}}"#),
        r#"{"name": "Thing", "price": 1, "quantity": 1}"#.to_owned(),
        format!(r#"{{"price": 1, "quantity": 1, "category_id": "{cid}"}}"#),
        format!(r#"{{"name": 3, "price": 1, "quantity": 1, "category_id": "{cid}"}}"#),
        format!(
            r#"{{"name": "Thing", "description": 3, "price": 1, "quantity": 1, "category_id": "{cid}"}}"#
        ),
        "{\"name\": ".to_owned(),
        "[]".to_owned(),
    ] {
        let r = post_raw(&app, "/products", &raw, Some(&ann.access)).await;
        r.assert_error(400, "BadRequest");
        assert!(r.header("location").is_none(), "{raw}");
    }

    // A body that is not JSON by its content type: 415.
    let r = app
        .send(
            app.request(Method::POST, "/products", Some(&ann.access))
                .header("content-type", "text/plain")
                .body(body("1", "1", &good_cat)),
        )
        .await;
    r.assert_error(415, "UnsupportedMediaType");

    // Nothing was created, for anyone.
    assert_eq!(total(&app, "/products").await, 0);
    let r = app.get("/products", Some(&ann.access)).await;
    assert_eq!(r.body["total"], 0);
    assert_eq!(r.body["items"], json!([]));

    // And the name is still free.
    let r = post_raw(
        &app,
        "/products",
        &body("1", "0", &good_cat),
        Some(&ann.access),
    )
    .await;
    r.assert_status(201);
    assert_eq!(total(&app, "/products").await, 1);
}

/// "At most 2 decimal places (more is 422)" holds for any JSON number text,
/// also when the extra digits are beyond what an `f64` can hold: such a price
/// must be refused, not silently rounded to 2 decimals.
async fn prices_with_hidden_extra_decimals_are_refused(b: Backend) {
    let app = spawn_app(b).await;
    let ann = app.user("ann").await;
    let cid = id_of(&category(&app, &ann.access, "Books").await);
    for (i, literal) in [
        "19.990000000000000001",
        "0.1000000000000000001",
        "20.000000000000000001",
        "5.0000000000000000000000001",
    ]
    .into_iter()
    .enumerate()
    {
        let body = format!(
            r#"{{"name": "P{i}", "price": {literal}, "quantity": 1, "category_id": "{cid}"}}"#
        );
        let r = post_raw(&app, "/products", &body, Some(&ann.access)).await;
        assert_eq!(
            r.status.as_u16(),
            422,
            "price {literal} has more than 2 decimal places but was accepted: {}",
            r.text
        );
        assert_fields(&r, &["price"]);
    }
    assert_eq!(total(&app, "/products").await, 0);

    // The same on update: the stored price stays.
    let p = product(&app, &ann.access, "Atlas", &cid).await;
    let path = format!("/products/{}", id_of(&p));
    let r = patch_raw(
        &app,
        &path,
        r#"{"price": 19.990000000000000001}"#,
        Some(&ann.access),
    )
    .await;
    assert_eq!(
        r.status.as_u16(),
        422,
        "price with 18 decimals accepted on update: {}",
        r.text
    );
    assert_fields(&r, &["price"]);
    assert_same(&app.get(&path, Some(&ann.access)).await, &p);
}

// ---------------------------------------------------------------- filter and pages

async fn products_filter_by_category(b: Backend) {
    let app = spawn_app(b).await;
    let ann = app.user("ann").await;
    let a = id_of(&category(&app, &ann.access, "A").await);
    let bb = id_of(&category(&app, &ann.access, "B").await);
    let empty = id_of(&category(&app, &ann.access, "Empty").await);
    let mut in_a = Vec::new();
    for i in 0..3 {
        in_a.push(id_of(
            &product(&app, &ann.access, &format!("a{i}"), &a).await,
        ));
    }
    let mut in_b = Vec::new();
    for i in 0..2 {
        in_b.push(id_of(
            &product(&app, &ann.access, &format!("b{i}"), &bb).await,
        ));
    }
    in_a.sort();
    in_b.sort();

    for (cat, want) in [(&a, &in_a), (&bb, &in_b)] {
        let r = app
            .get(&format!("/products?category_id={cat}"), Some(&ann.access))
            .await;
        r.assert_status(200);
        assert_eq!(r.body["total"], want.len());
        assert_eq!(r.body["limited"], false);
        for item in r.body["items"].as_array().unwrap() {
            assert_eq!(item["category_id"], cat.as_str());
        }
        let mut got = ids(&r);
        got.sort();
        assert_eq!(&got, want);

        // Anonymous callers can filter too (and still get summaries).
        let r = app.get(&format!("/products?category_id={cat}"), None).await;
        r.assert_status(200);
        assert_eq!(r.body["total"], want.len());
        assert_eq!(r.body["limited"], true);
        let mut got = ids(&r);
        got.sort();
        assert_eq!(&got, want);
    }

    // Filter with paging.
    let mut seen = Vec::new();
    for page in 1..=2 {
        let r = app
            .get(
                &format!("/products?category_id={a}&per_page=2&page={page}"),
                Some(&ann.access),
            )
            .await;
        r.assert_status(200);
        assert_eq!(r.body["total"], 3);
        assert_eq!(r.body["per_page"], 2);
        seen.extend(ids(&r));
    }
    seen.sort();
    assert_eq!(seen, in_a);

    // An empty or unknown category: nothing, total 0.
    for cat in [empty, Uuid::now_v7().to_string()] {
        let r = app
            .get(&format!("/products?category_id={cat}"), Some(&ann.access))
            .await;
        r.assert_status(200);
        assert_eq!(r.body["total"], 0);
        assert_eq!(r.body["items"], json!([]));
    }
    // Unfiltered: all five.
    assert_eq!(total(&app, "/products").await, 5);

    for q in ["not-a-uuid", "1", "%20"] {
        app.get(&format!("/products?category_id={q}"), Some(&ann.access))
            .await
            .assert_error(400, "BadRequest");
        app.get(&format!("/products?category_id={q}"), None)
            .await
            .assert_error(400, "BadRequest");
    }
}

async fn pagination_edges(b: Backend) {
    let app = spawn_app(b).await;
    let ann = app.user("ann").await;
    let mut categories = Vec::new();
    for i in 0..25 {
        categories.push(id_of(
            &category(&app, &ann.access, &format!("C{i:02}")).await,
        ));
    }
    let cid = categories[0].clone();
    let mut products = Vec::new();
    for i in 0..5 {
        products.push(id_of(
            &product(&app, &ann.access, &format!("P{i}"), &cid).await,
        ));
    }

    for (path, all, token) in [
        ("/categories", &categories, None),
        ("/categories", &categories, Some(ann.access.as_str())),
        ("/products", &products, None),
        ("/products", &products, Some(ann.access.as_str())),
    ] {
        let n = all.len();
        let sep = "?";
        // Defaults.
        let r = app.get(path, token).await;
        r.assert_status(200);
        assert_eq!(r.body["page"], 1);
        assert_eq!(r.body["per_page"], 20);
        assert_eq!(r.body["total"], n);
        assert_eq!(ids(&r).len(), n.min(20));

        // Walk the pages with per_page=2: disjoint, complete, stable.
        let mut seen = Vec::new();
        let pages = n.div_ceil(2);
        for page in 1..=pages {
            let r = app
                .get(&format!("{path}{sep}per_page=2&page={page}"), token)
                .await;
            r.assert_status(200);
            assert_eq!(r.body["page"], page);
            assert_eq!(r.body["per_page"], 2);
            assert_eq!(r.body["total"], n);
            seen.extend(ids(&r));
        }
        let mut sorted_seen = seen.clone();
        sorted_seen.sort();
        sorted_seen.dedup();
        let mut want = all.clone();
        want.sort();
        assert_eq!(seen.len(), n, "{path}: pages overlap or miss items");
        assert_eq!(sorted_seen, want, "{path}");
        // The same order as one big page.
        let r = app.get(&format!("{path}{sep}per_page=100"), token).await;
        r.assert_status(200);
        assert_eq!(ids(&r), seen, "{path}: order not stable");

        // Past the end: empty with the right total.
        for q in [
            format!("page={}&per_page=2", pages + 1),
            "page=2".to_owned(),
            "page=999".to_owned(),
        ] {
            if q == "page=2" && n > 20 {
                continue;
            }
            let r = app.get(&format!("{path}{sep}{q}"), token).await;
            r.assert_status(200);
            assert_eq!(r.body["items"], json!([]), "{path}?{q}");
            assert_eq!(r.body["total"], n, "{path}?{q}");
        }

        // A huge page number is no crash: an empty page (or a 400), never a 500.
        for q in [
            "page=9223372036854775807",
            "page=9223372036854775807&per_page=100",
        ] {
            let r = app.get(&format!("{path}{sep}{q}"), token).await;
            if r.status == 200 {
                assert_eq!(r.body["items"], json!([]), "{path}?{q}");
                assert_eq!(r.body["total"], n, "{path}?{q}");
            } else {
                r.assert_error(400, "BadRequest");
            }
        }

        // Bad parameters: 400.
        for q in [
            "page=99999999999999999999",
            "per_page=0",
            "per_page=101",
            "per_page=-5",
            "per_page=x",
            "page=0",
            "page=-1",
            "page=x",
            "page=2.5",
        ] {
            app.get(&format!("{path}{sep}{q}"), token)
                .await
                .assert_error(400, "BadRequest");
        }
        // per_page 1 and 100 are fine.
        for q in ["per_page=1", "per_page=100"] {
            app.get(&format!("{path}{sep}{q}"), token)
                .await
                .assert_status(200);
        }
    }
    // Categories: page 2 of 20 holds the last five.
    let r = app.get("/categories?page=2", None).await;
    r.assert_status(200);
    assert_eq!(ids(&r).len(), 5);
    assert_eq!(r.body["total"], 25);
    // Authentication comes before parameters.
    app.get("/products?per_page=0", Some("garbage"))
        .await
        .assert_error(401, "TokenInvalid");
}

crate::both_backends!(
    anonymous_listing_is_limited,
    bad_tokens_on_optional_endpoints_are_401,
    creation_needs_a_fresh_token,
    names_are_unique_and_validated,
    get_and_patch_categories,
    get_and_patch_products,
    deletion_is_for_admins,
    prices_round_trip_exactly,
    prices_with_hidden_extra_decimals_are_refused,
    invalid_products_are_refused_and_leave_nothing,
    products_filter_by_category,
    pagination_edges,
);
