//! Login brute-force limits (API.md, "Precise rules"): per account and per
//! client IP, fixed windows, 429 with `Retry-After`, counted in the token
//! store.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tessera::config::Config;

use crate::helpers::{Backend, PASSWORD, RACE_ROUNDS, Resp, TestApp, race, spawn_app_with};

const WRONG: &str = "not the password";

/// An app with `max` failures per account and `per_ip` per address in a
/// `window`-second window.
async fn app_with(b: Backend, max: u32, per_ip: u32, window: u64) -> TestApp {
    app_tweaked(b, max, per_ip, window, |_| {}).await
}

async fn app_tweaked(
    b: Backend,
    max: u32,
    per_ip: u32,
    window: u64,
    tweak: impl FnOnce(&mut Config),
) -> TestApp {
    spawn_app_with(b, |c| {
        c.login_max_failures = max;
        c.login_max_failures_per_ip = per_ip;
        c.login_window = Duration::from_secs(window);
        tweak(c);
    })
    .await
}

async fn register(app: &TestApp, name: &str) {
    app.register(name, &format!("{name}@example.com"), PASSWORD)
        .await
        .assert_status(201);
}

async fn login(app: &TestApp, body: Value, forwarded: Option<&str>) -> Resp {
    let mut req = app.request(Method::POST, "/auth/login", None).json(&body);
    if let Some(xff) = forwarded {
        req = req.header("x-forwarded-for", xff);
    }
    app.send(req).await
}

async fn by_email(app: &TestApp, email: &str, password: &str) -> Resp {
    login(app, json!({"email": email, "password": password}), None).await
}

async fn by_username(app: &TestApp, username: &str, password: &str) -> Resp {
    login(
        app,
        json!({"username": username, "password": password}),
        None,
    )
    .await
}

/// Asserts a 429 and returns its `Retry-After`, checked to be a whole number
/// of seconds in 1..=window.
#[track_caller]
fn assert_limited(r: &Resp, window: u64) -> u64 {
    r.assert_error(429, "TooManyRequests");
    let retry: u64 = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("429 without Retry-After: {r:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After is not whole seconds: {r:?}"));
    assert!(
        (1..=window).contains(&retry),
        "Retry-After {retry} not in 1..={window}"
    );
    retry
}

async fn limited_after_max_failures_even_with_right_password(b: Backend) {
    let app = app_with(b, 3, 100, 60).await;
    register(&app, "ann").await;
    register(&app, "bob").await;
    for _ in 0..3 {
        by_email(&app, "ann@example.com", WRONG)
            .await
            .assert_error(401, "InvalidCredentials");
    }
    assert_limited(&by_email(&app, "ann@example.com", WRONG).await, 60);
    assert_limited(&by_email(&app, "ann@example.com", PASSWORD).await, 60);
    assert_limited(&by_username(&app, "ann", PASSWORD).await, 60);
    assert_limited(&by_email(&app, "ANN@example.com", PASSWORD).await, 60);
    // Another account is unaffected.
    by_email(&app, "bob@example.com", PASSWORD)
        .await
        .assert_status(200);
    by_email(&app, "bob@example.com", WRONG)
        .await
        .assert_error(401, "InvalidCredentials");
}

/// Attempts are counted before the password is checked, so a burst of
/// concurrent guesses gets no more than the limit through.
async fn concurrent_guesses_are_bounded(b: Backend) {
    for round in 0..RACE_ROUNDS {
        // A fresh app each round: the last round's counter is used up.
        let app = app_with(b, 3, 100, 60).await;
        register(&app, "ann").await;
        let results = race(20, |_| {
            let app = app.clone();
            async move { by_email(&app, "ann@example.com", WRONG).await }
        })
        .await;
        let checked = results.iter().filter(|r| r.status == 401).count();
        let limited = results.iter().filter(|r| r.status == 429).count();
        assert_eq!((checked, limited), (3, 17), "round {round}: {results:?}");
        assert_limited(&by_email(&app, "ann@example.com", PASSWORD).await, 60);
    }
}

async fn email_and_username_share_the_account_counter(b: Backend) {
    let app = app_with(b, 3, 100, 60).await;
    register(&app, "ann").await;
    by_email(&app, "ann@example.com", WRONG)
        .await
        .assert_error(401, "InvalidCredentials");
    by_username(&app, "ANN", WRONG)
        .await
        .assert_error(401, "InvalidCredentials");
    by_email(&app, "Ann@Example.com", WRONG)
        .await
        .assert_error(401, "InvalidCredentials");
    assert_limited(&by_username(&app, "ann", PASSWORD).await, 60);
    assert_limited(&by_email(&app, "ann@example.com", PASSWORD).await, 60);
}

async fn unknown_identifiers_are_limited_alike(b: Backend) {
    let app = app_with(b, 3, 100, 60).await;
    register(&app, "ann").await;
    let mut unknown = Vec::new();
    let mut known = Vec::new();
    for _ in 0..3 {
        unknown.push(by_email(&app, "ghost@example.com", WRONG).await);
        known.push(by_email(&app, "ann@example.com", WRONG).await);
    }
    for (u, k) in unknown.iter().zip(&known) {
        u.assert_error(401, "InvalidCredentials");
        assert_eq!(u.text, k.text, "unknown and wrong password differ");
    }
    let u = by_email(&app, "ghost@example.com", WRONG).await;
    let k = by_email(&app, "ann@example.com", WRONG).await;
    assert_limited(&u, 60);
    assert_limited(&k, 60);
    assert_eq!(u.body["code"], k.body["code"]);
    // The unknown identifier's counter ignores case, like account lookup.
    assert_limited(&by_email(&app, "GHOST@example.com", PASSWORD).await, 60);
    // Its own counter: another unknown identifier and another account are free.
    by_email(&app, "phantom@example.com", WRONG)
        .await
        .assert_error(401, "InvalidCredentials");
    register(&app, "bob").await;
    by_username(&app, "bob", PASSWORD).await.assert_status(200);
}

async fn success_resets_the_account_counter(b: Backend) {
    let app = app_with(b, 3, 100, 60).await;
    register(&app, "ann").await;
    for _ in 0..2 {
        by_email(&app, "ann@example.com", WRONG)
            .await
            .assert_error(401, "InvalidCredentials");
    }
    by_email(&app, "ann@example.com", PASSWORD)
        .await
        .assert_status(200);
    // A fresh budget of three failures.
    for _ in 0..3 {
        by_username(&app, "ann", WRONG)
            .await
            .assert_error(401, "InvalidCredentials");
    }
    assert_limited(&by_username(&app, "ann", PASSWORD).await, 60);
}

async fn blocked_account_right_password_is_not_a_failure(b: Backend) {
    let app = app_with(b, 2, 100, 60).await;
    let admin = app.admin().await;
    let ann = app.user("ann").await;
    app.send_json(
        Method::PATCH,
        &format!("/users/{}", ann.user_id),
        &json!({"blocked": true}),
        Some(&admin.access),
    )
    .await
    .assert_status(200);
    for _ in 0..4 {
        by_email(&app, "ann@example.com", PASSWORD)
            .await
            .assert_error(403, "UserBlocked");
    }
    // Wrong guesses still count.
    for _ in 0..2 {
        by_email(&app, "ann@example.com", WRONG)
            .await
            .assert_error(401, "InvalidCredentials");
    }
    assert_limited(&by_email(&app, "ann@example.com", PASSWORD).await, 60);
}

async fn per_ip_limit_spans_accounts(b: Backend) {
    let app = app_with(b, 100, 3, 60).await;
    for name in ["ann", "bob", "cat", "dan"] {
        register(&app, name).await;
    }
    for name in ["ann", "bob", "ghost"] {
        by_username(&app, name, WRONG)
            .await
            .assert_error(401, "InvalidCredentials");
    }
    // Every account, known or not, right password or not, from this address.
    assert_limited(&by_username(&app, "dan", PASSWORD).await, 60);
    assert_limited(&by_username(&app, "cat", WRONG).await, 60);
    assert_limited(&by_username(&app, "nobody", WRONG).await, 60);
}

async fn success_does_not_reset_the_ip_counter(b: Backend) {
    let app = app_with(b, 100, 3, 60).await;
    register(&app, "ann").await;
    for _ in 0..2 {
        by_username(&app, "ann", WRONG)
            .await
            .assert_error(401, "InvalidCredentials");
    }
    by_username(&app, "ann", PASSWORD).await.assert_status(200);
    by_username(&app, "ann", PASSWORD).await.assert_status(200);
    by_username(&app, "ann", WRONG)
        .await
        .assert_error(401, "InvalidCredentials");
    assert_limited(&by_username(&app, "ann", PASSWORD).await, 60);
}

async fn forwarded_addresses_count_apart_when_trusted(b: Backend) {
    let app = app_tweaked(b, 100, 2, 60, |c| c.trust_forwarded = true).await;
    register(&app, "ann").await;
    let wrong = json!({"username": "ann", "password": WRONG});
    let right = json!({"username": "ann", "password": PASSWORD});
    // The client may send anything on the left; the rightmost entry is the
    // address our gateway appended.
    for xff in ["198.51.100.1, 203.0.113.1", "10.9.9.9,203.0.113.1"] {
        login(&app, wrong.clone(), Some(xff))
            .await
            .assert_error(401, "InvalidCredentials");
    }
    assert_limited(&login(&app, right.clone(), Some("203.0.113.1")).await, 60);
    assert_limited(
        &login(&app, right.clone(), Some("203.0.113.2, 203.0.113.1")).await,
        60,
    );
    // Another rightmost address has its own counter, and is the session's ip.
    let r = login(&app, right.clone(), Some("203.0.113.1, 203.0.113.2")).await;
    r.assert_status(200);
    let sessions = app
        .get("/auth/sessions", Some(&r.str("access_token")))
        .await;
    sessions.assert_status(200);
    let ips: Vec<&str> = sessions
        .body
        .as_array()
        .expect("session list")
        .iter()
        .filter(|s| s["current"] == true)
        .filter_map(|s| s["ip"].as_str())
        .collect();
    assert_eq!(ips, ["203.0.113.2"]);
    // IPv6 clients count per /64.
    for xff in ["2001:db8:1:2::1", "2001:db8:1:2::ffff"] {
        login(&app, wrong.clone(), Some(xff))
            .await
            .assert_error(401, "InvalidCredentials");
    }
    assert_limited(
        &login(&app, right.clone(), Some("2001:db8:1:2::7")).await,
        60,
    );
    login(&app, right, Some("2001:db8:1:3::1"))
        .await
        .assert_status(200);
}

async fn forwarded_for_is_ignored_when_not_trusted(b: Backend) {
    let app = app_with(b, 100, 2, 60).await;
    register(&app, "ann").await;
    let right = json!({"username": "ann", "password": PASSWORD});
    let r = login(&app, right.clone(), Some("203.0.113.9")).await;
    r.assert_status(200);
    let sessions = app
        .get("/auth/sessions", Some(&r.str("access_token")))
        .await;
    assert_eq!(sessions.body[0]["ip"], "127.0.0.1", "{sessions:?}");

    for xff in ["203.0.113.1", "203.0.113.2"] {
        login(
            &app,
            json!({"username": "ann", "password": WRONG}),
            Some(xff),
        )
        .await
        .assert_error(401, "InvalidCredentials");
    }
    // Same socket peer: a new header buys no new attempts.
    assert_limited(&login(&app, right, Some("203.0.113.3")).await, 60);
}

async fn login_works_again_after_the_window(b: Backend) {
    let app = app_with(b, 2, 100, 2).await;
    register(&app, "ann").await;
    for _ in 0..2 {
        by_email(&app, "ann@example.com", WRONG)
            .await
            .assert_error(401, "InvalidCredentials");
    }
    let retry = assert_limited(&by_email(&app, "ann@example.com", PASSWORD).await, 2);
    tokio::time::sleep(Duration::from_millis(retry * 1000 + 200)).await;
    by_email(&app, "ann@example.com", PASSWORD)
        .await
        .assert_status(200);
}

const OWNER_AT: &str = "198.51.100.7";
const ATTACKER_AT: &str = "203.0.113.66";

/// Failures from one address lock the account at that address only: the
/// owner elsewhere keeps logging in, until the per-account ceiling, which
/// then locks every address.
async fn lockout_from_one_address_spares_the_owner_elsewhere(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.login_max_failures = 3;
        c.login_max_failures_per_account = 7;
        c.login_max_failures_per_ip = 100;
        c.login_window = Duration::from_secs(60);
        c.trust_forwarded = true;
    })
    .await;
    register(&app, "ann").await;
    let wrong = json!({"username": "ann", "password": WRONG});
    let right = json!({"email": "ann@example.com", "password": PASSWORD});
    for _ in 0..3 {
        login(&app, wrong.clone(), Some(ATTACKER_AT))
            .await
            .assert_error(401, "InvalidCredentials");
    }
    assert_limited(&login(&app, right.clone(), Some(ATTACKER_AT)).await, 60);
    // The owner at their own address is not locked out, and their login
    // does not unlock the attacker's address.
    for _ in 0..2 {
        login(&app, right.clone(), Some(OWNER_AT))
            .await
            .assert_status(200);
    }
    assert_limited(&login(&app, wrong.clone(), Some(ATTACKER_AT)).await, 60);
    // The owner's own mistakes count at their address, and a success there
    // clears them (a fresh budget of three).
    for _ in 0..2 {
        login(&app, wrong.clone(), Some(OWNER_AT))
            .await
            .assert_error(401, "InvalidCredentials");
    }
    login(&app, right.clone(), Some(OWNER_AT))
        .await
        .assert_status(200);
    // Account failures so far: 3 + 2 = 5 of 7. Two more from a third
    // address reach the ceiling: then every address is refused, the owner's
    // too, even with the right password.
    for _ in 0..2 {
        login(&app, wrong.clone(), Some("192.0.2.44"))
            .await
            .assert_error(401, "InvalidCredentials");
    }
    assert_limited(&login(&app, right.clone(), Some(OWNER_AT)).await, 60);
    assert_limited(&login(&app, right, Some("192.0.2.45")).await, 60);
    let metrics = app.get("/metrics", None).await;
    for limit in ["account_ip", "account"] {
        let series = format!("tessera_rate_limited_total{{limit=\"{limit}\"}} ");
        let n: u64 = metrics
            .text
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in {}", metrics.text));
        assert!(n >= 1, "{series}{n}");
    }
}

/// A wrong `current_password` counts per account and address like a login.
async fn password_change_failures_lock_only_that_address(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.login_max_failures = 2;
        c.trust_forwarded = true;
    })
    .await;
    let ann = app.user("ann").await;
    let change = |current: &'static str, at: &'static str| {
        let req = app
            .request(Method::PUT, "/users/me/password", Some(&ann.access))
            .header("x-forwarded-for", at)
            .json(&json!({"current_password": current, "new_password": "a brand new password"}));
        app.send(req)
    };
    for _ in 0..2 {
        change(WRONG, ATTACKER_AT)
            .await
            .assert_error(401, "InvalidCredentials");
    }
    r_limited(&change(WRONG, ATTACKER_AT).await);
    let r = login(
        &app,
        json!({"username": "ann", "password": PASSWORD}),
        Some(OWNER_AT),
    )
    .await;
    r.assert_status(200);
}

#[track_caller]
fn r_limited(r: &Resp) {
    assert_limited(r, 900);
}

/// `TESSERA_REGISTER_PER_IP`: every attempt from an address counts, the
/// 409 for a taken email and the 422 included; then 429 with
/// `Retry-After`, for that address only.
async fn registrations_are_limited_per_address(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.register_per_ip = 3;
        c.trust_forwarded = true;
    })
    .await;
    let sign_up = |name: &str, email: &str, at: &str| {
        let req = app
            .request(Method::POST, "/auth/register", None)
            .header("x-forwarded-for", at)
            .json(&json!({"username": name, "email": email, "password": PASSWORD}));
        app.send(req)
    };
    sign_up("ann", "ann@example.com", ATTACKER_AT)
        .await
        .assert_status(201);
    sign_up("ann2", "ann@example.com", ATTACKER_AT)
        .await
        .assert_error(409, "Conflict");
    sign_up("ann3", "not an email", ATTACKER_AT)
        .await
        .assert_error(422, "ValidationFailed");
    // The oracle is throttled: a taken email is 429 now, like a free one.
    for (name, email) in [("bob", "bob@example.com"), ("ann4", "ann@example.com")] {
        let r = sign_up(name, email, ATTACKER_AT).await;
        let retry = assert_limited(&r, 3600);
        assert!(retry > 3000, "Retry-After {retry}: the hour's window");
    }
    // Another address has its own budget.
    sign_up("bob", "bob@example.com", OWNER_AT)
        .await
        .assert_status(201);
    sign_up("cat", "ann@example.com", OWNER_AT)
        .await
        .assert_error(409, "Conflict");
    let metrics = app.get("/metrics", None).await;
    assert!(
        !metrics
            .text
            .contains("tessera_rate_limited_total{limit=\"register\"} 0\n"),
        "{}",
        metrics.text
    );
}

crate::both_backends!(
    lockout_from_one_address_spares_the_owner_elsewhere,
    password_change_failures_lock_only_that_address,
    registrations_are_limited_per_address,
    limited_after_max_failures_even_with_right_password,
    concurrent_guesses_are_bounded,
    email_and_username_share_the_account_counter,
    unknown_identifiers_are_limited_alike,
    success_resets_the_account_counter,
    blocked_account_right_password_is_not_a_failure,
    per_ip_limit_spans_accounts,
    success_does_not_reset_the_ip_counter,
    forwarded_addresses_count_apart_when_trusted,
    forwarded_for_is_ignored_when_not_trusted,
    login_works_again_after_the_window,
);

/// With the token store down a login is 503 whatever the password: the limit
/// cannot be checked, so no guess is let through unchecked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_down_fails_closed() {
    let mut redis = crate::helpers::RedisServer::start();
    let url = redis.url();
    let app = spawn_app_with(Backend::PostgresRedis, |c| c.redis_url = Some(url)).await;
    register(&app, "ann").await;
    redis.stop();
    by_email(&app, "ann@example.com", WRONG)
        .await
        .assert_error(503, "ServiceUnavailable");
    by_email(&app, "ghost@example.com", WRONG)
        .await
        .assert_error(503, "ServiceUnavailable");
}
