//! `rediss://`: the token store over TLS (managed Redis usually requires
//! it). A private redis-server with a certificate from a throw-away CA; the
//! service trusts the system's roots, here that CA through `SSL_CERT_FILE`.
//! A certificate it does not trust is an unreachable store: 503, fail closed.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::helpers::{
    PASSWORD, SECRET, free_port,
    process::{Proc, tessera},
    spawn_redis_server, wait_for_port,
};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run openssl ({e}): install it with `apt-get install openssl`")
        });
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.pem`) and a server certificate for 127.0.0.1 signed by it.
fn make_certs(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=tessera test CA",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.pem",
            "-days",
            "2",
            "-extfile",
            "ext",
        ],
    );
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tls_redis(dir: &Path) -> (Killed, u16) {
    let port = free_port();
    let tls_port = port.to_string();
    let child = spawn_redis_server(
        Some(dir),
        &[
            "--port",
            "0",
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            "srv.pem",
            "--tls-key-file",
            "srv.key",
            "--tls-ca-cert-file",
            "ca.pem",
            "--tls-auth-clients",
            "no",
        ],
    );
    wait_for_port(port, "redis-server (TLS)");
    (Killed(child), port)
}

/// `tessera serve` on SQLite with the store at `rediss://127.0.0.1:port`;
/// `ca` is what it trusts (`SSL_CERT_FILE`).
async fn serve(dir: &Path, redis_port: u16, ca: &Path) -> (Proc, String) {
    let port = free_port();
    let db = dir.join(format!("{}.db", uuid::Uuid::new_v4().simple()));
    let proc = Proc::spawn(
        tessera(&["serve"])
            .env("TESSERA_BIND", format!("127.0.0.1:{port}"))
            .env("TESSERA_JWT_SECRET", SECRET)
            .env("TESSERA_ARGON2_MEMORY_KIB", "1024")
            .env("TESSERA_ARGON2_ITERATIONS", "1")
            .env(
                "DATABASE_URL",
                format!("sqlite://{}?mode=rwc", db.display()),
            )
            .env("REDIS_URL", format!("rediss://127.0.0.1:{redis_port}/"))
            .env("SSL_CERT_FILE", ca)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        "tessera serve (rediss)",
    );
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{base}/healthz")).await.is_err() {
        assert!(Instant::now() < deadline, "tessera did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (proc, base)
}

async fn readyz(base: &str) -> u16 {
    reqwest::get(format!("{base}/readyz"))
        .await
        .expect("readyz")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_store_over_tls() {
    let dir = std::env::temp_dir().join(format!("tessera-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let d = dir.clone();
    let (redis, redis_port) = tokio::task::spawn_blocking(move || {
        make_certs(&d);
        tls_redis(&d)
    })
    .await
    .expect("TLS redis");

    // Trusted: the whole token life cycle runs on the TLS store.
    let (app, base) = serve(&dir, redis_port, &dir.join("ca.pem")).await;
    assert_eq!(readyz(&base).await, 200);
    let http = reqwest::Client::new();
    let body = json!({"username": "tls_user", "email": "tls@example.com", "password": PASSWORD});
    let r = http
        .post(format!("{base}/auth/register"))
        .json(&body)
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), 201);
    let login: Value = http
        .post(format!("{base}/auth/login"))
        .json(&json!({"email": "tls@example.com", "password": PASSWORD}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login body");
    let access = login["access_token"].as_str().expect("access token");
    let verify = || {
        http.get(format!("{base}/auth/verify"))
            .bearer_auth(access)
            .send()
    };
    assert_eq!(verify().await.expect("verify").status(), 200);
    let out = http
        .post(format!("{base}/auth/logout"))
        .bearer_auth(access)
        .send()
        .await
        .expect("logout");
    assert_eq!(out.status(), 204);
    let after: Value = verify()
        .await
        .expect("verify")
        .json()
        .await
        .expect("verify body");
    assert_eq!(after["code"], "TokenRevoked");
    assert!(
        app.terminate_and_wait(Duration::from_secs(30))
            .await
            .success()
    );

    // Untrusted (the server's certificate, not its CA): nothing is checked
    // against an unauthenticated store.
    let (app, base) = serve(&dir, redis_port, &dir.join("srv.pem")).await;
    assert_eq!(readyz(&base).await, 503);
    let r = http
        .get(format!("{base}/auth/verify"))
        .bearer_auth(access)
        .send()
        .await
        .expect("verify");
    assert_eq!(r.status(), 503);
    assert!(
        app.terminate_and_wait(Duration::from_secs(30))
            .await
            .success()
    );
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
}
