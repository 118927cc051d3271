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
    let unauthorized =
        &me["responses"]["401"]["content"]["application/json; charset=utf-8"]["schema"]["$ref"];
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
