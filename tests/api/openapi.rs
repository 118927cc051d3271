//! The OpenAPI document: committed copy up to date, paths and schemes listed.

#[test]
fn committed_openapi_yaml_is_current() {
    let generated = tessera::openapi_yaml();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.yaml");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/openapi.yaml is stale: run `cargo run -- openapi > openapi/openapi.yaml`"
    );
}

#[test]
fn document_lists_the_endpoints_and_error_schema() {
    let spec: serde_json::Value = serde_yaml::from_str(&tessera::openapi_yaml()).unwrap();
    let paths = spec["paths"].as_object().expect("paths");
    let expected = [
        ("/auth/register", "post"),
        ("/auth/login", "post"),
        ("/auth/refresh", "post"),
        ("/auth/logout", "post"),
        ("/auth/logout-all", "post"),
        ("/auth/verify", "get"),
        ("/auth/sessions", "get"),
        ("/auth/sessions/{id}", "delete"),
        ("/users/me", "get"),
        ("/users/me", "patch"),
        ("/users/me", "put"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    ];
    for (path, method) in expected {
        let op = &paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} missing from the OpenAPI document"))[method];
        assert!(op.is_object(), "{method} {path} missing");
        assert!(
            op["operationId"].is_string(),
            "{method} {path} has no operationId"
        );
    }
    for hidden in ["/docs", "/openapi.json", "/metrics"] {
        assert!(!paths.contains_key(hidden), "{hidden} must not be listed");
    }
    // Protected operations show their bearer requirement and error schema.
    let me = &paths["/users/me"]["get"];
    assert!(me["security"].to_string().contains("accessToken"));
    let unauthorized = &me["responses"]["401"]["content"]["application/json"]["schema"]["$ref"];
    assert_eq!(unauthorized, "#/components/schemas/ErrorBody");
    let schemes = &spec["components"]["securitySchemes"];
    assert_eq!(schemes["accessToken"]["scheme"], "bearer");
    assert_eq!(schemes["refreshToken"]["scheme"], "bearer");
    let codes = spec["components"]["schemas"]["ErrorCode"]["enum"].to_string();
    for code in [
        "TokenMissing",
        "TokenReused",
        "ValidationFailed",
        "ServiceUnavailable",
    ] {
        assert!(codes.contains(code), "{code} not in ErrorCode");
    }
}

/// What generated clients (openapi-python-client, openapi-typescript) and
/// schemathesis need from the document; scripts/client-* use it for real.
#[test]
fn document_is_precise_for_generators() {
    let spec: serde_json::Value = serde_yaml::from_str(&tessera::openapi_yaml()).unwrap();
    let schemas = &spec["components"]["schemas"];
    let text = spec.to_string();
    // A plain reference: an `allOf` wrapper made generators drop every
    // error response (openapi-python-client 0.29: "Could not find reference").
    assert_eq!(
        schemas["ErrorBody"]["properties"]["code"],
        serde_json::json!({"$ref": "#/components/schemas/ErrorCode"})
    );
    assert!(!text.contains("allOf"), "no allOf anywhere");

    // Every request body has an example (Swagger UI prefills it).
    let resolve = |schema: &serde_json::Value| -> serde_json::Value {
        match schema["$ref"].as_str() {
            Some(r) => schemas[r.trim_start_matches("#/components/schemas/")].clone(),
            None => schema.clone(),
        }
    };
    let mut bodies = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Some(content) = op["requestBody"]["content"].as_object() else {
                continue;
            };
            for media in content.values() {
                let schema = resolve(&media["schema"]);
                let branches = match schema["oneOf"].as_array() {
                    Some(b) => b.iter().map(&resolve).collect(),
                    None => vec![schema],
                };
                for b in branches {
                    bodies += 1;
                    assert!(b["example"].is_object(), "{method} {path}: no example");
                }
            }
        }
    }
    assert!(bodies >= 14, "request bodies found: {bodies}");

    // PATCH bodies: absent or null = unchanged, so every field is nullable.
    for name in [
        "UpdateMe",
        "AdminUpdate",
        "EmployeeChange",
        "CategoryChange",
        "ProductChange",
    ] {
        for (field, s) in schemas[name]["properties"].as_object().unwrap() {
            assert_eq!(s["nullable"], true, "{name}.{field} not nullable");
        }
    }
    // Value rules, as API.md gives them.
    let register = &schemas["Register"]["properties"];
    assert_eq!(register["username"]["minLength"], 3);
    assert_eq!(register["username"]["maxLength"], 32);
    assert_eq!(register["username"]["pattern"], "^[A-Za-z0-9_.-]{3,32}$");
    assert_eq!(register["email"]["format"], "email");
    assert_eq!(register["email"]["maxLength"], 254);
    assert_eq!(register["password"]["minLength"], 8);
    assert_eq!(register["password"]["maxLength"], 128);
    let product = &schemas["NewProduct"]["properties"];
    assert_eq!(product["name"]["maxLength"], 100);
    assert_eq!(product["price"]["minimum"], 0.0);
    assert_eq!(product["price"]["multipleOf"], 0.01);
    assert_eq!(product["quantity"]["minimum"], 0.0);
    assert_eq!(product["description"]["maxLength"], 2000);
    let login = schemas["Login"]["oneOf"]
        .as_array()
        .expect("Login is a oneOf");
    assert_eq!(login.len(), 2);

    let products = &spec["paths"]["/products"]["get"];
    let per_page = products["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "per_page")
        .unwrap();
    assert_eq!(per_page["schema"]["minimum"], 1.0);
    assert_eq!(per_page["schema"]["maximum"], 100.0);
    // Optional auth: a bearer token, or nothing.
    let security = products["security"].as_array().unwrap();
    assert!(security.iter().any(|s| s == &serde_json::json!({})));
    assert!(security.iter().any(|s| s.get("accessToken").is_some()));

    // Headers API.md promises.
    let login_op = &spec["paths"]["/auth/login"]["post"]["responses"];
    assert!(login_op["429"]["headers"]["Retry-After"].is_object());
    assert!(login_op["401"]["headers"]["WWW-Authenticate"].is_object());
    let created = &spec["paths"]["/employees"]["post"]["responses"]["201"];
    assert!(
        created["headers"]["LOCATION"].is_object() || created["headers"]["Location"].is_object()
    );
    // Links for the stateful chain register -> login -> me -> refresh.
    let links = &spec["paths"]["/auth/register"]["post"]["responses"]["201"]["links"];
    assert_eq!(links["Login"]["operationId"], "login");
    let links = &spec["paths"]["/auth/login"]["post"]["responses"]["200"]["links"];
    assert_eq!(links["GetMe"]["operationId"], "get_me");
    assert_eq!(links["Refresh"]["operationId"], "refresh");
}
