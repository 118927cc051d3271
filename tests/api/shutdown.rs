//! SIGTERM drains in-flight requests, then the process exits 0.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use crate::helpers::{
    free_port,
    process::{Proc, tessera},
    temp_sqlite_url,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits_zero() {
    let port = free_port();
    let mut child = Proc::spawn(
        tessera(&["serve"])
            .env("TESSERA_BIND", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", temp_sqlite_url())
            // Expensive hashing keeps the login request in flight for a while.
            .env("TESSERA_ARGON2_MEMORY_KIB", "65536")
            .env("TESSERA_ARGON2_ITERATIONS", "12")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        "tessera serve",
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        if let Some(status) = child.try_wait() {
            panic!("tessera exited at start: {status:?}");
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
    child.terminate();

    let resp = in_flight
        .await
        .unwrap()
        .expect("the in-flight request was answered");
    assert_eq!(resp.status(), 401, "the login completed during the drain");
    let status = child.wait_for_async(Duration::from_secs(30)).await;
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
}
