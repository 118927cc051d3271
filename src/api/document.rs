//! The OpenAPI document as served at `/openapi.json` and printed by
//! `tessera openapi`: poem-openapi's, plus the response links (OpenAPI 3
//! `links`) it cannot express. Links tell clients, and schemathesis's
//! stateful phase, how one answer feeds the next call: register -> login
//! -> me -> refresh, and a created resource -> its reads, changes, delete.

use serde_json::{Value, json};

/// One link: from `(path, method, status)` to `operation_id`, with the
/// link's `parameters` and `requestBody` runtime expressions.
struct Link {
    from: (&'static str, &'static str, &'static str),
    name: &'static str,
    operation_id: &'static str,
    parameters: Value,
    request_body: Option<Value>,
}

fn links() -> Vec<Link> {
    let access = || json!({"header.Authorization": "Bearer {$response.body#/access_token}"});
    let refresh = || json!({"header.Authorization": "Bearer {$response.body#/refresh_token}"});
    let id = || json!({"path.id": "$response.body#/id"});
    let link = |from, name, operation_id, parameters| Link {
        from,
        name,
        operation_id,
        parameters,
        request_body: None,
    };
    const REGISTER: (&str, &str, &str) = ("/auth/register", "post", "201");
    const LOGIN: (&str, &str, &str) = ("/auth/login", "post", "200");
    const REFRESH: (&str, &str, &str) = ("/auth/refresh", "post", "200");
    const EMPLOYEE: (&str, &str, &str) = ("/employees", "post", "201");
    const CATEGORY: (&str, &str, &str) = ("/categories", "post", "201");
    const PRODUCT: (&str, &str, &str) = ("/products", "post", "201");
    vec![
        Link {
            from: REGISTER,
            name: "Login",
            operation_id: "login",
            parameters: json!({}),
            request_body: Some(json!({
                "email": "$request.body#/email",
                "password": "$request.body#/password",
            })),
        },
        link(REGISTER, "GetUser", "get_user", id()),
        link(LOGIN, "GetMe", "get_me", access()),
        link(LOGIN, "Verify", "verify", access()),
        link(LOGIN, "ListSessions", "list_sessions", access()),
        link(LOGIN, "Refresh", "refresh", refresh()),
        link(LOGIN, "Logout", "logout", access()),
        link(REFRESH, "GetMe", "get_me", access()),
        link(REFRESH, "Refresh", "refresh", refresh()),
        link(REFRESH, "Logout", "logout", access()),
        link(EMPLOYEE, "GetEmployee", "get_employee", id()),
        link(EMPLOYEE, "UpdateEmployee", "update_employee", id()),
        link(EMPLOYEE, "PutEmployee", "put_employee", id()),
        link(EMPLOYEE, "DeleteEmployee", "delete_employee", id()),
        link(CATEGORY, "GetCategory", "get_category", id()),
        link(CATEGORY, "UpdateCategory", "update_category", id()),
        link(CATEGORY, "DeleteCategory", "delete_category", id()),
        Link {
            from: CATEGORY,
            name: "CreateProduct",
            operation_id: "create_product",
            parameters: json!({}),
            request_body: Some(json!({"category_id": "$response.body#/id"})),
        },
        link(PRODUCT, "GetProduct", "get_product", id()),
        link(PRODUCT, "UpdateProduct", "update_product", id()),
        link(PRODUCT, "DeleteProduct", "delete_product", id()),
    ]
}

/// The error statuses each operation can answer. poem-openapi gives every
/// operation all of `ApiError`'s; generated clients and Swagger UI then
/// show a 401 on register and a 409 on GET /users/me. Declaring more than
/// can happen is harmless, fewer is a bug schemathesis reports
/// (status_code_conformance): when unsure, a status stays.
fn errors_of(operation_id: &str) -> Option<&'static [u16]> {
    // Every operation can fail with 500 (a bug) and 503 (database or token
    // store unreachable); a body brings 400/413/415/422.
    Some(match operation_id {
        "register" => &[400, 409, 413, 415, 422, 429, 500, 503],
        "login" => &[400, 401, 403, 413, 415, 422, 429, 500, 503],
        "refresh" | "logout" | "logout_all" | "verify" | "list_sessions" => &[401, 500, 503],
        // 409: the last unblocked admin.
        "delete_me" => &[401, 409, 500, 503],
        "get_me" => &[401, 404, 500, 503],
        "delete_session" | "get_employee" | "delete_employee" | "get_category" | "get_product" => {
            &[400, 401, 404, 500, 503]
        }
        // 429: an address change's mail limits.
        "update_me" | "put_me" => &[400, 401, 409, 413, 415, 422, 429, 500, 503],
        "create_category" | "create_product" => &[400, 401, 409, 413, 415, 422, 500, 503],
        "change_password" => &[400, 401, 413, 415, 422, 429, 500, 503],
        "browser_login" => &[400, 401, 403, 404, 413, 415, 422, 429, 500, 503],
        "browser_refresh" | "browser_logout" => &[401, 403, 404, 500, 503],
        "forgot_password" => &[400, 413, 415, 422, 429, 500, 503],
        // 401 and 403: a wrong or missing second-factor code.
        "reset_password" => &[400, 401, 403, 413, 415, 422, 429, 500, 503],
        "enroll_totp" => &[401, 409, 500, 503],
        "confirm_totp" => &[400, 401, 404, 409, 413, 415, 422, 429, 500, 503],
        "delete_totp" | "regenerate_recovery_codes" => {
            &[400, 401, 404, 413, 415, 422, 429, 500, 503]
        }
        "verify_mfa" => &[400, 401, 413, 415, 422, 429, 500, 503],
        "browser_verify_mfa" => &[400, 401, 404, 413, 415, 422, 429, 500, 503],
        "delete_user_mfa" => &[400, 401, 403, 404, 500, 503],
        "verify_email" => &[400, 409, 413, 415, 429, 500, 503],
        "resend_verification" => &[401, 409, 429, 500, 503],
        "list_users" => &[400, 401, 403, 500, 503],
        "get_user" | "delete_product" => &[400, 401, 403, 404, 500, 503],
        "delete_user" => &[400, 401, 403, 404, 409, 500, 503],
        "update_user" => &[400, 401, 403, 404, 409, 413, 415, 422, 500, 503],
        "list_employees" | "list_categories" | "list_products" => &[400, 401, 500, 503],
        "create_employee" => &[400, 401, 413, 415, 422, 500, 503],
        "update_employee" | "put_employee" => &[400, 401, 404, 413, 415, 422, 500, 503],
        "update_category" | "update_product" => &[400, 401, 404, 409, 413, 415, 422, 500, 503],
        "delete_category" => &[400, 401, 403, 404, 409, 500, 503],
        "healthz" | "reset_password_page" | "verify_email_page" => &[500],
        "readyz" => &[500, 503],
        "jwks" => &[404, 500],
        _ => return None,
    })
}

/// Python member names for `ErrorCode` (`TOKEN_REVOKED`, not
/// `TOKENREVOKED`): openapi-python-client reads `x-enum-varnames`.
fn enum_varnames(doc: &mut Value) {
    let Some(code) = doc.pointer_mut("/components/schemas/ErrorCode") else {
        return;
    };
    let names: Vec<Value> = code["enum"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|v| {
            let mut name = String::new();
            for (i, c) in v.char_indices() {
                if c.is_uppercase() && i > 0 {
                    name.push('_');
                }
                name.push(c.to_ascii_uppercase());
            }
            Value::String(name)
        })
        .collect();
    code["x-enum-varnames"] = Value::Array(names);
}

/// `application/json` for poem-openapi's `application/json; charset=utf-8`:
/// the same media type to a server, but tools that look for keys ending in
/// `/json` (openapi-fetch's JSON helpers) find nothing in the long form.
fn plain_json(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(content) = map.get_mut("content").and_then(Value::as_object_mut)
                && let Some(schema) = content.remove("application/json; charset=utf-8")
            {
                content.insert("application/json".to_owned(), schema);
            }
            map.values_mut().for_each(plain_json);
        }
        Value::Array(items) => items.iter_mut().for_each(plain_json),
        _ => {}
    }
}

/// Output fields that are always sent, `null` when empty, are required
/// (poem-openapi makes every `Option` optional): clients then type them
/// `str | None`, not `str | None | Unset`. And `token_type` is only ever
/// "Bearer".
fn output_shapes(doc: &mut Value) {
    let schemas = &mut doc["components"]["schemas"];
    for (name, fields) in [
        ("Product", &["description"][..]),
        ("Session", &["user_agent", "ip"][..]),
    ] {
        if let Some(required) = schemas[name]["required"].as_array_mut() {
            for f in fields {
                if !required.iter().any(|r| r == f) {
                    required.push(Value::from(*f));
                }
            }
        }
    }
    if let Some(token_type) = schemas["TokenPair"]["properties"]["token_type"].as_object_mut() {
        token_type.insert("enum".to_owned(), json!(["Bearer"]));
    }
}

/// The document as a JSON value.
pub fn value() -> Value {
    let mut doc: Value = serde_json::from_str(&super::service().spec()).unwrap_or(Value::Null);
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (method, op) in paths
            .values_mut()
            .filter_map(Value::as_object_mut)
            .flat_map(|item| item.iter_mut())
        {
            let Some(errors) = op["operationId"].as_str().and_then(errors_of) else {
                continue;
            };
            // 403 `CsrfFailed`: an unsafe method authenticated by the cookie.
            let csrf = method != "get"
                && op["security"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|r| r.get("accessCookie").is_some()));
            if let Some(responses) = op["responses"].as_object_mut() {
                // 400 everywhere: any request with two `Authorization`
                // headers (API.md "ambiguous requests").
                responses.retain(|status, _| {
                    status.parse::<u16>().map_or(true, |s| {
                        s <= 400 || errors.contains(&s) || (csrf && s == 403)
                    })
                });
            }
        }
    }
    enum_varnames(&mut doc);
    output_shapes(&mut doc);
    plain_json(&mut doc);
    for l in links() {
        let (path, method, status) = l.from;
        let Some(response) = doc
            .pointer_mut(&format!(
                "/paths/{}/{method}/responses/{status}",
                escape(path)
            ))
            .and_then(Value::as_object_mut)
        else {
            continue; // the unit test below catches a link whose source is gone
        };
        let mut definition = json!({"operationId": l.operation_id});
        if l.parameters.as_object().is_some_and(|p| !p.is_empty()) {
            definition["parameters"] = l.parameters;
        }
        if let Some(body) = l.request_body {
            definition["requestBody"] = body;
        }
        let links = response
            .entry("links")
            .or_insert_with(|| json!({}))
            .as_object_mut();
        if let Some(links) = links {
            links.insert(l.name.to_owned(), definition);
        }
    }
    doc
}

/// The document as the JSON text served at `/openapi.json`.
pub fn json() -> String {
    serde_json::to_string(&value()).unwrap_or_default()
}

/// The document as YAML, made from the JSON value rather than by
/// poem-openapi's `spec_yaml`: with serde_json's `arbitrary_precision`
/// (exact prices) serde_yaml writes a number inside a schema (`default`,
/// `example`) as a private map.
pub fn yaml() -> String {
    serde_yaml::to_string(&yaml_of(value())).unwrap_or_default()
}

fn yaml_of(value: Value) -> serde_yaml::Value {
    use serde_yaml::Value as Y;
    match value {
        Value::Null => Y::Null,
        Value::Bool(b) => Y::Bool(b),
        Value::Number(n) => {
            if let Some(i) = n.as_u64() {
                Y::Number(i.into())
            } else if let Some(i) = n.as_i64() {
                Y::Number(i.into())
            } else {
                Y::Number(n.as_f64().unwrap_or(0.0).into())
            }
        }
        Value::String(s) => Y::String(s),
        Value::Array(items) => Y::Sequence(items.into_iter().map(yaml_of).collect()),
        Value::Object(map) => Y::Mapping(
            map.into_iter()
                .map(|(k, v)| (Y::String(k), yaml_of(v)))
                .collect(),
        ),
    }
}

/// A JSON pointer token (RFC 6901).
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_link_has_its_source_and_target() {
        let doc = value();
        let mut operation_ids = Vec::new();
        for item in doc["paths"]
            .as_object()
            .into_iter()
            .flat_map(|p| p.values())
        {
            for op in item.as_object().into_iter().flat_map(|m| m.values()) {
                if let Some(id) = op["operationId"].as_str() {
                    operation_ids.push(id.to_owned());
                }
            }
        }
        for id in &operation_ids {
            assert!(
                errors_of(id).is_some(),
                "{id}: list the errors it can answer"
            );
        }
        for l in links() {
            let (path, method, status) = l.from;
            let pointer = format!(
                "/paths/{}/{method}/responses/{status}/links/{}",
                escape(path),
                l.name
            );
            let link = doc.pointer(&pointer);
            assert!(link.is_some(), "{pointer} missing");
            assert!(
                operation_ids.iter().any(|id| id == l.operation_id),
                "link {} targets unknown operation {}",
                l.name,
                l.operation_id
            );
        }
    }
}
