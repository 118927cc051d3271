//! Accounts by email (API.md "Email"): recovery, verification and address
//! change, through the real outbox and a real SMTP server (the harness's
//! aiosmtpd), on SQLite + memory and PostgreSQL + Redis.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use tessera::config::EmailVerification;

use crate::helpers::{
    Backend, PASSWORD, RACE_ROUNDS, TestApp, Tokens, race, spawn_app, spawn_app_with,
};

crate::sql_backends!(
    a_reset_link_works_once_and_ends_every_session,
    forgot_answers_the_same_for_every_address,
    forgot_is_limited_per_address_and_per_ip,
    only_the_newest_reset_link_works,
    account_changes_spend_outstanding_links,
    a_weak_password_spends_nothing,
    concurrent_resets_with_one_link_have_one_winner,
    a_reset_racing_a_password_change_leaves_one_password,
    forgot_racing_a_block_opens_nothing,
    wrong_link_tokens_count_against_the_address,
    registration_mails_a_verification_link,
    resend_supersedes_and_refuses_when_verified,
    required_verification_refuses_unverified_logins,
    verification_off_sends_nothing_and_changes_apply_at_once,
    an_address_change_waits_for_the_new_mailbox,
    an_address_taken_meanwhile_is_a_conflict,
    nothing_usable_is_stored,
    answers_never_wait_for_the_mail_server,
    concurrent_verifications_have_one_winner,
    an_address_confirmation_racing_a_password_change_is_consistent,
    links_are_built_from_the_configured_urls,
);

const NEW_PASSWORD: &str = "a brand new passphrase";
const MAIL_WAIT: Duration = Duration::from_secs(20);

fn addr(name: &str) -> String {
    format!("{name}@example.com")
}

/// The token of mail number `n` (1-based, oldest first) to `to` whose link
/// opens `page` (`reset-password` or `verify-email`); waits for it.
async fn link_token(app: &TestApp, to: &str, page: &str, n: usize) -> String {
    let marker = format!("/{page}#token=");
    let deadline = Instant::now() + MAIL_WAIT;
    loop {
        let mails: Vec<_> = app
            .mails_to(to)
            .into_iter()
            .filter(|m| m.text.contains(&marker))
            .collect();
        if mails.len() >= n {
            return mails[n - 1]
                .link_token()
                .unwrap_or_else(|| panic!("no token in {:?}", mails[n - 1].text));
        }
        assert!(
            Instant::now() < deadline,
            "mail {n} to {to} with {marker} did not arrive; got {} such mails",
            mails.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for a mail to `to` without a link whose subject mentions `topic`.
async fn wait_for_notice(app: &TestApp, to: &str, topic: &str) {
    let deadline = Instant::now() + MAIL_WAIT;
    while !app
        .mails_to(to)
        .iter()
        .any(|m| !m.text.contains("#token=") && m.subject.to_lowercase().contains(topic))
    {
        assert!(
            Instant::now() < deadline,
            "no {topic} notice to {to}: {:?}",
            app.mails_to(to)
                .iter()
                .map(|m| &m.subject)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Mails to `to` whose text contains `needle`.
async fn count_mails(app: &TestApp, to: &str, needle: &str) -> usize {
    app.mails_to(to)
        .into_iter()
        .filter(|m| m.text.contains(needle))
        .count()
}

async fn forgot(app: &TestApp, email: &str) -> crate::helpers::Resp {
    app.post_json("/auth/password/forgot", &json!({ "email": email }), None)
        .await
}

async fn reset(app: &TestApp, token: &str, password: &str) -> crate::helpers::Resp {
    app.post_json(
        "/auth/password/reset",
        &json!({ "token": token, "new_password": password }),
        None,
    )
    .await
}

async fn verify_email(app: &TestApp, token: &str) -> crate::helpers::Resp {
    app.post_json("/auth/email/verify", &json!({ "token": token }), None)
        .await
}

async fn me(app: &TestApp, t: &Tokens) -> serde_json::Value {
    let r = app.get("/users/me", Some(&t.access)).await;
    r.assert_status(200);
    r.body
}

// ---------------------------------------------------------------- recovery

async fn a_reset_link_works_once_and_ends_every_session(b: Backend) {
    let app = spawn_app(b).await;
    let t1 = app.user("ann").await;
    let t2 = app.login("ann").await;
    assert_eq!(me(&app, &t1).await["email_verified"], false);
    let r = forgot(&app, &addr("ann")).await;
    r.assert_status(202);
    assert_eq!(r.body, json!({"status": "accepted"}));
    let token = link_token(&app, &addr("ann"), "reset-password", 1).await;
    let mail = app
        .mails_to(&addr("ann"))
        .into_iter()
        .find(|m| m.text.contains("reset-password#token="))
        .expect("the reset mail");
    assert!(mail.html.contains("reset-password#token="), "HTML part");

    reset(&app, &token, NEW_PASSWORD).await.assert_status(204);
    // Every session ended; nobody was logged in by the reset.
    app.assert_revoked(&[&t1, &t2], "/users/me").await;
    app.login_email(&addr("ann"), PASSWORD)
        .await
        .assert_error(401, "InvalidCredentials");
    let r = app.login_email(&addr("ann"), NEW_PASSWORD).await;
    r.assert_status(200);
    let t3 = Tokens {
        access: r.str("access_token"),
        refresh: r.str("refresh_token"),
        user_id: r.str("user_id"),
    };
    // The mailbox was proven.
    assert_eq!(me(&app, &t3).await["email_verified"], true);
    // Single use.
    reset(&app, &token, "yet another passphrase")
        .await
        .assert_error(400, "LinkInvalid");
    // The "your password was changed" notice (a mail without a link).
    wait_for_notice(&app, &addr("ann"), "password").await;
}

async fn forgot_answers_the_same_for_every_address(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin().await;
    app.user("ann").await;
    let bob = app.user("bob").await;
    crate::admin::patch_user(
        &app,
        &bob.user_id,
        json!({"blocked": true}),
        Some(&admin.access),
    )
    .await
    .assert_status(200);
    let mut answers = Vec::new();
    for email in [
        addr("ann"),
        addr("nobody"),
        addr("bob"),
        "ANN@Example.COM".into(),
    ] {
        let r = forgot(&app, &email).await;
        answers.push((
            r.status.as_u16(),
            r.text.clone(),
            r.header("content-type").map(str::to_owned),
        ));
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "different answers: {answers:?}"
    );
    assert_eq!(answers[0].0, 202);
    // Only the existing, unblocked account gets mail (at least one: of two
    // requests resolved at once, only the newer link is worth sending).
    link_token(&app, &addr("ann"), "reset-password", 1).await;
    app.assert_no_mail_to(&addr("nobody"), Duration::from_millis(500))
        .await;
    assert_eq!(count_mails(&app, &addr("bob"), "reset-password").await, 0);

    // Timing: the lookup runs off the request path, so an existing and an
    // unknown address cost the same. Medians of interleaved requests,
    // with a tolerance for a shared CI machine.
    let app = spawn_app_with(b, |c| {
        c.mail_per_address = 0;
        c.mail_per_ip = 0;
    })
    .await;
    app.user("ann").await;
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for i in 0..30 {
        for (email, into) in [
            (addr("ann"), &mut known),
            (format!("nobody{i}@example.com"), &mut unknown),
        ] {
            let start = Instant::now();
            forgot(&app, &email).await.assert_status(202);
            into.push(start.elapsed());
        }
    }
    known.sort();
    unknown.sort();
    let (k, u) = (known[15], unknown[15]);
    let (lo, hi) = if k < u { (k, u) } else { (u, k) };
    // Generous for a loaded CI machine; mail sent inline for existing
    // accounts (an SMTP conversation, tens of ms) would still show.
    assert!(
        hi <= lo * 3 + Duration::from_millis(5),
        "forgot's median time differs: existing {k:?}, unknown {u:?}"
    );
}

async fn forgot_is_limited_per_address_and_per_ip(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.mail_per_address = 3;
        c.mail_per_ip = 8;
    })
    .await;
    app.user("ann").await;
    // Per address, whether or not it has an account.
    for email in [addr("ann"), addr("nobody")] {
        for _ in 0..3 {
            forgot(&app, &email).await.assert_status(202);
        }
        let r = forgot(&app, &email).await;
        r.assert_error(429, "TooManyRequests");
        let retry: u64 = r
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .unwrap();
        assert!((1..=3600).contains(&retry), "{retry}");
    }
    // Per client IP: 8 requests so far (every one counts), so a ninth, to
    // another address, is refused too.
    forgot(&app, &addr("carol"))
        .await
        .assert_error(429, "TooManyRequests");
    // At most three reset mails to ann (requests resolved in one batch
    // supersede each other's links, and a dead link is not sent).
    link_token(&app, &addr("ann"), "reset-password", 1).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let sent = count_mails(&app, &addr("ann"), "reset-password").await;
    assert!((1..=3).contains(&sent), "{sent} reset mails");
}

async fn only_the_newest_reset_link_works(b: Backend) {
    let app = spawn_app(b).await;
    app.user("ann").await;
    forgot(&app, &addr("ann")).await.assert_status(202);
    let first = link_token(&app, &addr("ann"), "reset-password", 1).await;
    forgot(&app, &addr("ann")).await.assert_status(202);
    let second = link_token(&app, &addr("ann"), "reset-password", 2).await;
    assert_ne!(first, second);
    reset(&app, &first, NEW_PASSWORD)
        .await
        .assert_error(400, "LinkInvalid");
    reset(&app, &second, NEW_PASSWORD).await.assert_status(204);
    app.login_email(&addr("ann"), NEW_PASSWORD)
        .await
        .assert_status(200);
}

async fn account_changes_spend_outstanding_links(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin().await;
    let t = app.user("ann").await;
    forgot(&app, &addr("ann")).await.assert_status(202);
    let token = link_token(&app, &addr("ann"), "reset-password", 1).await;
    // A password change (which mails its own notice) spends the link.
    app.send_json(
        Method::PUT,
        "/users/me/password",
        &json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
        Some(&t.access),
    )
    .await
    .assert_status(204);
    reset(&app, &token, "yet another passphrase")
        .await
        .assert_error(400, "LinkInvalid");
    wait_for_notice(&app, &addr("ann"), "password").await;
    // A role change does too.
    forgot(&app, &addr("ann")).await.assert_status(202);
    let token = link_token(&app, &addr("ann"), "reset-password", 2).await;
    crate::admin::patch_user(
        &app,
        &t.user_id,
        json!({"role": "admin"}),
        Some(&admin.access),
    )
    .await
    .assert_status(200);
    reset(&app, &token, "yet another passphrase")
        .await
        .assert_error(400, "LinkInvalid");
    app.login_email(&addr("ann"), NEW_PASSWORD)
        .await
        .assert_status(200);
}

async fn a_weak_password_spends_nothing(b: Backend) {
    let app = spawn_app(b).await;
    app.user("ann").await;
    forgot(&app, &addr("ann")).await.assert_status(202);
    let token = link_token(&app, &addr("ann"), "reset-password", 1).await;
    let r = reset(&app, &token, "short").await;
    r.assert_error(422, "ValidationFailed");
    assert!(r.body["fields"]["new_password"].is_string(), "{r:?}");
    app.login_email(&addr("ann"), PASSWORD)
        .await
        .assert_status(200);
    reset(&app, &token, NEW_PASSWORD).await.assert_status(204);
}

async fn concurrent_resets_with_one_link_have_one_winner(b: Backend) {
    let app = spawn_app(b).await;
    app.user("ann").await;
    for round in 1..=RACE_ROUNDS {
        forgot(&app, &addr("ann")).await.assert_status(202);
        let token = link_token(&app, &addr("ann"), "reset-password", round).await;
        let results = race(10, |i| {
            let app = app.clone();
            let token = token.clone();
            async move {
                let r = reset(&app, &token, &format!("racer number {i} wins")).await;
                (i, r.status.as_u16(), r.body["code"].clone())
            }
        })
        .await;
        let winners: Vec<_> = results.iter().filter(|(_, s, _)| *s == 204).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        for (_, status, code) in &results {
            assert!(
                *status == 204 || (*status == 400 && code == "LinkInvalid"),
                "{results:?}"
            );
        }
        // The winner's password is the password.
        let winner = winners[0].0;
        app.login_email(&addr("ann"), &format!("racer number {winner} wins"))
            .await
            .assert_status(200);
    }
}

async fn a_reset_racing_a_password_change_leaves_one_password(b: Backend) {
    let app = spawn_app(b).await;
    app.user("ann").await;
    for round in 1..=RACE_ROUNDS {
        let current = if round == 1 {
            PASSWORD.to_owned()
        } else {
            format!("password of round {}", round - 1)
        };
        let t = {
            let r = app.login_email(&addr("ann"), &current).await;
            r.assert_status(200);
            r.str("access_token")
        };
        forgot(&app, &addr("ann")).await.assert_status(202);
        let token = link_token(&app, &addr("ann"), "reset-password", round).await;
        let by_reset = format!("reset of round {round}");
        let by_change = format!("change of round {round}");
        let results = race(2, |i| {
            let app = app.clone();
            let (token, t, current, by_reset, by_change) = (
                token.clone(),
                t.clone(),
                current.clone(),
                by_reset.clone(),
                by_change.clone(),
            );
            async move {
                if i == 0 {
                    reset(&app, &token, &by_reset).await.status.as_u16()
                } else {
                    app.send_json(
                        Method::PUT,
                        "/users/me/password",
                        &json!({"current_password": current, "new_password": by_change}),
                        Some(&t),
                    )
                    .await
                    .status
                    .as_u16()
                }
            }
        })
        .await;
        // Either order is fine; the answers must say which password won.
        let works = |p: String| {
            let app = app.clone();
            async move { app.login_email(&addr("ann"), &p).await.status.as_u16() == 200 }
        };
        let (reset_ok, change_ok) = (
            works(by_reset.clone()).await,
            works(by_change.clone()).await,
        );
        assert!(
            reset_ok != change_ok,
            "round {round}: {results:?}, reset works {reset_ok}, change works {change_ok}"
        );
        assert!(
            results.iter().all(|s| [204, 400, 401].contains(s)),
            "{results:?}"
        );
        if results[0] != 204 {
            assert!(change_ok, "{results:?}");
        }
        // Carry the winner into the next round's "current".
        let next = format!("password of round {round}");
        let winner = if reset_ok { by_reset } else { by_change };
        let r = app.login_email(&addr("ann"), &winner).await;
        app.send_json(
            Method::PUT,
            "/users/me/password",
            &json!({"current_password": winner, "new_password": next}),
            Some(&r.str("access_token")),
        )
        .await
        .assert_status(204);
    }
}

async fn forgot_racing_a_block_opens_nothing(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin().await;
    for round in 0..RACE_ROUNDS {
        let name = format!("victim{round}");
        let t = app.user(&name).await;
        race(2, |i| {
            let app = app.clone();
            let (name, id, admin) = (name.clone(), t.user_id.clone(), admin.access.clone());
            async move {
                if i == 0 {
                    forgot(&app, &addr(&name)).await.assert_status(202);
                } else {
                    crate::admin::patch_user(&app, &id, json!({"blocked": true}), Some(&admin))
                        .await
                        .assert_status(200);
                }
            }
        })
        .await;
        // Whatever was mailed opens nothing: the account is blocked.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        for m in app.mails_to(&addr(&name)) {
            if let Some(token) = m.link_token().filter(|_| m.text.contains("reset-password")) {
                reset(&app, &token, NEW_PASSWORD)
                    .await
                    .assert_error(400, "LinkInvalid");
            }
        }
        app.login_email(&addr(&name), PASSWORD)
            .await
            .assert_error(403, "UserBlocked");
    }
}

async fn wrong_link_tokens_count_against_the_address(b: Backend) {
    let app = spawn_app_with(b, |c| c.login_max_failures_per_ip = 3).await;
    app.user("ann").await;
    forgot(&app, &addr("ann")).await.assert_status(202);
    let token = link_token(&app, &addr("ann"), "reset-password", 1).await;
    let wrong = format!("{}A", &token[..42]);
    let wrong = if wrong == token {
        format!("{}B", &token[..42])
    } else {
        wrong
    };
    for bad in [wrong.as_str(), "not-a-token", ""] {
        reset(&app, bad, NEW_PASSWORD)
            .await
            .assert_error(400, "LinkInvalid");
    }
    let r = verify_email(&app, &wrong).await;
    r.assert_error(429, "TooManyRequests");
    assert!(r.header("retry-after").is_some());
    // Even the right token waits for the window.
    reset(&app, &token, NEW_PASSWORD)
        .await
        .assert_error(429, "TooManyRequests");
}

// ---------------------------------------------------------------- verification

async fn registration_mails_a_verification_link(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.user("ann").await;
    let token = link_token(&app, &addr("ann"), "verify-email", 1).await;
    assert_eq!(me(&app, &t).await["email_verified"], false);
    let r = verify_email(&app, &token).await;
    r.assert_status(200);
    crate::admin::assert_user_shape(&r.body);
    assert_eq!(r.body["email_verified"], true);
    assert_eq!(r.body["email"], addr("ann"));
    assert_eq!(me(&app, &t).await["email_verified"], true);
    verify_email(&app, &token)
        .await
        .assert_error(400, "LinkInvalid");
    // Verification ends no session.
    app.verify(&t.access).await.assert_status(200);
}

async fn resend_supersedes_and_refuses_when_verified(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.user("ann").await;
    let first = link_token(&app, &addr("ann"), "verify-email", 1).await;
    let r = app.post("/auth/email/resend", Some(&t.access)).await;
    r.assert_status(202);
    assert_eq!(r.body, json!({"status": "accepted"}));
    let second = link_token(&app, &addr("ann"), "verify-email", 2).await;
    verify_email(&app, &first)
        .await
        .assert_error(400, "LinkInvalid");
    verify_email(&app, &second).await.assert_status(200);
    app.post("/auth/email/resend", Some(&t.access))
        .await
        .assert_error(409, "Conflict");
    app.post("/auth/email/resend", None)
        .await
        .assert_error(401, "TokenMissing");
}

async fn required_verification_refuses_unverified_logins(b: Backend) {
    let app = spawn_app_with(b, |c| c.email_verification = EmailVerification::Required).await;
    app.register("ann", &addr("ann"), PASSWORD)
        .await
        .assert_status(201);
    app.login_email(&addr("ann"), PASSWORD)
        .await
        .assert_error(403, "EmailNotVerified");
    // The wrong password learns nothing about verification.
    app.login_email(&addr("ann"), "not the password")
        .await
        .assert_error(401, "InvalidCredentials");
    let token = link_token(&app, &addr("ann"), "verify-email", 1).await;
    verify_email(&app, &token).await.assert_status(200);
    app.login_email(&addr("ann"), PASSWORD)
        .await
        .assert_status(200);
    // The bootstrap admin is verified.
    app.admin().await;
}

async fn verification_off_sends_nothing_and_changes_apply_at_once(b: Backend) {
    let app = spawn_app_with(b, |c| c.email_verification = EmailVerification::Off).await;
    let t = app.user("ann").await;
    app.assert_no_mail_to(&addr("ann"), Duration::from_millis(800))
        .await;
    let r = app
        .send_json(
            Method::PATCH,
            "/users/me",
            &json!({"email": addr("annie")}),
            Some(&t.access),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.body["email"], addr("annie"));
    assert_eq!(r.body["pending_email"], serde_json::Value::Null);
    app.post("/auth/email/resend", Some(&t.access))
        .await
        .assert_error(409, "Conflict");
}

async fn an_address_change_waits_for_the_new_mailbox(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.user("ann").await;
    let change = json!({"email": addr("annie")});
    // A refreshed (non-fresh) token cannot change the address.
    let stale = app.non_fresh(&t).await;
    app.send_json(Method::PATCH, "/users/me", &change, Some(&stale.access))
        .await
        .assert_error(401, "FreshTokenNeeded");
    let fresh = app.login("ann").await;
    let r = app
        .send_json(Method::PATCH, "/users/me", &change, Some(&fresh.access))
        .await;
    r.assert_status(200);
    assert_eq!(r.body["email"], addr("ann"));
    assert_eq!(r.body["pending_email"], addr("annie"));
    // A confirmation to the new address, a notice to the old one.
    let token = link_token(&app, &addr("annie"), "verify-email", 1).await;
    let deadline = Instant::now() + MAIL_WAIT;
    while !app
        .mails_to(&addr("ann"))
        .iter()
        .any(|m| !m.text.contains("#token=") && m.text.contains("a***@example.com"))
    {
        assert!(
            Instant::now() < deadline,
            "no notice to the old address: {:?}",
            app.mails_to(&addr("ann"))
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Not yet the address.
    app.login_email(&addr("annie"), PASSWORD)
        .await
        .assert_error(401, "InvalidCredentials");
    let r = verify_email(&app, &token).await;
    r.assert_status(200);
    assert_eq!(r.body["email"], addr("annie"));
    assert_eq!(r.body["email_verified"], true);
    assert_eq!(r.body["pending_email"], serde_json::Value::Null);
    app.login_email(&addr("annie"), PASSWORD)
        .await
        .assert_status(200);
    app.login_email(&addr("ann"), PASSWORD)
        .await
        .assert_error(401, "InvalidCredentials");
}

async fn an_address_taken_meanwhile_is_a_conflict(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.user("ann").await;
    app.send_json(
        Method::PATCH,
        "/users/me",
        &json!({"email": addr("shared")}),
        Some(&t.access),
    )
    .await
    .assert_status(200);
    let token = link_token(&app, &addr("shared"), "verify-email", 1).await;
    app.register("bob", &addr("shared"), PASSWORD)
        .await
        .assert_status(201);
    verify_email(&app, &token)
        .await
        .assert_error(409, "Conflict");
    let me = me(&app, &t).await;
    assert_eq!(me["email"], addr("ann"));
    // Asking for the taken address now is a conflict at once.
    app.send_json(
        Method::PATCH,
        "/users/me",
        &json!({"email": addr("shared")}),
        Some(&t.access),
    )
    .await
    .assert_error(409, "Conflict");
}

// ---------------------------------------------------------------- at rest

/// The tokens that work are nowhere in the database: not in the link rows
/// (hashes), not in the outbox (derived at send time), and on SQLite not in
/// the database files (WAL and free pages included).
async fn nothing_usable_is_stored(b: Backend) {
    use sea_orm::{ConnectionTrait, Statement};
    let app = spawn_app(b).await;
    app.user("ann").await;
    forgot(&app, &addr("ann")).await.assert_status(202);
    let reset_token = link_token(&app, &addr("ann"), "reset-password", 1).await;
    let verify_token = link_token(&app, &addr("ann"), "verify-email", 1).await;
    let backend = app.state.db.get_database_backend();
    let mut dump = String::new();
    for table in ["one_time_links", "outbox", "users"] {
        let rows = app
            .state
            .db
            .query_all_raw(Statement::from_string(
                backend,
                format!("SELECT * FROM {table}"),
            ))
            .await
            .unwrap();
        dump.push_str(&format!("{rows:?}"));
    }
    for token in [&reset_token, &verify_token] {
        assert!(!dump.contains(token.as_str()), "a working token is stored");
    }
    if b == Backend::SqliteMemory {
        let file = app
            .config
            .database_url
            .trim_start_matches("sqlite://")
            .split('?')
            .next()
            .unwrap()
            .to_owned();
        for path in [file.clone(), format!("{file}-wal")] {
            if let Ok(bytes) = std::fs::read(&path) {
                let text = String::from_utf8_lossy(&bytes);
                for token in [&reset_token, &verify_token] {
                    assert!(!text.contains(token.as_str()), "a token in {path}");
                }
            }
        }
    }
    // Still usable from the mail.
    reset(&app, &reset_token, NEW_PASSWORD)
        .await
        .assert_status(204);
}

// ---------------------------------------------------------------- mail server faults

/// A mail server that hangs or is down changes no answer and no latency;
/// the mail arrives once it is back.
async fn answers_never_wait_for_the_mail_server(b: Backend) {
    use crate::helpers::smtp::MailServer;
    use secrecy::SecretString;
    let mut server = MailServer::start();
    let url = server.url();
    let app = spawn_app_with(b, |c| c.smtp_url = Some(SecretString::from(url.clone()))).await;
    // Hanging: connections open, nothing answers (lettre's timeout is 10 s).
    server.freeze();
    let timed = |r: crate::helpers::Resp, start: Instant, status: u16| {
        r.assert_status(status);
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "a request waited for the mail server: {:?}",
            start.elapsed()
        );
    };
    let start = Instant::now();
    timed(
        app.register("ann", &addr("ann"), PASSWORD).await,
        start,
        201,
    );
    // Let the sender get stuck on the hanging server.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    timed(forgot(&app, &addr("ann")).await, start, 202);
    server.thaw();
    link_token(&app, &addr("ann"), "verify-email", 1).await;
    let first = link_token(&app, &addr("ann"), "reset-password", 1).await;
    // Down: connections refused.
    server.stop();
    let start = Instant::now();
    timed(forgot(&app, &addr("ann")).await, start, 202);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _back = MailServer::start_on(server.port);
    let second = link_token(&app, &addr("ann"), "reset-password", 2).await;
    assert_ne!(first, second);
    reset(&app, &second, NEW_PASSWORD).await.assert_status(204);
}

async fn concurrent_verifications_have_one_winner(b: Backend) {
    let app = spawn_app(b).await;
    app.user("ann").await;
    let token = link_token(&app, &addr("ann"), "verify-email", 1).await;
    let results = race(10, |_| {
        let app = app.clone();
        let token = token.clone();
        async move {
            let r = verify_email(&app, &token).await;
            (r.status.as_u16(), r.body["code"].clone())
        }
    })
    .await;
    assert_eq!(
        results.iter().filter(|(s, _)| *s == 200).count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .all(|(s, c)| *s == 200 || (*s == 400 && c == "LinkInvalid")),
        "{results:?}"
    );
}

/// An address confirmation and a password change at once: both lock the
/// account's row first, so neither deadlocks nor errs; a change that lands
/// first spends the link.
async fn an_address_confirmation_racing_a_password_change_is_consistent(b: Backend) {
    let app = spawn_app(b).await;
    app.user("ann").await;
    // The registration's mail is verification mail 1 to ann.
    link_token(&app, &addr("ann"), "verify-email", 1).await;
    let mut password = PASSWORD.to_owned();
    let mut back_mails = 0;
    for round in 1..=RACE_ROUNDS {
        let t = app.login_email(&addr("ann"), &password).await;
        t.assert_status(200);
        let access = t.str("access_token");
        let new_email = format!("ann{round}@example.com");
        app.send_json(
            Method::PATCH,
            "/users/me",
            &json!({"email": new_email}),
            Some(&access),
        )
        .await
        .assert_status(200);
        let token = link_token(&app, &new_email, "verify-email", 1).await;
        let next = format!("password of round {round}");
        let results = race(2, |i| {
            let app = app.clone();
            let (token, access, password, next) = (
                token.clone(),
                access.clone(),
                password.clone(),
                next.clone(),
            );
            async move {
                if i == 0 {
                    verify_email(&app, &token).await.status.as_u16()
                } else {
                    app.send_json(
                        Method::PUT,
                        "/users/me/password",
                        &json!({"current_password": password, "new_password": next}),
                        Some(&access),
                    )
                    .await
                    .status
                    .as_u16()
                }
            }
        })
        .await;
        assert_eq!(results[1], 204, "the password change: {results:?}");
        assert!([200, 400].contains(&results[0]), "{results:?}");
        password = next;
        // The account's address is the new one exactly when the link won.
        let current = if results[0] == 200 {
            new_email.clone()
        } else {
            addr("ann")
        };
        app.login_email(&current, &password)
            .await
            .assert_status(200);
        if results[0] == 200 {
            // Back to the old address for the next round, at once (the
            // address is free); confirmation needed again.
            let t = app.login_email(&current, &password).await;
            let access = t.str("access_token");
            app.send_json(
                Method::PATCH,
                "/users/me",
                &json!({"email": addr("ann")}),
                Some(&access),
            )
            .await
            .assert_status(200);
            let back = link_token(&app, &addr("ann"), "verify-email", back_mails + 2).await;
            back_mails += 1;
            verify_email(&app, &back).await.assert_status(200);
        }
    }
}

/// Links come from `TESSERA_PUBLIC_URL` (or `TESSERA_LINK_BASE_URL`), never
/// from the request's `Host`.
async fn links_are_built_from_the_configured_urls(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.public_url = Some("https://auth.example.com/".into())
    })
    .await;
    let r = app
        .send(
            app.request(Method::POST, "/auth/register", None)
                .header("host", "evil.example")
                .header("x-forwarded-host", "evil.example")
                .json(&json!({"username": "ann", "email": addr("ann"), "password": PASSWORD})),
        )
        .await;
    r.assert_status(201);
    link_token(&app, &addr("ann"), "verify-email", 1).await;
    let link = app.mails_to(&addr("ann"))[0].link().expect("a link");
    assert!(
        link.starts_with("https://auth.example.com/account/verify-email#token="),
        "{link}"
    );

    let app = spawn_app_with(b, |c| {
        c.link_base_url = Some("https://app.example/auth/".into())
    })
    .await;
    app.user("ann").await;
    forgot(&app, &addr("ann")).await.assert_status(202);
    link_token(&app, &addr("ann"), "reset-password", 1).await;
    let links: Vec<String> = app
        .mails_to(&addr("ann"))
        .iter()
        .filter_map(|m| m.link())
        .collect();
    assert!(
        links
            .iter()
            .any(|l| l.starts_with("https://app.example/auth/reset-password#token=")),
        "{links:?}"
    );
    assert!(
        links
            .iter()
            .all(|l| l.starts_with("https://app.example/auth/")),
        "{links:?}"
    );
}
