//! Catalog prices: exact round trips, refused values leave nothing behind.

use super::*;

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

crate::both_backends!(
    prices_round_trip_exactly,
    invalid_products_are_refused_and_leave_nothing,
    prices_with_hidden_extra_decimals_are_refused,
);
