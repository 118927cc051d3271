//! Administration: listing, reading, role changes, blocking, deletion, bootstrap.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;

use crate::helpers::{Resp, TestApp};

mod bootstrap;
mod deletion;
mod listing;
mod roles;

const USER_KEYS: [&str; 10] = [
    "id",
    "username",
    "email",
    "role",
    "blocked",
    "created_at",
    "updated_at",
    "email_verified",
    "pending_email",
    "mfa_enabled",
];

/// A User body: exactly the contract's fields, never a hash.
#[track_caller]
pub(crate) fn assert_user_shape(user: &Value) {
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

pub(crate) async fn patch_user(app: &TestApp, id: &str, body: Value, token: Option<&str>) -> Resp {
    app.send_json(Method::PATCH, &format!("/users/{id}"), &body, token)
        .await
}
