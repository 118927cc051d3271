//! Request bodies: arbitrary bytes as the JSON body of the real endpoints,
//! through the whole application in-process (`tessera::app`: routing,
//! authentication, poem-openapi body parsing, our `Text`/`Price` types, the
//! validation and money rules, the database, error rendering).
//!
//! Input: one selector byte, then the body.
//! - selector bits 0-3: the operation (table `OPS`, modulo its length);
//! - selector bits 4-6: the Content-Type (0-4 `application/json`,
//!   5 with `; charset=utf-8`, 6 `text/plain`, 7 none);
//! - `@CATEGORY@` in the body becomes the id of an existing category.
//!
//! Checked for every input: no panic anywhere (libFuzzer aborts on any
//! panic, even one the service's CatchPanic would turn into a 500), no 5xx,
//! only the statuses API.md allows for the operation, error bodies of
//! API.md's shape with the code that belongs to the status, success bodies
//! that echo what was set (names, usernames, prices as exact decimals).
//! The same bytes also go straight through `ParseFromJSON` of every body
//! type and the validation and money rules (prices round-trip via cents).

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use poem::http::Method;
use poem_openapi::types::ParseFromJSON;
use serde_json::Value;
use tessera::{
    api::{auth, catalog, email, employees, users},
    mail::links,
    money, validation,
};
use tessera_fuzz::app::{App, CATEGORY_PLACEHOLDER, Ids};

struct Op {
    name: &'static str,
    method: Method,
    path: fn(&Ids) -> String,
    auth: bool,
    success: u16,
    /// Error statuses allowed besides 400, 409, 413, 415 and 422.
    also: &'static [u16],
    /// Fields a success response must return as the request set them.
    echoes: &'static [&'static str],
}

fn fixed(p: &'static str) -> fn(&Ids) -> String {
    // Non-capturing closures only: one per path.
    match p {
        "/auth/register" => |_| "/auth/register".into(),
        "/auth/login" => |_| "/auth/login".into(),
        "/users/me" => |_| "/users/me".into(),
        "/users/me/password" => |_| "/users/me/password".into(),
        "/employees" => |_| "/employees".into(),
        "/categories" => |_| "/categories".into(),
        "/products" => |_| "/products".into(),
        "/auth/password/forgot" => |_| "/auth/password/forgot".into(),
        "/auth/password/reset" => |_| "/auth/password/reset".into(),
        "/auth/email/verify" => |_| "/auth/email/verify".into(),
        _ => unreachable!(),
    }
}

static OPS: LazyLock<Vec<Op>> = LazyLock::new(|| {
    const USER: &[&str] = &["username", "email"];
    const EMPLOYEE: &[&str] = &["name", "position"];
    const PRODUCT: &[&str] = &["name", "description", "quantity"];
    let op = |name, method, path, auth, success, also, echoes| Op {
        name,
        method,
        path,
        auth,
        success,
        also,
        echoes,
    };
    vec![
        op(
            "register",
            Method::POST,
            fixed("/auth/register"),
            false,
            201,
            &[],
            USER,
        ),
        // 401 InvalidCredentials, 403 UserBlocked (the other user may be
        // blocked by update_user); never 429 with the harness's limits.
        op(
            "login",
            Method::POST,
            fixed("/auth/login"),
            false,
            200,
            &[401, 403],
            &[],
        ),
        op(
            "patch_me",
            Method::PATCH,
            fixed("/users/me"),
            true,
            200,
            &[],
            USER,
        ),
        op(
            "put_me",
            Method::PUT,
            fixed("/users/me"),
            true,
            200,
            &[],
            USER,
        ),
        // 401 InvalidCredentials: wrong current password.
        op(
            "change_password",
            Method::PUT,
            fixed("/users/me/password"),
            true,
            204,
            &[401],
            &[],
        ),
        op(
            "update_user",
            Method::PATCH,
            |ids| format!("/users/{}", ids.other_user),
            true,
            200,
            &[],
            &["role", "blocked"],
        ),
        op(
            "create_employee",
            Method::POST,
            fixed("/employees"),
            true,
            201,
            &[],
            EMPLOYEE,
        ),
        op(
            "patch_employee",
            Method::PATCH,
            |ids| format!("/employees/{}", ids.employee),
            true,
            200,
            &[],
            EMPLOYEE,
        ),
        op(
            "put_employee",
            Method::PUT,
            |ids| format!("/employees/{}", ids.employee),
            true,
            200,
            &[],
            EMPLOYEE,
        ),
        op(
            "create_category",
            Method::POST,
            fixed("/categories"),
            true,
            201,
            &[],
            &["name"],
        ),
        op(
            "update_category",
            Method::PATCH,
            |ids| format!("/categories/{}", ids.category),
            true,
            200,
            &[],
            &["name"],
        ),
        op(
            "create_product",
            Method::POST,
            fixed("/products"),
            true,
            201,
            &[],
            PRODUCT,
        ),
        op(
            "update_product",
            Method::PATCH,
            |ids| format!("/products/{}", ids.product),
            true,
            200,
            &[],
            PRODUCT,
        ),
        op(
            "forgot_password",
            Method::POST,
            fixed("/auth/password/forgot"),
            false,
            202,
            &[],
            &[],
        ),
        // The one-time token parser: any token the fuzzer makes is
        // `LinkInvalid` (a 400 with that code), never a 5xx.
        op(
            "reset_password",
            Method::POST,
            fixed("/auth/password/reset"),
            false,
            204,
            &[],
            &[],
        ),
        op(
            "verify_email",
            Method::POST,
            fixed("/auth/email/verify"),
            false,
            200,
            &[],
            &[],
        ),
    ]
});

static APP: LazyLock<App> = LazyLock::new(App::new);

fn replace_placeholder(body: &[u8], id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 32);
    let mut i = 0;
    while i < body.len() {
        if body[i..].starts_with(CATEGORY_PLACEHOLDER) {
            out.extend_from_slice(id.as_bytes());
            i += CATEGORY_PLACEHOLDER.len();
        } else {
            out.push(body[i]);
            i += 1;
        }
    }
    out
}

/// The pure layer: every body type's parser and every rule, on any JSON.
fn parse_and_rules(v: &Value) {
    let _ = auth::Register::parse_from_json(Some(v.clone()));
    let _ = auth::Login::parse_from_json(Some(v.clone()));
    let _ = users::UpdateMe::parse_from_json(Some(v.clone()));
    let _ = users::ChangePassword::parse_from_json(Some(v.clone()));
    let _ = users::AdminUpdate::parse_from_json(Some(v.clone()));
    let _ = employees::NewEmployee::parse_from_json(Some(v.clone()));
    let _ = employees::EmployeeChange::parse_from_json(Some(v.clone()));
    let _ = catalog::CategoryName::parse_from_json(Some(v.clone()));
    let _ = catalog::CategoryChange::parse_from_json(Some(v.clone()));
    let _ = catalog::NewProduct::parse_from_json(Some(v.clone()));
    let _ = catalog::ProductChange::parse_from_json(Some(v.clone()));
    let _ = email::ForgotPassword::parse_from_json(Some(v.clone()));
    let _ = email::ResetPassword::parse_from_json(Some(v.clone()));
    let _ = email::VerifyEmail::parse_from_json(Some(v.clone()));
    walk(v);
}

fn walk(v: &Value) {
    match v {
        Value::String(s) => {
            let _ = validation::username(s);
            let _ = validation::email(s);
            let _ = validation::password(s);
            let _ = validation::name(s);
            if links::well_formed(s) {
                assert_eq!(s.len(), links::TOKEN_LEN, "{s:?}");
            }
        }
        Value::Number(n) => {
            if let Ok(cents) = money::to_cents(n) {
                assert!(cents >= 0, "negative cents from {n}");
                let back = money::from_cents(cents);
                assert_eq!(
                    money::to_cents(&back),
                    Ok(cents),
                    "{n} -> {cents} -> {back}"
                );
            }
        }
        Value::Array(a) => a.iter().for_each(walk),
        Value::Object(o) => o.values().for_each(walk),
        Value::Bool(_) | Value::Null => {}
    }
}

fn error_code_for(status: u16) -> Option<&'static str> {
    Some(match status {
        400 => "BadRequest",
        403 => return None, // AdminRequired or UserBlocked
        401 => "InvalidCredentials",
        404 => "NotFound",
        409 => "Conflict",
        413 => "PayloadTooLarge",
        415 => "UnsupportedMediaType",
        422 => "ValidationFailed",
        429 => "TooManyRequests",
        _ => return None,
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let app = &*APP;
    let op = &OPS[usize::from(selector & 0x0f) % OPS.len()];
    let content_type = match (selector >> 4) & 7 {
        0..=4 => Some("application/json"),
        5 => Some("application/json; charset=utf-8"),
        6 => Some("text/plain"),
        _ => None,
    };
    let body = replace_placeholder(body, &app.ids.category);
    let sent: Option<Value> = serde_json::from_slice(&body).ok();
    let r = app.request(
        op.method.clone(),
        &(op.path)(&app.ids),
        op.auth,
        content_type,
        body,
    );
    // After the request, so that a panic shows through the service first.
    if let Some(v) = &sent {
        parse_and_rules(v);
    }
    let status = r.status.as_u16();
    let what = format!(
        "{} {} -> {status}: {}",
        op.name,
        op.method,
        String::from_utf8_lossy(&r.body)
    );
    assert!(status < 500, "server error: {what}");
    assert!(
        status == op.success
            || [400, 409, 413, 415, 422].contains(&status)
            || op.also.contains(&status),
        "undocumented status: {what}"
    );
    if status == 204 {
        assert!(r.body.is_empty(), "204 with a body: {what}");
    } else {
        let ct = r.content_type.as_deref().unwrap_or("");
        assert!(
            ct.starts_with("application/json"),
            "content type {ct:?}: {what}"
        );
    }
    let got = if status == 204 {
        Value::Null
    } else {
        r.json().unwrap_or_else(|| panic!("not JSON: {what}"))
    };

    if status >= 400 {
        let code = got["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no code: {what}"));
        assert!(got["message"].is_string(), "no message: {what}");
        let link_op = matches!(op.name, "reset_password" | "verify_email");
        if status == 400 && link_op && code == "LinkInvalid" {
            // A token that parsed as text but opens nothing.
        } else if let Some(expected) = error_code_for(status) {
            assert_eq!(code, expected, "{what}");
        }
        if status == 422 {
            assert!(
                got["fields"].as_object().is_some_and(|f| !f.is_empty()),
                "422 without fields: {what}"
            );
        }
        return;
    }

    // Success: what was set is what comes back.
    assert!(got.get("password_hash").is_none(), "hash leaked: {what}");
    if let Some(Value::Object(req)) = &sent {
        for field in op.echoes {
            match req.get(*field) {
                // Emails come back in NFC (the stored form); a change of
                // the caller's address waits in `pending_email`.
                Some(Value::String(e)) if *field == "email" => {
                    let stored = validation::email_as_stored(e);
                    assert!(
                        got["email"].as_str() == Some(stored.as_str())
                            || got["pending_email"].as_str() == Some(stored.as_str()),
                        "email not as stored: {what}"
                    )
                }
                Some(v @ (Value::String(_) | Value::Bool(_))) => {
                    assert_eq!(&got[*field], v, "{field} not as set: {what}")
                }
                Some(Value::Number(n)) => {
                    assert_eq!(
                        got[*field].as_i64(),
                        n.as_i64(),
                        "{field} not as set: {what}"
                    )
                }
                _ => {}
            }
        }
        if op.name.ends_with("product")
            && let (Some(Value::Number(p)), Some(Value::Number(q))) =
                (req.get("price"), got.get("price"))
        {
            assert_eq!(
                money::to_cents(p),
                money::to_cents(q),
                "price changed: {what}"
            );
        }
    }
    match op.name {
        "patch_me" | "put_me" => {
            let username = got["username"].as_str().expect("a User has a username");
            app.set_username(username);
        }
        "change_password" => {
            // The fuzzer found the current password: follow the change,
            // and the new password must log in.
            let new = sent
                .as_ref()
                .and_then(|v| v["new_password"].as_str())
                .expect("204 needs new_password");
            app.set_password(new);
            if let Err(r) = app.login() {
                panic!(
                    "login with the new password failed: {} {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                );
            }
        }
        _ => {}
    }
});
