//! Logs never contain passwords, hashes or tokens: the binary runs a full
//! flow with every crate at `trace` (the caps of `telemetry` lifted too), and
//! its captured stderr is searched for every secret it saw.

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::{
    helpers::{
        Backend, fresh_postgres_db, shared_redis_url,
        smtp::{Mailbox, shared_mail_server},
    },
    hygiene::Binary,
};

const JWT_SECRET: &str = "logscan-secret-9f8e7d6c5b4a39281706f5e4d3c2b1a0";
const ADMIN_PASSWORD: &str = "Adm1n-Bootstrap-Pa55word";
const PASSWORD: &str = "Corr3ct-Horse-Battery-St4ple";
const WRONG_PASSWORD: &str = "Wr0ng-Guess-For-The-L0gs";
const NEW_PASSWORD: &str = "N3w-Passw0rd-After-Change";
const RESET_PASSWORD: &str = "Res3t-By-Mail-Passw0rd";

struct Flow {
    client: Client,
    base: String,
    /// Every token the service handed out.
    tokens: Vec<String>,
}

impl Flow {
    async fn send(
        &mut self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        for field in ["access_token", "refresh_token"] {
            if let Some(t) = body[field].as_str() {
                self.tokens.push(t.to_owned());
            }
        }
        (status, body)
    }

    async fn login(&mut self, email: &str, password: &str) -> (String, String) {
        let (status, body) = self
            .send(
                reqwest::Method::POST,
                "/auth/login",
                None,
                Some(&json!({"email": email, "password": password})),
            )
            .await;
        assert_eq!(status, 200, "login: {body}");
        (
            body["access_token"].as_str().unwrap().to_owned(),
            body["refresh_token"].as_str().unwrap().to_owned(),
        )
    }
}

async fn logs_of_a_full_flow_hold_no_secrets(b: Backend) {
    use reqwest::Method as M;
    let mail_from = format!(
        "Tessera <no-reply+{}@tessera.test>",
        uuid::Uuid::new_v4().simple()
    );
    let log = std::env::temp_dir().join(format!(
        "tessera-logscan-{}-{}.log",
        std::process::id(),
        crate::helpers::free_port()
    ));
    let mut env = vec![
        // Every level of every crate: the caps of `telemetry` lifted too.
        (
            "RUST_LOG",
            "trace,h2=trace,hyper=trace,hyper_util=trace,sqlx=trace,sea_orm=trace,tower=trace"
                .to_owned(),
        ),
        ("TESSERA_JWT_SECRET", JWT_SECRET.into()),
        ("TESSERA_ADMIN_EMAIL", "root@example.com".into()),
        ("TESSERA_ADMIN_PASSWORD", ADMIN_PASSWORD.into()),
        // Real SMTP delivery: a one-time link token must reach the mail
        // and nothing else (the log delivery is the one place that prints
        // them, by design).
        ("TESSERA_SMTP_URL", shared_mail_server().to_owned()),
        ("TESSERA_MAIL_FROM", mail_from.clone()),
    ];
    if b == Backend::PostgresRedis {
        env.push(("DATABASE_URL", fresh_postgres_db().await));
        env.push(("REDIS_URL", shared_redis_url().to_owned()));
        env.push((
            "TESSERA_REDIS_PREFIX",
            format!("logscan{}:", uuid::Uuid::new_v4().simple()),
        ));
    }
    let bin = Binary::start(&env, &log).await;
    let mut f = Flow {
        client: Client::new(),
        base: bin.base.clone(),
        tokens: Vec::new(),
    };

    let (s, _) = f
        .send(
            M::POST,
            "/auth/register",
            None,
            Some(&json!({"username": "ann", "email": "ann@example.com", "password": PASSWORD})),
        )
        .await;
    assert_eq!(s, 201);
    let (s, _) = f
        .send(
            M::POST,
            "/auth/login",
            None,
            Some(&json!({"email": "ann@example.com", "password": WRONG_PASSWORD})),
        )
        .await;
    assert_eq!(s, 401);
    let (access, refresh) = f.login("ann@example.com", PASSWORD).await;
    assert_eq!(
        f.send(M::GET, "/users/me", Some(&access), None).await.0,
        200
    );
    assert_eq!(
        f.send(M::GET, "/auth/verify", Some(&access), None).await.0,
        200
    );
    let (s, _) = f.send(M::POST, "/auth/refresh", Some(&refresh), None).await;
    assert_eq!(s, 200);
    // Reuse of the spent refresh token revokes the session.
    let (s, body) = f.send(M::POST, "/auth/refresh", Some(&refresh), None).await;
    assert_eq!(
        (s.as_u16(), body["code"].as_str()),
        (401, Some("TokenReused"))
    );

    let (access, refresh) = f.login("ann@example.com", PASSWORD).await;
    // A token in the query string and in a path.
    let (s, _) = f
        .send(
            M::GET,
            &format!("/users/me?access_token={access}"),
            None,
            None,
        )
        .await;
    assert_eq!(s, 401);
    let (s, _) = f
        .send(
            M::GET,
            &format!("/nope?refresh_token={refresh}"),
            None,
            None,
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = f
        .send(M::GET, &format!("/users/{access}"), Some(&access), None)
        .await;
    assert!(s.is_client_error(), "{s}");
    // A body that is not JSON, holding the password.
    let resp = f
        .client
        .post(format!("{}/auth/login", f.base))
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"email":"ann@example.com","password":"{PASSWORD}""#
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // The password in a field of the wrong type.
    let (s, _) = f
        .send(
            M::POST,
            "/auth/register",
            None,
            Some(&json!({"username": "bob", "email": "bob@example.com", "password": [PASSWORD]})),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _) = f
        .send(
            M::PATCH,
            "/users/me",
            Some(&access),
            Some(&json!({"username": "ann2"})),
        )
        .await;
    assert_eq!(s, 200);
    // A wrong current password, then the change (fresh token).
    let (s, _) = f
        .send(
            M::PUT,
            "/users/me/password",
            Some(&access),
            Some(&json!({"current_password": WRONG_PASSWORD, "new_password": NEW_PASSWORD})),
        )
        .await;
    assert_eq!(s, 401);
    let (s, _) = f
        .send(
            M::PUT,
            "/users/me/password",
            Some(&access),
            Some(&json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD})),
        )
        .await;
    assert_eq!(s, 204);
    assert_eq!(
        f.send(M::GET, "/users/me", Some(&access), None).await.0,
        401
    );
    let (access, refresh) = f.login("ann@example.com", NEW_PASSWORD).await;
    assert_eq!(
        f.send(M::POST, "/auth/logout", Some(&access), None).await.0,
        204
    );
    assert_eq!(
        f.send(M::POST, "/auth/refresh", Some(&refresh), None)
            .await
            .0,
        401
    );
    // Recovery and verification by mail: the link tokens, and the password
    // set through a link.
    let mailbox = Mailbox::of_url(shared_mail_server());
    let tokens_of = |page: &str| {
        mailbox
            .all()
            .into_iter()
            .filter(|m| mail_from.contains(m.envelope_from.as_str()) && m.is_to("ann@example.com"))
            .filter(|m| m.text.contains(page))
            .filter_map(|m| m.link_token())
            .collect::<Vec<_>>()
    };
    // The token of the `n`th such mail (1-based), once it arrived.
    let token_of = |page: &'static str, n: usize| {
        let tokens_of = &tokens_of;
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            loop {
                if let Some(t) = tokens_of(page).get(n - 1) {
                    return t.clone();
                }
                assert!(std::time::Instant::now() < deadline, "no {page} mail {n}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    // The registration's verification link died with the password change
    // (every change of the account spends its links): a new one.
    let (access, _) = f.login("ann@example.com", NEW_PASSWORD).await;
    // The registration's mail went out or was dropped (its link is gone).
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let before = tokens_of("verify-email").len();
    let (s, _) = f
        .send(M::POST, "/auth/email/resend", Some(&access), None)
        .await;
    assert_eq!(s, 202);
    let verify_token = token_of("verify-email", before + 1).await;
    let (s, _) = f
        .send(
            M::POST,
            "/auth/email/verify",
            None,
            Some(&json!({"token": verify_token})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = f
        .send(
            M::POST,
            "/auth/password/forgot",
            None,
            Some(&json!({"email": "ann@example.com"})),
        )
        .await;
    assert_eq!(s, 202);
    let reset_token = token_of("reset-password", 1).await;
    let (s, _) = f
        .send(
            M::POST,
            "/auth/password/reset",
            None,
            Some(&json!({"token": reset_token, "new_password": RESET_PASSWORD})),
        )
        .await;
    assert_eq!(s, 204);
    // A wrong token too.
    let (s, _) = f
        .send(
            M::POST,
            "/auth/password/reset",
            None,
            Some(&json!({"token": reset_token, "new_password": RESET_PASSWORD})),
        )
        .await;
    assert_eq!(s, 400);
    f.login("ann@example.com", RESET_PASSWORD).await;

    // The bootstrapped admin.
    let (admin, _) = f.login("root@example.com", ADMIN_PASSWORD).await;
    assert_eq!(f.send(M::GET, "/users", Some(&admin), None).await.0, 200);
    assert_eq!(
        f.send(M::POST, "/auth/logout-all", Some(&admin), None)
            .await
            .0,
        204
    );

    bin.stop().await;
    let logs = std::fs::read_to_string(&log).expect("read the captured logs");
    let _ = std::fs::remove_file(&log);

    // The scan means something only if the logs are there, at every level.
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON log line: {l}")))
        .collect();
    let requests = lines.iter().filter(|l| l["message"] == "request").count();
    assert!(requests >= 20, "{requests} request log lines");
    // Request lines name the path without its query, and a token pasted
    // into a path is redacted.
    for path in ["/users/me", "/nope", "/users/{redacted}"] {
        assert!(
            lines
                .iter()
                .any(|l| l["message"] == "request" && l["path"] == path),
            "no request line for {path}"
        );
    }
    // Every request line has the fields operators filter on; the route is
    // the template, so a token in a path never reaches it either.
    for l in lines.iter().filter(|l| l["message"] == "request") {
        for field in ["request_id", "route", "method", "status", "ms"] {
            assert!(!l[field].is_null(), "request line without {field}: {l}");
        }
    }
    for (path, route) in [
        ("/users/{redacted}", "/users/{id}"),
        ("/nope", "unmatched"),
        ("/auth/login", "/auth/login"),
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l["message"] == "request" && l["path"] == path && l["route"] == route),
            "no request line for {path} with route {route}"
        );
    }

    assert!(f.tokens.len() >= 10, "{} tokens", f.tokens.len());
    let mut secrets: Vec<(String, String)> = vec![
        ("password".into(), PASSWORD.into()),
        ("wrong password".into(), WRONG_PASSWORD.into()),
        ("new password".into(), NEW_PASSWORD.into()),
        ("password set by a reset".into(), RESET_PASSWORD.into()),
        ("verification link token".into(), verify_token.clone()),
        ("reset link token".into(), reset_token.clone()),
        ("admin password".into(), ADMIN_PASSWORD.into()),
        ("JWT secret".into(), JWT_SECRET.into()),
        ("argon2 hash".into(), "$argon2".into()),
    ];
    for t in &f.tokens {
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3, "{t}");
        secrets.push(("token".into(), t.clone()));
        secrets.push(("token signature".into(), parts[2].to_owned()));
        // Header and claims together identify the token; the header alone
        // (alg, typ, kid) is shared by all and is no secret.
        secrets.push(("token claims".into(), parts[1].to_owned()));
    }
    for (what, secret) in &secrets {
        if let Some(line) = logs.lines().find(|l| l.contains(secret.as_str())) {
            panic!("the logs hold a {what}: {line}");
        }
    }
}

crate::both_backends!(logs_of_a_full_flow_hold_no_secrets);
