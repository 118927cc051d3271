//! The second factor (API.md "Second factor (TOTP)") over HTTP, on SQLite +
//! memory and PostgreSQL + Redis: enrolment, the login challenge, one use
//! per code, recovery codes, the login limits, the sessions a change ends,
//! the admin's removal, the reset, races, two replicas, the browser.
//!
//! Codes are computed from explicit time steps (`Authenticator`): the server
//! accepts one step either side of its own, so the current step's code and
//! the next one's both stay valid for at least 30 s, whatever the moment a
//! test starts, and each step is accepted once per account.

mod browser;
mod codes;
mod enrolment;
mod login;
mod races;
mod reset;
mod sessions;

use std::{
    collections::HashSet,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use tessera::{
    auth::totp::{self, TotpSecret},
    config::Config,
};
use totp_rs::Secret;

use crate::helpers::{Backend, PASSWORD, Resp, TestApp, Tokens, spawn_app_with};

const STEP: u64 = totp::STEP_SECS;

/// Login limits out of the way: these tests send wrong codes on purpose
/// (each one a failed login), and races send twenty at once.
fn roomy_limits(c: &mut Config) {
    c.login_max_failures = 1000;
    c.login_max_failures_per_account = 1000;
    c.login_max_failures_per_ip = 10_000;
}

async fn mfa_app(b: Backend) -> TestApp {
    spawn_app_with(b, roomy_limits).await
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// The user's authenticator app: the secret from enrolment and the steps
/// whose codes this test already handed out (a step is accepted once).
struct Authenticator {
    secret: TotpSecret,
    used: HashSet<u64>,
}

impl Authenticator {
    /// From the base32 `secret` of an enrolment answer.
    fn from_base32(secret: &str) -> Self {
        let bytes = Secret::try_from_base32(secret)
            .unwrap_or_else(|e| panic!("the secret {secret:?} is not base32: {e:?}"))
            .as_bytes()
            .to_vec();
        assert_eq!(bytes.len(), 20, "a 160-bit secret");
        Self {
            secret: TotpSecret::from_bytes(bytes).expect("a secret of 160 bits"),
            used: HashSet::new(),
        }
    }

    fn code_of(&self, step: u64) -> String {
        totp::code_at(&self.secret, step * STEP).expect("a code")
    }

    /// A code the server accepts now and never accepted before: the
    /// current step's or the next one's, which stay valid for at least
    /// 30 s. Waits for the next step when both were handed out.
    async fn fresh_code(&mut self) -> String {
        loop {
            let now = unix_now();
            let current = now / STEP;
            for step in [current, current + 1] {
                if self.used.insert(step) {
                    return self.code_of(step);
                }
            }
            let wait = (current + 1) * STEP - now;
            tokio::time::sleep(Duration::from_millis(wait * 1000 + 50)).await;
        }
    }

    /// Six digits that are no code of this secret near now (two steps
    /// either side, more than the server accepts).
    fn wrong_code(&self) -> String {
        let current = unix_now() / STEP;
        let near: Vec<String> = (current - 2..=current + 3)
            .map(|s| self.code_of(s))
            .collect();
        let first: u32 = near[2].parse().expect("digits");
        (1..)
            .map(|k| format!("{:06}", (first + 7919 * k) % 1_000_000))
            .find(|c| !near.contains(c))
            .expect("a wrong code")
    }
}

/// An active factor: the authenticator and the recovery codes.
struct Factor {
    app: Authenticator,
    recovery: Vec<String>,
}

/// Enrols and confirms a factor with the fresh access token of `t`.
async fn enrol(app: &TestApp, t: &Tokens) -> Factor {
    let r = app.post("/auth/mfa/totp", Some(&t.access)).await;
    r.assert_status(200);
    let mut auth = Authenticator::from_base32(&r.str("secret"));
    let code = auth.fresh_code().await;
    let r = confirm(app, t, &code).await;
    r.assert_status(200);
    Factor {
        app: auth,
        recovery: recovery_codes(&r),
    }
}

async fn confirm(app: &TestApp, t: &Tokens, code: &str) -> Resp {
    app.post_json(
        "/auth/mfa/totp/confirm",
        &json!({ "code": code }),
        Some(&t.access),
    )
    .await
}

/// The 10 distinct recovery codes of a 200, checked for their shape.
fn recovery_codes(r: &Resp) -> Vec<String> {
    r.assert_status(200);
    assert_eq!(r.header("cache-control"), Some("no-store"), "{r:?}");
    let codes: Vec<String> = r.body["recovery_codes"]
        .as_array()
        .unwrap_or_else(|| panic!("no recovery_codes: {r:?}"))
        .iter()
        .map(|c| c.as_str().expect("a string code").to_owned())
        .collect();
    assert_eq!(codes.len(), 10, "{codes:?}");
    assert_eq!(codes.iter().collect::<HashSet<_>>().len(), 10, "{codes:?}");
    for c in &codes {
        let plain = c.replace('-', "");
        assert!(
            plain.len() >= 10
                && plain
                    .bytes()
                    .all(|b| b"23456789abcdefghjkmnpqrstuvwxyz".contains(&b)),
            "recovery code {c:?} outside the unambiguous alphabet"
        );
    }
    codes
}

/// Registers `name` (`name@example.com`), logs in and turns on a factor:
/// the tokens of that session (fresh, still working) and the factor.
async fn user_with_factor(app: &TestApp, name: &str) -> (Tokens, Factor) {
    let t = app.user(name).await;
    let factor = enrol(app, &t).await;
    (t, factor)
}

/// A login of `name` with the right password: the `mfa_token` of its 403.
async fn challenge(app: &TestApp, name: &str) -> String {
    let r = app
        .login_email(&format!("{name}@example.com"), PASSWORD)
        .await;
    challenge_of(&r)
}

/// The `mfa_token` of a login's 403 `MfaRequired`, checked for its shape.
fn challenge_of(r: &Resp) -> String {
    r.assert_error(403, "MfaRequired");
    assert_eq!(r.body["expires_in"], 300, "{r:?}");
    assert!(
        r.body.get("access_token").is_none() && r.body.get("refresh_token").is_none(),
        "{r:?}"
    );
    let token = r.str("mfa_token");
    assert!(token.len() >= 43, "an mfa_token of under 256 bits: {token}");
    token
}

async fn verify(app: &TestApp, mfa_token: &str, code: &str) -> Resp {
    app.post_json(
        "/auth/mfa/verify",
        &json!({ "mfa_token": mfa_token, "code": code }),
        None,
    )
    .await
}

/// `verify` that must start a session: its tokens.
async fn verified(app: &TestApp, mfa_token: &str, code: &str) -> Tokens {
    let r = verify(app, mfa_token, code).await;
    r.assert_status(200);
    assert_eq!(r.body["token_type"], "Bearer", "{r:?}");
    Tokens {
        access: r.str("access_token"),
        refresh: r.str("refresh_token"),
        user_id: r.str("user_id"),
    }
}

/// Logs `name` in through both factors with `code`.
async fn login_with(app: &TestApp, name: &str, code: &str) -> Tokens {
    let token = challenge(app, name).await;
    verified(app, &token, code).await
}

/// The payload of a JWT.
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT of three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url payload"))
        .expect("a JSON payload")
}

async fn me(app: &TestApp, access: &str) -> Value {
    let r = app.get("/users/me", Some(access)).await;
    r.assert_status(200);
    r.body
}

/// The ids of the user's live sessions, as `GET /auth/sessions` lists them.
async fn session_ids(app: &TestApp, access: &str) -> Vec<String> {
    let r = app.get("/auth/sessions", Some(access)).await;
    r.assert_status(200);
    let mut ids: Vec<String> = r
        .body
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {r:?}"))
        .iter()
        .map(|s| s["id"].as_str().expect("a session id").to_owned())
        .collect();
    ids.sort();
    ids
}
