//! Browser sessions (API.md "Browser sessions"): the cookies, cookie
//! authentication, the CSRF rule, rotation by cookie and forward-auth by
//! cookie, over HTTP on SQLite + memory and PostgreSQL + Redis.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, PASSWORD, Resp, TestApp, spawn_app, spawn_app_with};

crate::sql_backends!(
    off_by_default_paths_404_and_cookies_ignored,
    login_sets_the_three_cookies_and_no_token_in_the_body,
    cookies_authenticate_and_csrf_guards_unsafe_methods,
    the_authorization_header_wins_over_the_cookie,
    refresh_by_cookie_rotates_detects_reuse_and_keeps_the_csrf_token,
    refresh_by_cookie_honours_the_grace,
    logout_by_cookie_clears_the_cookies,
    forward_auth_by_cookie_judges_the_original_method,
    plain_http_development_cookies,
    failed_logins_clear_stale_cookies,
    logout_after_the_access_cookie_expired_ends_the_session,
);

const ACCESS: &str = "__Host-tessera-access";
const REFRESH: &str = "__Secure-tessera-refresh";
const CSRF: &str = "__Host-tessera-csrf";

/// A browser's view: the cookies it holds (name -> value).
#[derive(Default, Clone, Debug)]
struct Jar(BTreeMap<String, String>);

/// `Set-Cookie` headers of a response: name -> (value, attributes).
fn set_cookies(r: &Resp) -> BTreeMap<String, (String, String)> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|line| {
            let (pair, attrs) = line.split_once(';').unwrap_or((line, ""));
            let (name, value) = pair.split_once('=')?;
            Some((
                name.trim().to_owned(),
                (value.to_owned(), attrs.trim().to_owned()),
            ))
        })
        .collect()
}

impl Jar {
    /// Takes the cookies a response sets (Max-Age=0 deletes).
    fn absorb(&mut self, r: &Resp) {
        for (name, (value, attrs)) in set_cookies(r) {
            if attrs.contains("Max-Age=0") {
                self.0.remove(&name);
            } else {
                self.0.insert(name, value);
            }
        }
    }

    fn header(&self, path: &str) -> String {
        self.0
            .iter()
            // The refresh cookie's Path is /auth/browser.
            .filter(|(n, _)| !n.ends_with("tessera-refresh") || path.starts_with("/auth/browser"))
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn get(&self, name: &str) -> String {
        self.0.get(name).cloned().unwrap_or_default()
    }
}

struct Browser<'a> {
    app: &'a TestApp,
    jar: Jar,
    csrf: Option<String>,
    origin: Option<String>,
}

impl<'a> Browser<'a> {
    fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            jar: Jar::default(),
            csrf: None,
            origin: None,
        }
    }

    async fn send(&mut self, method: Method, path: &str, body: Option<&Value>, csrf: bool) -> Resp {
        let mut req = self.app.request(method, path, None);
        let cookies = self.jar.header(path);
        if !cookies.is_empty() {
            req = req.header("cookie", cookies);
        }
        if csrf && let Some(t) = &self.csrf {
            req = req.header("x-csrf-token", t);
        }
        if let Some(o) = &self.origin {
            req = req.header("origin", o);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = self.app.send(req).await;
        self.jar.absorb(&r);
        r
    }

    async fn login(&mut self, name: &str) -> Resp {
        let r = self
            .send(
                Method::POST,
                "/auth/browser/login",
                Some(&json!({"email": format!("{name}@example.com"), "password": PASSWORD})),
                false,
            )
            .await;
        if r.status == 200 {
            self.csrf = Some(r.str("csrf_token"));
        }
        r
    }
}

async fn cookie_app(b: Backend) -> TestApp {
    spawn_app_with(b, |c| {
        c.cookies = true;
        c.public_url = Some("https://auth.example.com".into());
        c.cors_origins = Some("https://app.example.com".into());
    })
    .await
}

async fn off_by_default_paths_404_and_cookies_ignored(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.user("ann").await;
    for path in [
        "/auth/browser/login",
        "/auth/browser/refresh",
        "/auth/browser/logout",
    ] {
        app.post_json(
            path,
            &json!({"email": "ann@example.com", "password": PASSWORD}),
            None,
        )
        .await
        .assert_error(404, "NotFound");
        // Not even the body is looked at.
        app.send(
            app.request(Method::POST, path, None)
                .header("content-type", "application/json")
                .body("{not json"),
        )
        .await
        .assert_error(404, "NotFound");
    }
    // A valid token in the cookie means nothing while cookies are off.
    let r = app
        .send(
            app.request(Method::GET, "/users/me", None)
                .header("cookie", format!("{ACCESS}={}", t.access)),
        )
        .await;
    r.assert_error(401, "TokenMissing");
}

async fn login_sets_the_three_cookies_and_no_token_in_the_body(b: Backend) {
    let app = cookie_app(b).await;
    app.user("ann").await;
    let mut browser = Browser::new(&app);
    let r = browser.login("ann").await;
    r.assert_status(200);
    let keys: Vec<&str> = r
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["csrf_token", "expires_in", "refresh_expires_in", "user_id"],
        "{r:?}"
    );
    assert!(
        !r.text.contains(&browser.jar.get(ACCESS)),
        "a token in the body"
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let set = set_cookies(&r);
    assert_eq!(set.len(), 3, "{set:?}");
    let ttl = r.body["expires_in"].as_i64().unwrap();
    let session = r.body["refresh_expires_in"].as_i64().unwrap();
    assert_eq!(
        set[ACCESS].1,
        format!("Max-Age={ttl}; HttpOnly; SameSite=Lax; Path=/; Secure")
    );
    assert_eq!(
        set[REFRESH].1,
        format!("Max-Age={session}; HttpOnly; SameSite=Strict; Path=/auth/browser; Secure")
    );
    assert_eq!(
        set[CSRF].1,
        format!("Max-Age={session}; SameSite=Lax; Path=/; Secure")
    );
    assert_eq!(set[CSRF].0, r.str("csrf_token"));
    assert_eq!(set[ACCESS].0.split('.').count(), 3, "a JWT");
}

async fn cookies_authenticate_and_csrf_guards_unsafe_methods(b: Backend) {
    let app = cookie_app(b).await;
    app.user("ann").await;
    let mut browser = Browser::new(&app);
    browser.login("ann").await.assert_status(200);
    let me = browser.send(Method::GET, "/users/me", None, false).await;
    me.assert_status(200);
    assert_eq!(me.body["username"], "ann");
    // Unsafe without the token: refused, nothing changed.
    let change = json!({"username": "annie"});
    browser
        .send(Method::PATCH, "/users/me", Some(&change), false)
        .await
        .assert_error(403, "CsrfFailed");
    // A wrong token.
    let good = browser.csrf.clone();
    browser.csrf = Some("A".repeat(43));
    browser
        .send(Method::PATCH, "/users/me", Some(&change), true)
        .await
        .assert_error(403, "CsrfFailed");
    browser.csrf = good;
    // The right token from a foreign origin.
    browser.origin = Some("https://evil.example".into());
    browser
        .send(Method::PATCH, "/users/me", Some(&change), true)
        .await
        .assert_error(403, "CsrfFailed");
    browser.origin = Some("null".into());
    browser
        .send(Method::POST, "/auth/logout-all", None, true)
        .await
        .assert_error(403, "CsrfFailed");
    let me = browser.send(Method::GET, "/users/me", None, false).await;
    assert_eq!(
        me.body["username"], "ann",
        "a refused request changed nothing"
    );
    // Own origin, a listed one, or none: fine.
    for origin in [
        Some("https://auth.example.com"),
        Some("https://app.example.com"),
        None,
    ] {
        browser.origin = origin.map(str::to_owned);
        browser
            .send(Method::PATCH, "/users/me", Some(&change), true)
            .await
            .assert_status(200);
    }
    // Authentication comes first: a bad cookie is 401, not 403.
    let mut stranger = Browser::new(&app);
    stranger.jar.0.insert(ACCESS.into(), "not.a.token".into());
    stranger
        .send(Method::PATCH, "/users/me", Some(&change), false)
        .await
        .assert_error(401, "TokenInvalid");
    // An optional-auth listing sees the cookie's user (not anonymous).
    let r = browser.send(Method::GET, "/products", None, false).await;
    r.assert_status(200);
    assert_ne!(r.body["limited"], true, "{r:?}");
}

async fn the_authorization_header_wins_over_the_cookie(b: Backend) {
    let app = cookie_app(b).await;
    let bob = app.user("bob").await;
    app.user("ann").await;
    let mut browser = Browser::new(&app);
    browser.login("ann").await.assert_status(200);
    let cookies = browser.jar.header("/users/me");
    // A bad header is judged alone: the good cookie does not save it.
    let r = app
        .send(
            app.request(Method::GET, "/users/me", Some("garbage"))
                .header("cookie", cookies.clone()),
        )
        .await;
    r.assert_error(401, "TokenInvalid");
    // A good header: its user, and no CSRF token needed.
    let r = app
        .send(
            app.request(Method::PATCH, "/users/me", Some(&bob.access))
                .header("cookie", cookies)
                .json(&json!({"username": "bobby"})),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.body["username"], "bobby");
}

async fn refresh_by_cookie_rotates_detects_reuse_and_keeps_the_csrf_token(b: Backend) {
    let app = cookie_app(b).await;
    app.user("ann").await;
    let mut browser = Browser::new(&app);
    let first = browser.login("ann").await;
    let csrf = browser.csrf.clone().unwrap();
    let old_refresh = browser.jar.get(REFRESH);
    let old_access = browser.jar.get(ACCESS);
    // Without the CSRF header: refused, and nothing spent.
    browser
        .send(Method::POST, "/auth/browser/refresh", None, false)
        .await
        .assert_error(403, "CsrfFailed");
    assert_eq!(browser.jar.get(REFRESH), old_refresh, "cookies kept");
    let r = browser
        .send(Method::POST, "/auth/browser/refresh", None, true)
        .await;
    r.assert_status(200);
    assert_eq!(r.str("csrf_token"), csrf, "stable across rotations");
    assert_ne!(browser.jar.get(REFRESH), old_refresh);
    assert_ne!(browser.jar.get(ACCESS), old_access);
    // The session's end is absolute.
    assert!(
        r.body["refresh_expires_in"].as_i64() <= first.body["refresh_expires_in"].as_i64(),
        "{r:?}"
    );
    browser
        .send(Method::GET, "/users/me", None, false)
        .await
        .assert_status(200);
    // The spent refresh cookie again (a thief's copy): reuse, the session
    // is revoked, and the answer clears the cookies.
    let mut thief = Browser::new(&app);
    thief.jar.0.insert(REFRESH.into(), old_refresh);
    thief.jar.0.insert(CSRF.into(), csrf.clone());
    thief.csrf = Some(csrf);
    let r = thief
        .send(Method::POST, "/auth/browser/refresh", None, true)
        .await;
    r.assert_error(401, "TokenReused");
    let cleared = set_cookies(&r);
    assert_eq!(cleared.len(), 3, "{cleared:?}");
    assert!(
        cleared
            .values()
            .all(|(v, a)| v.is_empty() && a.contains("Max-Age=0"))
    );
    browser
        .send(Method::GET, "/users/me", None, false)
        .await
        .assert_error(401, "TokenRevoked");
    browser
        .send(Method::POST, "/auth/browser/refresh", None, true)
        .await
        .assert_error(401, "TokenRevoked");
    // No refresh cookie at all.
    Browser::new(&app)
        .send(Method::POST, "/auth/browser/refresh", None, false)
        .await
        .assert_error(401, "TokenMissing");
}

async fn refresh_by_cookie_honours_the_grace(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.cookies = true;
        c.refresh_reuse_grace = std::time::Duration::from_secs(10);
    })
    .await;
    app.user("ann").await;
    let mut tab1 = Browser::new(&app);
    tab1.login("ann").await.assert_status(200);
    let mut tab2 = Browser {
        app: &app,
        jar: tab1.jar.clone(),
        csrf: tab1.csrf.clone(),
        origin: None,
    };
    tab1.send(Method::POST, "/auth/browser/refresh", None, true)
        .await
        .assert_status(200);
    tab2.send(Method::POST, "/auth/browser/refresh", None, true)
        .await
        .assert_status(200);
    assert_eq!(
        tab1.jar.get(REFRESH),
        tab2.jar.get(REFRESH),
        "one refresh token"
    );
}

async fn logout_by_cookie_clears_the_cookies(b: Backend) {
    let app = cookie_app(b).await;
    app.user("ann").await;
    let mut browser = Browser::new(&app);
    browser.login("ann").await.assert_status(200);
    browser
        .send(Method::POST, "/auth/browser/logout", None, false)
        .await
        .assert_error(403, "CsrfFailed");
    browser
        .send(Method::GET, "/users/me", None, false)
        .await
        .assert_status(200);
    let access = browser.jar.get(ACCESS);
    let r = browser
        .send(Method::POST, "/auth/browser/logout", None, true)
        .await;
    r.assert_status(204);
    assert_eq!(set_cookies(&r).len(), 3);
    assert!(browser.jar.0.is_empty(), "{:?}", browser.jar);
    // The token is revoked, not only forgotten by the browser.
    browser.jar.0.insert(ACCESS.into(), access);
    browser
        .send(Method::GET, "/users/me", None, false)
        .await
        .assert_error(401, "TokenRevoked");
}

async fn forward_auth_by_cookie_judges_the_original_method(b: Backend) {
    let app = cookie_app(b).await;
    app.user("ann").await;
    let mut browser = Browser::new(&app);
    browser.login("ann").await.assert_status(200);
    let cookies = browser.jar.header("/auth/verify");
    let csrf = browser.csrf.clone().unwrap();
    let verify = |headers: Vec<(&'static str, String)>| {
        let mut req = app
            .request(Method::GET, "/auth/verify", None)
            .header("cookie", cookies.clone());
        for (k, v) in headers {
            req = req.header(k, v);
        }
        app.send(req)
    };
    let r = verify(vec![]).await;
    r.assert_status(200);
    assert!(r.header("x-auth-user-id").is_some());
    verify(vec![("x-forwarded-method", "GET".into())])
        .await
        .assert_status(200);
    verify(vec![("x-forwarded-method", "POST".into())])
        .await
        .assert_error(403, "CsrfFailed");
    verify(vec![("x-original-method", "DELETE".into())])
        .await
        .assert_error(403, "CsrfFailed");
    verify(vec![("x-original-method", "not a method".into())])
        .await
        .assert_error(403, "CsrfFailed");
    verify(vec![
        ("x-forwarded-method", "POST".into()),
        ("x-csrf-token", csrf.clone()),
    ])
    .await
    .assert_status(200);
    verify(vec![
        ("x-forwarded-method", "POST".into()),
        ("x-csrf-token", csrf),
        ("origin", "https://evil.example".into()),
    ])
    .await
    .assert_error(403, "CsrfFailed");
}

async fn plain_http_development_cookies(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.cookies = true;
        c.cookie_secure = false;
    })
    .await;
    app.user("ann").await;
    let mut browser = Browser::new(&app);
    let r = browser.login("ann").await;
    r.assert_status(200);
    let set = set_cookies(&r);
    let names: Vec<&str> = set.keys().map(String::as_str).collect();
    assert_eq!(names, ["tessera-access", "tessera-csrf", "tessera-refresh"]);
    assert!(set.values().all(|(_, a)| !a.contains("Secure")), "{set:?}");
    browser
        .send(Method::GET, "/users/me", None, false)
        .await
        .assert_status(200);
    browser
        .send(Method::POST, "/auth/browser/refresh", None, true)
        .await
        .assert_status(200);
}

async fn failed_logins_clear_stale_cookies(b: Backend) {
    let app = cookie_app(b).await;
    app.user("ann").await;
    let mut browser = Browser::new(&app);
    browser.login("ann").await.assert_status(200);
    let r = browser
        .send(
            Method::POST,
            "/auth/browser/login",
            Some(&json!({"email": "ann@example.com", "password": "wrong password"})),
            false,
        )
        .await;
    r.assert_error(401, "InvalidCredentials");
    assert_eq!(set_cookies(&r).len(), 3);
    assert!(browser.jar.0.is_empty());
}

/// The access cookie's Max-Age is the token's lifetime, so after it the
/// browser sends only the refresh cookie: logout still ends the session.
async fn logout_after_the_access_cookie_expired_ends_the_session(b: Backend) {
    let app = cookie_app(b).await;
    app.user("ann").await;
    let mut browser = Browser::new(&app);
    browser.login("ann").await.assert_status(200);
    browser.jar.0.remove(ACCESS);
    let refresh = browser.jar.get(REFRESH);
    // CSRF still applies.
    browser
        .send(Method::POST, "/auth/browser/logout", None, false)
        .await
        .assert_error(403, "CsrfFailed");
    let r = browser
        .send(Method::POST, "/auth/browser/logout", None, true)
        .await;
    r.assert_status(204);
    assert_eq!(set_cookies(&r).len(), 3);
    let mut again = Browser::new(&app);
    again.jar.0.insert(REFRESH.into(), refresh);
    again.csrf = browser.csrf.clone();
    again
        .send(Method::POST, "/auth/browser/refresh", None, true)
        .await
        .assert_error(401, "TokenRevoked");
}
