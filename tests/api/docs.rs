//! The documentation against the code: the endpoints and errors tables of
//! docs/http-api.md against the OpenAPI document and `ApiError`, its
//! configuration table against the flags of `Config`, and every relative
//! link of README.md and docs/*.md against the files of the repository.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Component, Path, PathBuf},
};

use serde_json::Value;
use tessera::error::ApiError;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const HTTP_API: &str = "docs/http-api.md";
/// Served by Tessera, listed in the endpoints table, left out of the document.
const NOT_IN_DOCUMENT: [&str; 3] = ["/docs", "/openapi.json", "/metrics"];

fn read(relative: &str) -> String {
    let path = Path::new(ROOT).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn document() -> Value {
    serde_yaml::from_str(&tessera::openapi_yaml()).expect("the OpenAPI document parses")
}

/// A cell without its code backticks.
fn plain(cell: &str) -> &str {
    cell.trim().trim_matches('`').trim()
}

/// The first table of the section `## {heading}`: its header row, then its
/// rows (separator row left out), cells trimmed.
fn table(markdown: &str, heading: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let title = format!("## {heading}");
    let mut lines = markdown.lines().skip_while(|l| l.trim_end() != title);
    assert!(
        lines.next().is_some(),
        "{HTTP_API} has no section `{title}`"
    );
    let rows: Vec<Vec<String>> = lines
        .take_while(|l| !l.starts_with("## "))
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect();
    assert!(rows.len() > 2, "{HTTP_API}: no table under `{title}`");
    let mut rows = rows.into_iter();
    let header = rows.next().unwrap_or_default();
    let body = rows
        .filter(|r| !r.iter().all(|c| c.chars().all(|ch| ch == '-' || ch == ':')))
        .collect();
    (header, body)
}

#[track_caller]
fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

/// How an operation of the document is authenticated, in the terms of the
/// table's auth column (`access` for A, F, Adm and Adm+F alike: freshness
/// and role are runtime rules the document cannot show).
fn auth_of(operation: &Value) -> String {
    let Some(requirements) = operation["security"].as_array() else {
        return "-".into();
    };
    let mut schemes: Vec<String> = requirements
        .iter()
        .map(|r| {
            let names: Vec<&str> = r
                .as_object()
                .map(|o| o.keys().map(String::as_str).collect())
                .unwrap_or_default();
            names.join("+")
        })
        .collect();
    schemes.sort();
    match schemes.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => "-".into(),
        // The bearer header or the browser-session cookie.
        ["accessCookie", "accessToken"] => "access".into(),
        ["refreshToken"] => "R".into(),
        ["refreshCookie"] => "R cookie".into(),
        // Browser logout: the access token, or the refresh cookie once the
        // access cookie expired.
        ["accessCookie", "accessToken", "refreshCookie"] => "A or R cookie".into(),
        ["", "accessCookie", "accessToken"] => "opt".into(),
        _ => operation["security"].to_string(),
    }
}

fn table_auth(cell: &str) -> &str {
    match plain(cell) {
        "A" | "F" | "Adm" | "Adm+F" => "access",
        other => other,
    }
}

#[test]
fn endpoints_table_is_the_openapi_document() {
    let doc = document();
    let paths = doc["paths"].as_object().expect("paths");
    let (header, rows) = table(&read(HTTP_API), "Endpoints");
    assert_eq!(
        header,
        ["method", "path", "operation", "auth", "body", "success"],
        "{HTTP_API}: the endpoints table's columns changed"
    );

    let mut problems = Vec::new();
    let mut listed = BTreeSet::new();
    let mut not_in_document = BTreeSet::new();
    for row in &rows {
        let [methods, path, operations, auth, ..] = &row[..] else {
            problems.push(format!("a row without its columns: {row:?}"));
            continue;
        };
        let path = plain(path);
        let methods: Vec<String> = methods.split(',').map(|m| plain(m).to_owned()).collect();
        let operations: Vec<&str> = operations.split(',').map(plain).collect();
        if NOT_IN_DOCUMENT.contains(&path) {
            not_in_document.insert(path.to_owned());
            if paths.contains_key(path) {
                problems.push(format!("{path} is in the document, yet listed as left out"));
            }
            if operations != ["-"] {
                problems.push(format!(
                    "{path} has no operation id, the table says {operations:?}"
                ));
            }
            continue;
        }
        if operations.len() != methods.len() {
            problems.push(format!(
                "{path}: {} methods, {} operation ids",
                methods.len(),
                operations.len()
            ));
        }
        for (i, method) in methods.iter().enumerate() {
            if !listed.insert((method.clone(), path.to_owned())) {
                problems.push(format!("{method} {path} is listed twice"));
            }
            let operation = &doc["paths"][path][method.to_lowercase()];
            if !operation.is_object() {
                problems.push(format!(
                    "{method} {path} is in the table, not in the document"
                ));
                continue;
            }
            let id = operation["operationId"].as_str().unwrap_or("(none)");
            if operations.get(i) != Some(&id) {
                problems.push(format!(
                    "{method} {path}: operationId {id}, the table says {:?}",
                    operations.get(i)
                ));
            }
            let (documented, written) = (auth_of(operation), table_auth(auth));
            if documented != written {
                problems.push(format!(
                    "{method} {path}: the document's security is {documented}, the table's auth {}",
                    plain(auth)
                ));
            }
        }
    }
    for (path, item) in paths {
        for method in item.as_object().into_iter().flat_map(|m| m.keys()) {
            let key = (method.to_uppercase(), path.clone());
            if !listed.contains(&key) {
                problems.push(format!(
                    "{} {path} is in the document, not in the table",
                    key.0
                ));
            }
        }
    }
    let expected: BTreeSet<String> = NOT_IN_DOCUMENT.iter().map(|p| p.to_string()).collect();
    if not_in_document != expected {
        problems.push(format!(
            "the table lists {not_in_document:?} of the paths outside the document, not {expected:?}"
        ));
    }
    assert_no_problems(
        &format!("{HTTP_API} \"Endpoints\" vs the OpenAPI document"),
        &problems,
    );
}

/// Every `ApiError`, for its code and status.
fn every_api_error() -> Vec<ApiError> {
    let all = vec![
        ApiError::BadRequest(String::new()),
        ApiError::LinkInvalid,
        ApiError::TokenMissing,
        ApiError::TokenInvalid,
        ApiError::TokenExpired,
        ApiError::TokenRevoked,
        ApiError::TokenReused,
        ApiError::FreshTokenNeeded,
        ApiError::InvalidCredentials,
        ApiError::AdminRequired,
        ApiError::UserBlocked,
        ApiError::EmailNotVerified,
        ApiError::MfaRequired(None),
        ApiError::CsrfFailed,
        ApiError::NotFound(String::new()),
        ApiError::MethodNotAllowed {
            allow: String::new(),
        },
        ApiError::Conflict(String::new()),
        ApiError::PayloadTooLarge(0),
        ApiError::UnsupportedMediaType,
        ApiError::ValidationFailed(BTreeMap::new()),
        ApiError::TooManyRequests { retry_after: 0 },
        ApiError::Internal,
        ApiError::ServiceUnavailable,
    ];
    for e in &all {
        // No wildcard: a new variant does not compile until it is listed above.
        match e {
            ApiError::BadRequest(_)
            | ApiError::LinkInvalid
            | ApiError::TokenMissing
            | ApiError::TokenInvalid
            | ApiError::TokenExpired
            | ApiError::TokenRevoked
            | ApiError::TokenReused
            | ApiError::FreshTokenNeeded
            | ApiError::InvalidCredentials
            | ApiError::AdminRequired
            | ApiError::UserBlocked
            | ApiError::EmailNotVerified
            | ApiError::MfaRequired(_)
            | ApiError::CsrfFailed
            | ApiError::NotFound(_)
            | ApiError::MethodNotAllowed { .. }
            | ApiError::Conflict(_)
            | ApiError::PayloadTooLarge(_)
            | ApiError::UnsupportedMediaType
            | ApiError::ValidationFailed(_)
            | ApiError::TooManyRequests { .. }
            | ApiError::Internal
            | ApiError::ServiceUnavailable => {}
        }
    }
    all
}

#[test]
fn errors_table_is_error_code_with_its_statuses() {
    let (header, rows) = table(&read(HTTP_API), "Errors");
    assert_eq!(
        header,
        ["status", "code", "when"],
        "{HTTP_API}: the errors table's columns changed"
    );
    let mut problems = Vec::new();
    let mut table_codes = BTreeMap::new();
    for row in &rows {
        let [status, code, ..] = &row[..] else {
            problems.push(format!("a row without its columns: {row:?}"));
            continue;
        };
        let code = plain(code).to_owned();
        let Ok(status) = plain(status).parse::<u16>() else {
            problems.push(format!("{code}: status {status:?} is not a number"));
            continue;
        };
        if table_codes.insert(code.clone(), status).is_some() {
            problems.push(format!("{code} is listed twice"));
        }
    }

    let doc = document();
    let schema_codes: BTreeSet<String> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("ErrorCode.enum")
        .iter()
        .filter_map(|c| c.as_str().map(str::to_owned))
        .collect();
    let written: BTreeSet<String> = table_codes.keys().cloned().collect();
    for code in schema_codes.difference(&written) {
        problems.push(format!("{code} is in ErrorCode, not in the table"));
    }
    for code in written.difference(&schema_codes) {
        problems.push(format!("{code} is in the table, not in ErrorCode"));
    }

    let mut sent = BTreeSet::new();
    for e in every_api_error() {
        let code = serde_json::to_value(e.code()).expect("ErrorCode serializes");
        let code = code.as_str().expect("ErrorCode is a string").to_owned();
        let status = e.status_code().as_u16();
        match table_codes.get(&code) {
            Some(&written) if written != status => problems.push(format!(
                "{code}: the service answers {status}, the table says {written}"
            )),
            _ => {}
        }
        sent.insert(code);
    }
    for code in schema_codes.difference(&sent) {
        problems.push(format!("{code} is in ErrorCode, but no ApiError sends it"));
    }
    assert_no_problems(
        &format!("{HTTP_API} \"Errors\" vs ErrorCode and ApiError"),
        &problems,
    );
}

#[test]
fn configuration_table_is_the_flags_of_serve() {
    use clap::Args as _;
    // Read from the environment only (`Config::with_env_secrets`): no flag.
    const ENV_ONLY: [&str; 1] = ["TESSERA_ADMIN_PASSWORD"];
    let (header, rows) = table(&read(HTTP_API), "Configuration");
    assert_eq!(
        header,
        ["variable", "flag", "default", "meaning"],
        "{HTTP_API}: the configuration table's columns changed"
    );
    let mut problems = Vec::new();
    let mut written = BTreeMap::new();
    for row in &rows {
        let [variable, flag, default, ..] = &row[..] else {
            problems.push(format!("a row without its columns: {row:?}"));
            continue;
        };
        let variable = plain(variable).to_owned();
        if written
            .insert(variable.clone(), (flag.clone(), default.clone()))
            .is_some()
        {
            problems.push(format!("{variable} is listed twice"));
        }
    }

    let command = tessera::config::Config::augment_args(clap::Command::new("tessera"));
    let mut flags = BTreeSet::new();
    for arg in command.get_arguments() {
        let Some(variable) = arg.get_env().and_then(|v| v.to_str()) else {
            problems.push(format!(
                "--{:?} has no environment variable",
                arg.get_long()
            ));
            continue;
        };
        flags.insert(variable.to_owned());
        let Some((flag, default)) = written.get(variable) else {
            problems.push(format!("{variable} is a setting, not in the table"));
            continue;
        };
        let long = arg.get_long().map(|l| format!("`--{l}`"));
        if long.as_deref() != Some(flag.as_str()) {
            problems.push(format!("{variable}: flag {long:?}, the table says {flag}"));
        }
        if let [value] = arg.get_default_values() {
            let value = format!("`{}`", value.to_string_lossy());
            if !default.starts_with(&value) {
                problems.push(format!(
                    "{variable}: default {value}, the table says {default}"
                ));
            }
        }
    }
    for (variable, (flag, _)) in &written {
        if ENV_ONLY.contains(&variable.as_str()) {
            if flag.starts_with("`--") {
                problems.push(format!("{variable} has no flag, the table says {flag}"));
            }
        } else if !flags.contains(variable) {
            problems.push(format!("{variable} is in the table, not a setting"));
        }
    }
    assert_no_problems(
        &format!("{HTTP_API} \"Configuration\" vs Config"),
        &problems,
    );
}

/// The targets of the inline (`[text](target)`) and reference
/// (`[label]: target`) links of a markdown text, outside code.
fn link_targets(markdown: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Code spans out (a link's text may be one: "[`x`](x)" stays a link).
        let text: String = line.split('`').step_by(2).collect();
        if let Some(rest) = text.trim_start().strip_prefix('[')
            && let Some((_, target)) = rest.split_once("]:")
        {
            targets.extend(target.split_whitespace().next().map(str::to_owned));
        }
        let mut rest = text.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            targets.extend(rest[..end].split_whitespace().next().map(str::to_owned));
            rest = &rest[end..];
        }
    }
    targets
}

/// `base/relative` without `.` and `..`; `None` when it climbs above `/`.
fn normalize(base: &Path, relative: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in base.join(relative).components() {
        match part {
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Some(out)
}

#[test]
fn relative_links_point_into_the_repository() {
    let root = Path::new(ROOT);
    let mut files = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .filter_map(|p| p.strip_prefix(root).ok().map(Path::to_path_buf))
        .collect();
    docs.sort();
    assert!(
        docs.contains(&PathBuf::from(HTTP_API)),
        "{HTTP_API} is missing"
    );
    files.extend(docs);

    let mut problems = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = read(&file.to_string_lossy());
        let dir = file.parent().unwrap_or(Path::new(""));
        for target in link_targets(&text) {
            if target.starts_with("http://")
                || target.starts_with("https://")
                || target.starts_with("mailto:")
                || target.starts_with('#')
            {
                continue;
            }
            let shown = format!("{}: ({target})", file.display());
            let path = target.split('#').next().unwrap_or_default();
            if path.starts_with('/') || path.contains("://") {
                problems.push(format!("{shown} is not a relative link"));
                continue;
            }
            // Relative to the repository root, which must contain it.
            let Some(resolved) = normalize(root, &dir.join(path).to_string_lossy()) else {
                problems.push(format!("{shown} leaves the file system"));
                continue;
            };
            let Ok(inside) = resolved.strip_prefix(root) else {
                problems.push(format!("{shown} points outside the repository"));
                continue;
            };
            let first = inside.components().next();
            if first.is_some_and(|c| c.as_os_str() == "target")
                || inside.components().any(|c| c.as_os_str() == "node_modules")
            {
                problems.push(format!("{shown} points at build output, not in a clone"));
                continue;
            }
            if !resolved.exists() {
                problems.push(format!("{shown}: {} does not exist", inside.display()));
                continue;
            }
            checked += 1;
        }
    }
    assert_no_problems("relative links of README.md and docs/*.md", &problems);
    assert!(
        checked >= 5,
        "only {checked} relative links found: is the parser broken?"
    );
}
