//! The catalog: optional auth listings, fresh creation, admin deletion, exact prices.
//! Shared helpers here; the tests in the submodules.

mod access;
mod listing;
mod prices;
mod reading;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Backend, Resp, SECRET, TestApp, spawn_app};

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
