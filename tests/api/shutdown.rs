//! SIGTERM drains in-flight requests, then the process exits 0.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::helpers::{free_port, temp_sqlite_url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits_zero() {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TESSERA_BIND", format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", temp_sqlite_url())
        .env("TESSERA_LOG_FORMAT", "json")
        // Expensive hashing keeps the login request in flight for a while.
        .env("TESSERA_ARGON2_MEMORY_KIB", "65536")
        .env("TESSERA_ARGON2_ITERATIONS", "12")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tessera");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "tessera did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let in_flight = tokio::spawn({
        let client = client.clone();
        let url = format!("{base}/auth/login");
        async move {
            client
                .post(url)
                .json(
                    &serde_json::json!({"email": "nobody@example.com", "password": "whatever123"}),
                )
                .send()
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pid = child.id() as libc::pid_t;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);

    let resp = in_flight
        .await
        .unwrap()
        .expect("the in-flight request was answered");
    assert_eq!(resp.status(), 401, "the login completed during the drain");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .expect("wait for tessera");
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
}

#[test]
fn migrate_and_openapi_subcommands() {
    let db = temp_sqlite_url();
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("migrate")
        .env("DATABASE_URL", &db)
        .env("TESSERA_LOG_FORMAT", "json")
        .output()
        .expect("run tessera migrate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = db
        .trim_start_matches("sqlite://")
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        std::fs::metadata(&path).is_ok_and(|m| m.len() > 0),
        "database file created"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("openapi")
        .output()
        .expect("run tessera openapi");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        tessera::openapi_yaml()
    );
}
