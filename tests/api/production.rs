//! `TESSERA_ENV=production` refuses unsafe settings at start (the real
//! binary: non-zero exit, a message naming every bad setting on stderr); a
//! short secret is refused in any mode.

use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use secrecy::SecretString;
use tessera::config::{Config, Environment};

use crate::helpers::{
    free_port, fresh_postgres_db,
    process::{Proc, tessera, try_output_within},
    shared_redis_url,
};

const GOOD_SECRET: &str = "a-production-secret-of-enough-length-0123456789";
const SHORT_SECRET: &str = "only-31-bytes-long-secret-01234";
/// Never reached: validation fails before anything connects.
const POSTGRES: &str = "postgres://tessera@127.0.0.1:1/tessera";
const REDIS: &str = "redis://127.0.0.1:1/";

struct Outcome {
    code: Option<i32>,
    stderr: String,
    took: Duration,
}

/// A scratch working directory, so a default SQLite file never lands in the
/// repository even if a check were missing.
fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tessera-prod-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `tessera serve` with only these variables (and PATH); kills it and
/// fails if it is still running after 20 s.
fn serve(vars: &[(&str, &str)]) -> Outcome {
    let dir = scratch_dir();
    let started = Instant::now();
    let out = try_output_within(
        tessera(&["serve"])
            .env("TESSERA_BIND", format!("127.0.0.1:{}", free_port()))
            .envs(vars.iter().copied())
            .current_dir(&dir),
        Duration::from_secs(20),
    );
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            panic!("tessera with {vars:?} did not exit: it should refuse to start: {e}");
        }
    };
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        leftovers.is_empty(),
        "a refused start still created {leftovers:?}"
    );
    Outcome {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    }
}

/// Asserts a quick non-zero exit whose stderr names every one of `named` and
/// none of `not_named`, and never echoes a secret.
#[track_caller]
fn assert_refused(vars: &[(&str, &str)], named: &[&str], not_named: &[&str]) {
    let out = serve(vars);
    assert!(
        out.code.is_some_and(|c| c != 0),
        "exit {:?} with {vars:?}; stderr:\n{}",
        out.code,
        out.stderr
    );
    assert!(
        out.took < Duration::from_secs(10),
        "took {:?} to refuse",
        out.took
    );
    assert!(
        out.stderr.contains("refusing to start"),
        "no clear message: {}",
        out.stderr
    );
    for name in named {
        assert!(
            out.stderr.contains(name),
            "{name} not named with {vars:?}:\n{}",
            out.stderr
        );
    }
    for name in not_named {
        assert!(
            !out.stderr.contains(name),
            "{name} wrongly named with {vars:?}:\n{}",
            out.stderr
        );
    }
    for secret in [GOOD_SECRET, SHORT_SECRET] {
        assert!(
            !out.stderr.contains(secret),
            "a secret is echoed:\n{}",
            out.stderr
        );
    }
}

#[test]
fn production_without_any_setting_names_every_problem() {
    assert_refused(
        &[("TESSERA_ENV", "production")],
        &["TESSERA_JWT_SECRET", "DATABASE_URL", "REDIS_URL"],
        &[],
    );
}

#[test]
fn production_without_a_jwt_secret() {
    assert_refused(
        &[
            ("TESSERA_ENV", "production"),
            ("DATABASE_URL", POSTGRES),
            ("REDIS_URL", REDIS),
        ],
        &["TESSERA_JWT_SECRET"],
        &["DATABASE_URL", "REDIS_URL"],
    );
    // Set but empty is no better.
    assert_refused(
        &[
            ("TESSERA_ENV", "production"),
            ("TESSERA_JWT_SECRET", ""),
            ("DATABASE_URL", POSTGRES),
            ("REDIS_URL", REDIS),
        ],
        &["TESSERA_JWT_SECRET"],
        &["DATABASE_URL", "REDIS_URL"],
    );
}

#[test]
fn production_with_a_short_secret() {
    assert_eq!(SHORT_SECRET.len(), 31);
    assert_refused(
        &[
            ("TESSERA_ENV", "production"),
            ("TESSERA_JWT_SECRET", SHORT_SECRET),
            ("DATABASE_URL", POSTGRES),
            ("REDIS_URL", REDIS),
        ],
        &["TESSERA_JWT_SECRET", "32 bytes"],
        &["DATABASE_URL", "REDIS_URL"],
    );
}

#[test]
fn production_with_the_default_sqlite_file() {
    // Unset, and spelled out.
    for database in [
        None,
        Some("sqlite://tessera.db?mode=rwc"),
        Some("sqlite::memory:"),
    ] {
        let mut vars = vec![
            ("TESSERA_ENV", "production"),
            ("TESSERA_JWT_SECRET", GOOD_SECRET),
            ("REDIS_URL", REDIS),
        ];
        if let Some(url) = database {
            vars.push(("DATABASE_URL", url));
        }
        assert_refused(
            &vars,
            &["DATABASE_URL"],
            &["TESSERA_JWT_SECRET", "REDIS_URL"],
        );
    }
}

#[test]
fn production_without_redis() {
    assert_refused(
        &[
            ("TESSERA_ENV", "production"),
            ("TESSERA_JWT_SECRET", GOOD_SECRET),
            ("DATABASE_URL", POSTGRES),
        ],
        &["REDIS_URL"],
        &["TESSERA_JWT_SECRET", "DATABASE_URL"],
    );
}

#[test]
fn production_with_a_missing_key_file() {
    assert_refused(
        &[
            ("TESSERA_ENV", "production"),
            ("TESSERA_JWT_ED25519_KEY_FILE", "/nonexistent/tessera.pem"),
            ("DATABASE_URL", POSTGRES),
            ("REDIS_URL", REDIS),
        ],
        &["TESSERA_JWT_ED25519_KEY_FILE", "/nonexistent/tessera.pem"],
        &["DATABASE_URL", "REDIS_URL"],
    );
}

#[test]
fn short_secrets_are_refused_in_development_too() {
    let dev = [
        ("TESSERA_ENV", "development"),
        ("TESSERA_JWT_SECRET", SHORT_SECRET),
    ];
    assert_refused(&dev, &["TESSERA_JWT_SECRET", "32 bytes"], &["REDIS_URL"]);
    // The default mode is development.
    assert_refused(
        &[("TESSERA_JWT_SECRET", SHORT_SECRET)],
        &["TESSERA_JWT_SECRET"],
        &["REDIS_URL", "DATABASE_URL"],
    );
    assert_refused(
        &[
            ("TESSERA_JWT_SECRET", GOOD_SECRET),
            (
                "TESSERA_JWT_PREVIOUS_SECRETS",
                &format!("{GOOD_SECRET}x,{SHORT_SECRET}"),
            ),
        ],
        &["TESSERA_JWT_PREVIOUS_SECRETS"],
        &["REDIS_URL", "DATABASE_URL"],
    );
}

fn production_config() -> Config {
    let mut c = Config::defaults();
    c.env = Environment::Production;
    c.jwt_secret = Some(SecretString::from(GOOD_SECRET.to_owned()));
    c.database_url = POSTGRES.into();
    c.redis_url = Some(REDIS.into());
    c.smtp_url = Some(SecretString::from("log".to_owned()));
    c
}

#[test]
fn a_correct_production_config_passes_validation() {
    assert_eq!(production_config().validate(), Ok(()));
    let mut c = production_config();
    c.jwt_previous_secrets = Some(SecretString::from(format!("{GOOD_SECRET}-old")));
    assert_eq!(c.validate(), Ok(()));

    // An Ed25519 key file instead of a secret.
    let dir = scratch_dir();
    let key = dir.join("key.pem");
    std::fs::write(&key, "a PEM file").unwrap();
    let mut c = production_config();
    c.jwt_secret = None;
    c.jwt_ed25519_key_file = Some(key);
    let result = c.validate();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(result, Ok(()));

    // The defaults, fine in development, are four problems in production
    // (no signing key, SQLite's default file, no Redis, no mail choice).
    assert_eq!(Config::defaults().validate(), Ok(()));
    let mut c = Config::defaults();
    c.env = Environment::Production;
    assert_eq!(c.validate().unwrap_err().len(), 4);
}

/// The whole way: a correct production configuration starts and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_with_correct_settings_starts() {
    let database = fresh_postgres_db().await;
    let port = free_port();
    let dir = scratch_dir();
    let mut child = Proc::spawn(
        tessera(&["serve"])
            .env("TESSERA_ENV", "production")
            .env("TESSERA_BIND", format!("127.0.0.1:{port}"))
            .env("TESSERA_JWT_SECRET", GOOD_SECRET)
            .env("DATABASE_URL", &database)
            .env("REDIS_URL", shared_redis_url())
            .env("TESSERA_SMTP_URL", "log")
            .env(
                "TESSERA_REDIS_PREFIX",
                format!("p{}:", uuid::Uuid::new_v4().simple()),
            )
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        "tessera serve (production)",
    );
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
        {
            break r.status().as_u16();
        }
        if let Some(status) = child.try_wait() {
            panic!("tessera exited with {status:?} on a correct production config");
        }
        assert!(Instant::now() < deadline, "tessera did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let status = child.terminate_and_wait(Duration::from_secs(30)).await;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(ready, 200);
    assert!(status.success(), "{status:?}");
}
