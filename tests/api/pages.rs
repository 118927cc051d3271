//! The link pages of the mails (API.md "Email", issue 19 item 5):
//! `/account/reset-password` and `/account/verify-email`, their script and
//! stylesheet. Self-contained HTML under a CSP without inline script or
//! style, in the OpenAPI document, and static: opening one (with any query)
//! spends no link. The pages driven in Chromium: clients/swagger-ui/link-pages.mjs
//! (scripts/gateway-e2e, scripts/swagger-ui-e2e).

use reqwest::{Method, Url};
use serde_json::json;
use tessera::mail::{Purpose, links};
use uuid::Uuid;

use crate::helpers::{Backend, PASSWORD, Resp, TestApp, spawn_app};

const PAGES: [&str; 2] = ["/account/reset-password", "/account/verify-email"];
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The values of every `name="..."` attribute in `html`.
fn attribute_values<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let needle = format!(" {name}=\"");
    let mut values = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(&needle) {
        let after = &rest[i + needle.len()..];
        let end = after.find('"').expect("attribute value ends");
        values.push(&after[..end]);
        rest = &after[end..];
    }
    values
}

/// One directive of a CSP, e.g. `script-src 'self'`.
fn directive<'a>(csp: &'a str, name: &str) -> &'a str {
    csp.split(';')
        .map(str::trim)
        .find(|d| d.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no {name} in {csp}"))
}

#[track_caller]
fn assert_page_headers(r: &Resp, path: &str) {
    r.assert_status(200);
    assert_eq!(
        r.header("content-type"),
        Some("text/html; charset=utf-8"),
        "{path}"
    );
    // The hardening layer gives the pages their own policy, not the API's
    // (which would block the script) nor the docs' (inline allowed).
    let csp = r.header("content-security-policy").unwrap_or_default();
    assert_eq!(csp, PAGE_CSP, "{path}");
    for d in ["script-src", "style-src", "connect-src"] {
        assert_eq!(directive(csp, d), format!("{d} 'self'"), "{path}");
    }
    assert_eq!(directive(csp, "default-src"), "default-src 'none'");
    assert!(!csp.contains("unsafe-") && !csp.contains("http"), "{csp}");
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{path}");
    assert_eq!(r.header("cache-control"), Some("no-store"), "{path}");
    assert_eq!(
        r.header("x-content-type-options"),
        Some("nosniff"),
        "{path}"
    );
    assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
}

/// Every `<script` of the page loads a file; no `<style>` element, no
/// `style=` or `on...=` attribute: the CSP would block them.
#[track_caller]
fn assert_no_inline_code(html: &str, path: &str) {
    let lower = html.to_ascii_lowercase();
    let mut scripts = 0;
    let mut rest = lower.as_str();
    while let Some(i) = rest.find("<script") {
        let after = &rest[i..];
        let (tag, body) = after.split_once('>').expect("start tag ends");
        let (inside, tail) = body.split_once("</script>").expect("script ends");
        assert!(tag.contains(" src=\""), "{path}: inline script {tag}");
        assert!(inside.trim().is_empty(), "{path}: script body {inside:?}");
        scripts += 1;
        rest = tail;
    }
    assert_eq!(scripts, 1, "{path}: one served script");
    assert!(!lower.contains("<style"), "{path}: <style>");
    assert!(!lower.contains(" style="), "{path}: style attribute");
    assert!(!lower.contains("javascript:"), "{path}: javascript: URL");
    for token in lower.split(|c: char| c.is_whitespace() || c == '<') {
        assert!(
            !(token.starts_with("on") && token.contains('=')),
            "{path}: event handler attribute {token}"
        );
    }
}

async fn pages_are_self_contained_html_under_a_strict_csp(b: Backend) {
    let app = spawn_app(b).await;
    let mut assets = Vec::new();
    for path in PAGES {
        let page = app.get(path, None).await;
        assert_page_headers(&page, path);
        assert_no_inline_code(&page.text, path);
        assert!(page.text.starts_with("<!doctype html>"), "{path}");
        assert!(page.text.contains("<html lang=\"en\">"), "{path}");
        // Accessible: every input has its label, the message is announced.
        for id in attribute_values(&page.text, "id") {
            if page.text.contains(&format!("<input id=\"{id}\"")) {
                assert!(
                    page.text.contains(&format!("<label for=\"{id}\">")),
                    "{path}: input {id} without a label"
                );
            }
        }
        assert!(
            page.text
                .contains(r#"<p id="message" role="status" aria-live="polite"></p>"#),
            "{path}: no live region"
        );
        // Every reference is relative to the page and served by Tessera.
        let base = Url::parse(&app.url(path)).expect("page URL");
        let refs: Vec<&str> = attribute_values(&page.text, "src")
            .into_iter()
            .chain(attribute_values(&page.text, "href"))
            .collect();
        assert_eq!(
            refs.len(),
            2,
            "{path}: one script, one stylesheet: {refs:?}"
        );
        for r in refs {
            assert!(
                !r.contains(':') && !r.starts_with("//"),
                "{path}: {r} is not a same-origin relative reference"
            );
            let url = base.join(r).expect("reference resolves");
            assert_eq!(url.origin(), base.origin(), "{path}: {r}");
            assets.push(url.path().to_owned());
        }
    }
    let reset = app.get(PAGES[0], None).await.text;
    assert_eq!(
        attribute_values(&reset, "autocomplete"),
        ["new-password", "new-password"],
        "the new password, twice"
    );
    assert!(reset.contains(">Set new password</button>"));
    let verify = app.get(PAGES[1], None).await.text;
    assert!(verify.contains(">Verify my address</button>"));
    assert!(
        attribute_values(&verify, "type")
            .iter()
            .all(|t| *t != "password")
    );

    assets.sort();
    assets.dedup();
    assert_eq!(assets, ["/account/account.css", "/account/account.js"]);
    for (asset, content_type, needle) in [
        (
            "/account/account.js",
            "text/javascript; charset=utf-8",
            "history.replaceState",
        ),
        (
            "/account/account.css",
            "text/css; charset=utf-8",
            "#message",
        ),
    ] {
        let r = app.get(asset, None).await;
        r.assert_status(200);
        assert_eq!(r.header("content-type"), Some(content_type), "{asset}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert!(r.text.contains(needle), "{asset}: {}", r.text);
    }
    // The script posts to the JSON endpoints, relative to the page.
    let script = app.get("/account/account.js", None).await.text;
    for endpoint in ["'../auth/password/reset'", "'../auth/email/verify'"] {
        assert!(script.contains(endpoint), "account.js lacks {endpoint}");
    }
    assert!(!script.contains("http:") && !script.contains("https:"));
    assert!(
        !script.contains("innerHTML"),
        "messages are text, never markup"
    );
}

async fn pages_answer_methods_like_other_routes(b: Backend) {
    let app = spawn_app(b).await;
    let head = |path: &'static str| app.send(app.request(Method::HEAD, path, None));
    // HEAD of an API GET (healthz) and of a plain route (/metrics), as the
    // pages and their files answer it.
    let api_head = head("/healthz").await;
    let plain_head = head("/metrics").await;
    for path in PAGES {
        let r = head(path).await;
        assert_eq!(r.status, api_head.status, "HEAD {path}: {r:?}");
        if r.status == 200 {
            assert!(r.text.is_empty(), "HEAD {path} has a body");
            assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
            assert_eq!(r.header("content-security-policy"), Some(PAGE_CSP));
        }
        for method in [Method::POST, Method::PUT, Method::DELETE] {
            let r = app.send(app.request(method.clone(), path, None)).await;
            r.assert_error(405, "MethodNotAllowed");
            assert_eq!(r.header("allow"), Some("GET"), "{method} {path}");
        }
    }
    let plain_post = app.post("/metrics", None).await;
    for path in ["/account/account.js", "/account/account.css"] {
        let r = head(path).await;
        assert_eq!(r.status, plain_head.status, "HEAD {path}: {r:?}");
        let r = app.post(path, None).await;
        assert_eq!(
            (r.status, r.header("allow")),
            (plain_post.status, plain_post.header("allow")),
            "POST {path}: {r:?}"
        );
        r.assert_error(plain_post.status.as_u16(), "MethodNotAllowed");
    }
    // Nothing else lives under /account/.
    app.get("/account/", None)
        .await
        .assert_error(404, "NotFound");
    app.get("/account/other.js", None)
        .await
        .assert_error(404, "NotFound");
}

/// A user's fresh link of `purpose`, made as the mail would carry it.
async fn link_token(app: &TestApp, user_id: &str, purpose: Purpose) -> String {
    let user_id: Uuid = user_id.parse().expect("user id");
    let mail = &app.state.mail;
    let id = links::create(
        &app.state.db,
        &mail.link_key,
        user_id,
        purpose,
        None,
        std::time::Duration::from_secs(3600),
    )
    .await
    .expect("create link");
    mail.link_key.token(id)
}

/// What a mail scanner does: GET the page, with whatever query, as often as
/// it likes. The page is the same bytes every time and the link still
/// works afterwards.
async fn opening_a_page_spends_nothing(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.user("scanned").await;
    let reset = link_token(&app, &t.user_id, Purpose::Reset).await;
    let verify = link_token(&app, &t.user_id, Purpose::Verify).await;
    for (path, token) in [(PAGES[0], &reset), (PAGES[1], &verify)] {
        let plain = app.get(path, None).await;
        assert_page_headers(&plain, path);
        for query in [
            format!("?token={token}"),
            format!("?token={token}&token=x"),
            "?utm_source=mail&x=%00".to_owned(),
            "?".to_owned(),
        ] {
            for _ in 0..3 {
                let r = app.get(&format!("{path}{query}"), None).await;
                assert_page_headers(&r, path);
                assert_eq!(r.text, plain.text, "{path}{query}");
            }
        }
        // The page never names a token: the script reads the fragment.
        assert!(!plain.text.contains(token.as_str()));
    }
    // Both links are still unspent.
    let r = app
        .post_json("/auth/email/verify", &json!({"token": verify}), None)
        .await;
    r.assert_status(200);
    assert_eq!(r.body["email_verified"], true, "{r:?}");
    let r = app
        .post_json(
            "/auth/password/reset",
            &json!({"token": reset, "new_password": "a brand new passphrase"}),
            None,
        )
        .await;
    r.assert_status(204);
    app.login_email("scanned@example.com", "a brand new passphrase")
        .await
        .assert_status(200);
    app.login_email("scanned@example.com", PASSWORD)
        .await
        .assert_error(401, "InvalidCredentials");
}

crate::both_backends!(
    pages_are_self_contained_html_under_a_strict_csp,
    pages_answer_methods_like_other_routes,
    opening_a_page_spends_nothing,
);

#[test]
fn pages_are_operations_of_the_document() {
    let doc: serde_json::Value =
        serde_json::from_str(&tessera::api::document::json()).expect("document");
    for (path, id) in [
        (PAGES[0], "reset_password_page"),
        (PAGES[1], "verify_email_page"),
    ] {
        let op = &doc["paths"][path]["get"];
        assert_eq!(op["operationId"], id, "{path}: {op}");
        assert_eq!(op["tags"], json!(["Account"]), "{path}");
        assert!(op.get("security").is_none(), "{path}: no auth");
        assert!(
            op["responses"]["200"]["content"]["text/html; charset=utf-8"].is_object(),
            "{path}: {op}"
        );
        assert_eq!(
            doc["paths"][path].as_object().map(|m| m.len()),
            Some(1),
            "GET only"
        );
    }
    for asset in ["/account/account.js", "/account/account.css"] {
        assert!(doc["paths"].get(asset).is_none(), "{asset} is a file");
    }
}
