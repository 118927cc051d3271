//! The command line: `migrate`, `openapi`, `create-admin` (also racing
//! itself, and without a password to prompt for), and `serve` bootstrapping
//! the configured admin.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{
    admin::assert_user_shape,
    helpers::{
        Backend, free_port,
        process::{Proc, output_within, tessera, try_output_within},
        temp_sqlite_url,
    },
};

#[test]
fn migrate_and_openapi_subcommands() {
    let db = temp_sqlite_url();
    let out = output_within(
        tessera(&["migrate"]).env("DATABASE_URL", &db),
        Duration::from_secs(60),
    );
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

    let out = output_within(&mut tessera(&["openapi"]), Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        tessera::openapi_yaml()
    );
}

/// `tessera <args>` on `database_url` with fast hashing.
fn tessera_cmd(args: &[&str], database_url: &str) -> Command {
    let mut c = tessera(args);
    c.env("DATABASE_URL", database_url)
        .env("TESSERA_ARGON2_MEMORY_KIB", "1024")
        .env("TESSERA_ARGON2_ITERATIONS", "1");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_create_admin_processes_make_one_admin() {
    let url = crate::helpers::fresh_postgres_db().await;
    // Migrated first, so the two processes below do not just queue on the
    // migration lock: the admin creation itself races.
    let migrate_url = url.clone();
    let out = tokio::task::spawn_blocking(move || {
        output_within(
            &mut tessera_cmd(&["migrate"], &migrate_url),
            Duration::from_secs(60),
        )
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "tessera migrate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let admin_password = "boss password 123";
    let gate = std::sync::Arc::new(std::sync::Barrier::new(2));
    let start = |url: String| {
        let gate = gate.clone();
        std::thread::spawn(move || {
            gate.wait();
            let mut c = tessera_cmd(&["create-admin"], &url);
            c.env("TESSERA_ADMIN_EMAIL", "boss@example.com")
                .env("TESSERA_ADMIN_USERNAME", "boss")
                .env("TESSERA_ADMIN_PASSWORD", admin_password);
            try_output_within(&mut c, Duration::from_secs(60))
        })
    };
    let (one, two) = (start(url.clone()), start(url.clone()));
    for (i, out) in [one.join().unwrap(), two.join().unwrap()]
        .into_iter()
        .enumerate()
    {
        let out = out.unwrap_or_else(|e| panic!("create-admin #{i} hung: {e}"));
        assert!(
            out.status.success(),
            "create-admin #{i} failed: {:?}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !printed.contains(admin_password),
            "the password was printed: {printed}"
        );
    }

    let mut config = crate::helpers::test_config(Backend::PostgresRedis).await;
    config.database_url = url.clone();
    let app = crate::helpers::spawn_with_config(config, Backend::PostgresRedis).await;
    let r = app.login_email("boss@example.com", admin_password).await;
    r.assert_status(200);
    let access = r.str("access_token");
    let v = app.verify(&access).await;
    assert_eq!(v.body["role"], "admin");
    let list = app.get("/users", Some(&access)).await;
    list.assert_status(200);
    assert_eq!(list.body["total"], 1, "exactly one admin row: {list:?}");
    let items = list.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_user_shape(&items[0]);
    assert_eq!(
        (
            items[0]["role"].as_str(),
            items[0]["username"].as_str(),
            items[0]["email"].as_str()
        ),
        (Some("admin"), Some("boss"), Some("boss@example.com"))
    );

    // A third run later is a no-op that succeeds.
    let out = tokio::task::spawn_blocking(move || {
        let mut c = tessera_cmd(&["create-admin"], &url);
        c.env("TESSERA_ADMIN_EMAIL", "boss@example.com")
            .env("TESSERA_ADMIN_USERNAME", "boss")
            .env("TESSERA_ADMIN_PASSWORD", "a different password");
        try_output_within(&mut c, Duration::from_secs(60))
    })
    .await
    .unwrap()
    .expect("create-admin hung");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(app.get("/users", Some(&access)).await.body["total"], 1);
    app.login_email("boss@example.com", admin_password)
        .await
        .assert_status(200);
}

/// Without TESSERA_ADMIN_PASSWORD and without a terminal to prompt on,
/// `create-admin` fails instead of waiting forever.
#[test]
fn create_admin_without_password_or_terminal_fails() {
    let db = temp_sqlite_url();
    let mut c = tessera_cmd(&["create-admin"], &db);
    c.env("TESSERA_ADMIN_EMAIL", "boss@example.com")
        .env("TESSERA_ADMIN_USERNAME", "boss");
    // A new session without a controlling terminal: no /dev/tty at all.
    unsafe {
        use std::os::unix::process::CommandExt;
        c.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let out = try_output_within(&mut c, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("create-admin hung instead of failing: {e}"));
    assert!(
        !out.status.success(),
        "create-admin without a password succeeded"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("TESSERA_ADMIN_PASSWORD"),
        "the error names the variable to set: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And no account was created.
    let out = try_output_within(
        tessera_cmd(&["create-admin"], &db)
            .env("TESSERA_ADMIN_EMAIL", "boss@example.com")
            .env("TESSERA_ADMIN_USERNAME", "boss")
            .env("TESSERA_ADMIN_PASSWORD", "boss password 123"),
        Duration::from_secs(60),
    )
    .expect("create-admin hung");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A pseudo-terminal that the child gets as its controlling terminal.
struct Pty {
    master: libc::c_int,
    slave_path: std::ffi::CString,
}

impl Pty {
    fn open() -> Self {
        unsafe {
            let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
            assert!(master >= 0, "posix_openpt failed");
            assert_eq!(libc::grantpt(master), 0, "grantpt failed");
            assert_eq!(libc::unlockpt(master), 0, "unlockpt failed");
            let mut buf = [0 as libc::c_char; 128];
            assert_eq!(
                libc::ptsname_r(master, buf.as_mut_ptr(), buf.len()),
                0,
                "ptsname_r failed"
            );
            let slave_path = std::ffi::CStr::from_ptr(buf.as_ptr()).to_owned();
            Self { master, slave_path }
        }
    }

    /// Makes the child a session leader whose controlling terminal is this
    /// pty, leaving its stdin/stdout/stderr as they are.
    fn attach(&self, cmd: &mut Command) {
        use std::os::unix::process::CommandExt;
        let path = self.slave_path.clone();
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let fd = libc::open(path.as_ptr(), libc::O_RDWR);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::ioctl(fd, libc::TIOCSCTTY, 0);
                libc::close(fd);
                Ok(())
            });
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        unsafe {
            libc::close(self.master);
        }
    }
}

/// As an operator would run it from a shell script in a terminal with
/// `< /dev/null`: stdin is not a terminal, so there is nobody to answer a
/// prompt, even though a controlling terminal exists.
#[test]
fn create_admin_with_stdin_not_a_terminal_fails_even_with_a_controlling_tty() {
    let pty = Pty::open();
    // The setup really gives a controlling terminal (else this test proves nothing).
    let mut probe = Command::new("sh");
    probe.args(["-c", "exec 3<>/dev/tty"]).stdin(Stdio::null());
    pty.attach(&mut probe);
    let out = try_output_within(&mut probe, Duration::from_secs(10)).expect("probe hung");
    assert!(
        out.status.success(),
        "no controlling terminal in the probe: {out:?}"
    );

    let db = temp_sqlite_url();
    let mut c = tessera_cmd(&["create-admin"], &db);
    c.env("TESSERA_ADMIN_EMAIL", "boss@example.com")
        .env("TESSERA_ADMIN_USERNAME", "boss");
    pty.attach(&mut c);
    let out = try_output_within(&mut c, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("create-admin with stdin </dev/null hung on a prompt: {e}"));
    assert!(
        !out.status.success(),
        "create-admin without a password succeeded"
    );
}

/// `serve` with TESSERA_ADMIN_* creates the admin at start, and a restart
/// (with another password configured) leaves it as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_bootstraps_the_admin_at_start() {
    let db = temp_sqlite_url();
    let client = reqwest::Client::new();
    for (run, password) in [(0, "boss password 123"), (1, "another password 456")] {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let mut child = Proc::spawn(
            tessera_cmd(&["serve"], &db)
                .env("TESSERA_BIND", format!("127.0.0.1:{port}"))
                .env("TESSERA_ADMIN_EMAIL", "boss@example.com")
                .env("TESSERA_ADMIN_USERNAME", "boss")
                .env("TESSERA_ADMIN_PASSWORD", password)
                .env("TESSERA_JWT_SECRET", crate::helpers::SECRET)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            "tessera serve",
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if client.get(format!("{base}/healthz")).send().await.is_ok() {
                break;
            }
            if let Some(s) = child.try_wait() {
                panic!("tessera serve exited at start (run {run}): {s:?}");
            }
            assert!(Instant::now() < deadline, "tessera did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let login = |pw: &'static str| {
            client
                .post(format!("{base}/auth/login"))
                .json(&json!({"email": "boss@example.com", "password": pw}))
                .send()
        };
        let r = login("boss password 123").await.unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        if run == 1 {
            // The restart did not reset the password.
            let other = login("another password 456").await.unwrap();
            assert_eq!(other.status(), 401, "run {run}");
        }
        assert_eq!(status, 200, "run {run}: {body}");
        let access = body["access_token"].as_str().unwrap().to_owned();
        let list: Value = client
            .get(format!("{base}/users"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list["total"], 1, "run {run}: {list}");
        assert_eq!(list["items"][0]["role"], "admin", "run {run}: {list}");

        let status = child.terminate_and_wait(Duration::from_secs(30)).await;
        assert!(status.success(), "run {run}: {status:?}");
    }
}

/// Waits until `base` answers /healthz; panics if the child exits first.
async fn wait_healthy(client: &reqwest::Client, base: &str, child: &mut Proc, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            return;
        }
        if let Some(s) = child.try_wait() {
            panic!("tessera serve exited at start ({what}): {s:?}");
        }
        assert!(Instant::now() < deadline, "tessera did not start ({what})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A user who registered the configured admin username before the first
/// bootstrap cannot stop the service from starting: it starts, serves,
/// logs the conflict (without secrets) and counts it; no admin is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_starts_despite_a_bootstrap_conflict() {
    let db = temp_sqlite_url();
    let client = reqwest::Client::new();
    let admin_password = "boss password 123";

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = Proc::spawn(
        tessera_cmd(&["serve"], &db)
            .env("TESSERA_BIND", format!("127.0.0.1:{port}"))
            .env("TESSERA_JWT_SECRET", crate::helpers::SECRET)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        "tessera serve",
    );
    wait_healthy(&client, &base, &mut child, "first start").await;
    let r = client
        .post(format!("{base}/auth/register"))
        .json(&json!({"username": "boss", "email": "mallory@example.com", "password": "mallory password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(
        child
            .terminate_and_wait(Duration::from_secs(30))
            .await
            .success()
    );

    let log_path = std::env::temp_dir().join(format!("tessera-bootstrap-{port}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = Proc::spawn(
        tessera_cmd(&["serve"], &db)
            .env("TESSERA_BIND", format!("127.0.0.1:{port}"))
            .env("TESSERA_ADMIN_EMAIL", "boss@example.com")
            .env("TESSERA_ADMIN_USERNAME", "boss")
            .env("TESSERA_ADMIN_PASSWORD", admin_password)
            .env("TESSERA_JWT_SECRET", crate::helpers::SECRET)
            .env("TESSERA_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(log),
        "tessera serve",
    );
    wait_healthy(&client, &base, &mut child, "start with the conflict").await;
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tessera_auth_events_total{event=\"bootstrap_conflict\"} 1"),
        "{metrics}"
    );
    // No admin: the configured credentials name nobody, the squatter is
    // still a user.
    let login = client
        .post(format!("{base}/auth/login"))
        .json(&json!({"email": "boss@example.com", "password": admin_password}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 401);
    let login: Value = client
        .post(format!("{base}/auth/login"))
        .json(&json!({"username": "boss", "password": "mallory password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = login["access_token"].as_str().unwrap();
    let me: Value = client
        .get(format!("{base}/users/me"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "user", "{me}");

    assert!(
        child
            .terminate_and_wait(Duration::from_secs(30))
            .await
            .success()
    );
    let logs = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    let line = logs
        .lines()
        .find(|l| l.contains("bootstrap admin not created"))
        .unwrap_or_else(|| panic!("no conflict logged:\n{logs}"));
    assert!(line.contains("\"ERROR\""), "{line}");
    assert!(line.contains("\"conflict\":\"username\""), "{line}");
    assert!(!logs.contains(admin_password), "the password was logged");
}
