//! Changes that end a user's sessions win against logins in flight (API.md
//! "Precise rules"): once the change has answered, no token from a login
//! that began before it works. Logins run in a loop on several tasks while
//! the change runs, with an argon2 cost that keeps each login in flight for
//! a while, so some of them are always between "password checked" and
//! "session stored" when the change lands.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::json;

use crate::helpers::{Backend, PASSWORD, TestApp, spawn_app_with};

const WORKERS: usize = 4;

/// A login's start time and, if it answered 200, its tokens.
struct Attempt {
    began: Instant,
    tokens: Option<(String, String)>,
}

/// Logs in as `email` on `WORKERS` tasks until `stop`; every attempt.
fn storm(
    app: &Arc<TestApp>,
    email: &str,
    stop: &Arc<AtomicBool>,
    succeeded: &Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<Vec<Attempt>>> {
    (0..WORKERS)
        .map(|_| {
            let (app, stop, email) = (app.clone(), stop.clone(), email.to_owned());
            let succeeded = succeeded.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let began = Instant::now();
                    let r = app.login_email(&email, PASSWORD).await;
                    let tokens =
                        (r.status == 200).then(|| (r.str("access_token"), r.str("refresh_token")));
                    if tokens.is_some() {
                        succeeded.fetch_add(1, Ordering::SeqCst);
                    }
                    out.push(Attempt { began, tokens });
                }
                out
            })
        })
        .collect()
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Password,
    Block,
    Role,
    LogoutAll,
}

async fn change_wins(backend: Backend, kind: Kind) {
    let app = Arc::new(
        spawn_app_with(backend, |c| {
            // ~10x the test default: logins stay in flight for a while.
            c.argon2_memory_kib = 8 * 1024;
            c.argon2_iterations = 2;
            // Failed logins after a password change must not hit the limit
            // and change what the storm sees.
            c.login_max_failures = 0;
            c.login_max_failures_per_ip = 0;
        })
        .await,
    );
    let admin = app.admin().await;
    let ann = app.user("ann").await;
    let stop = Arc::new(AtomicBool::new(false));
    let succeeded = Arc::new(AtomicUsize::new(0));
    let workers = storm(&app, "ann@example.com", &stop, &succeeded);
    // Until the storm is in full swing (slower on a loaded machine).
    let deadline = Instant::now() + Duration::from_secs(20);
    tokio::time::sleep(Duration::from_millis(300)).await;
    while succeeded.load(Ordering::SeqCst) < 2 * WORKERS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let sent = Instant::now();
    let path = format!("/users/{}", ann.user_id);
    match kind {
        Kind::Password => app
            .send_json(
                reqwest::Method::PUT,
                "/users/me/password",
                &json!({"current_password": PASSWORD, "new_password": "a brand new password"}),
                Some(&ann.access),
            )
            .await
            .assert_status(204),
        Kind::Block => app
            .send_json(
                reqwest::Method::PATCH,
                &path,
                &json!({"blocked": true}),
                Some(&admin.access),
            )
            .await
            .assert_status(200),
        Kind::Role => app
            .send_json(
                reqwest::Method::PATCH,
                &path,
                &json!({"role": "admin"}),
                Some(&admin.access),
            )
            .await
            .assert_status(200),
        Kind::LogoutAll => app
            .post("/auth/logout-all", Some(&ann.access))
            .await
            .assert_status(204),
    }
    // Let the logins in flight finish, and a few more start afterwards.
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::SeqCst);
    let mut attempts = Vec::new();
    for w in workers {
        attempts.extend(w.await.expect("login worker panicked"));
    }

    let before: Vec<&Attempt> = attempts.iter().filter(|a| a.began < sent).collect();
    assert!(
        before.iter().filter(|a| a.tokens.is_some()).count() >= WORKERS,
        "{kind:?}: the storm logged in too rarely to test anything"
    );
    // With the old password or a blocked account no login works afterwards
    // either; after a role change or logout-all, later logins are fine.
    //
    // A login that began before the change but reached the database only
    // after its commit (queued behind SQLite's writer, or just scheduled
    // late on a loaded machine) read the new state: its session is
    // legitimate. After a role change its token carries the new role, which
    // tells it apart exactly; after logout-all nothing does, so only logins
    // that began well before the change count there.
    let must_fail: Vec<&Attempt> = match kind {
        Kind::Password | Kind::Block => attempts.iter().collect(),
        Kind::Role => before
            .into_iter()
            .filter(|a| {
                a.tokens
                    .as_ref()
                    .is_some_and(|(t, _)| role_claim(t) != "admin")
            })
            .collect(),
        Kind::LogoutAll => before
            .into_iter()
            .filter(|a| a.began + Duration::from_millis(50) < sent)
            .collect(),
    };
    let mut alive = Vec::new();
    for (i, a) in must_fail.iter().enumerate() {
        let Some((access, refresh)) = &a.tokens else {
            continue;
        };
        let v = app.verify(access).await;
        let r = app.refresh(refresh).await;
        if v.status != 401 || r.status != 401 {
            alive.push((i, v.status, r.status));
        }
    }
    assert!(
        alive.is_empty(),
        "{kind:?}: sessions from logins that began before the change still work \
         (attempt, verify, refresh): {alive:?} of {} attempts",
        must_fail.len()
    );
    if let Kind::Role = kind {
        // A token never carries a role that was replaced when it was issued.
        let t = app.login("ann").await;
        assert_eq!(app.verify(&t.access).await.body["role"], "admin");
    }
}

/// The `role` claim of an access token (its payload, unverified).
fn role_claim(token: &str) -> String {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("token payload is base64url");
    let claims: serde_json::Value = serde_json::from_slice(&bytes).expect("claims are JSON");
    claims["role"].as_str().unwrap_or_default().to_owned()
}

async fn password_change_wins(backend: Backend) {
    change_wins(backend, Kind::Password).await
}

async fn block_wins(backend: Backend) {
    change_wins(backend, Kind::Block).await
}

async fn role_change_wins(backend: Backend) {
    change_wins(backend, Kind::Role).await
}

async fn logout_all_wins(backend: Backend) {
    change_wins(backend, Kind::LogoutAll).await
}

crate::both_backends!(
    password_change_wins,
    block_wins,
    role_change_wins,
    logout_all_wins
);
