//! Test harness: owns a private redis-server and PostgreSQL on free loopback
//! ports (started once per test binary, stopped at exit), and spawns the whole
//! app per test on a free port with a fresh database and Redis key prefix.
#![allow(dead_code)]

pub mod cluster;
pub mod process;
pub mod smtp;

use std::{
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use tessera::{
    config::Config,
    mail::{Sender, SenderSettings},
    state::AppState,
};
use uuid::Uuid;

pub const SECRET: &str = "test-secret-0123456789abcdef-0123456789";
pub const PASSWORD: &str = "correct horse battery";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file + in-memory token store.
    SqliteMemory,
    /// PostgreSQL + Redis.
    PostgresRedis,
    /// PostgreSQL + a 3-master Redis Cluster (`TESSERA_REDIS_CLUSTER`).
    PostgresCluster,
}

/// Runs async test bodies on the backends named (as `Backend` variants, each
/// with its module name).
#[macro_export]
macro_rules! on_backends {
    ([$($module:ident => $backend:ident),+] $names:tt) => {
        $( $crate::on_backend!($module, $backend, $names); )+
    };
}

/// One backend's module of `on_backends`.
#[macro_export]
macro_rules! on_backend {
    ($module:ident, $backend:ident, ($($name:ident),*)) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::$backend).await
                }
            )*
        }
    };
}

/// Runs an async test body once per backend.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $crate::on_backends!(
            [
                sqlite_memory => SqliteMemory,
                postgres_redis => PostgresRedis,
                postgres_cluster => PostgresCluster
            ]
            ($($name),*)
        );
    };
}

/// SQLite + memory and PostgreSQL + Redis: for rules the Redis topology
/// does not touch (mail, browser sessions, the outbox).
#[macro_export]
macro_rules! sql_backends {
    ($($name:ident),* $(,)?) => {
        $crate::on_backends!(
            [sqlite_memory => SqliteMemory, postgres_redis => PostgresRedis]
            ($($name),*)
        );
    };
}

// ---------------------------------------------------------------- servers

static CLEANUP: Mutex<Vec<Cleanup>> = Mutex::new(Vec::new());

enum Cleanup {
    Kill(Child),
    RemoveDir(PathBuf),
    Postgres {
        bin: PathBuf,
        data: PathBuf,
        root: PathBuf,
    },
}

extern "C" fn cleanup_at_exit() {
    let mut list = match CLEANUP.lock() {
        Ok(l) => l,
        Err(p) => p.into_inner(),
    };
    for item in list.drain(..) {
        match item {
            Cleanup::Kill(mut child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Cleanup::RemoveDir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Postgres { bin, data, root } => {
                let _ = as_postgres(&bin.join("pg_ctl"))
                    .args([
                        "-D",
                        &data.to_string_lossy(),
                        "-m",
                        "immediate",
                        "-w",
                        "stop",
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                let _ = std::fs::remove_dir_all(root);
            }
        }
    }
}

fn register_cleanup(item: Cleanup) {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| unsafe {
        libc::atexit(cleanup_at_exit);
    });
    CLEANUP.lock().unwrap().push(item);
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not start listening on port {port}");
}

/// Starts `redis-server` on loopback without persistence, with `args` (the
/// port, cluster or TLS options) and `dir` as its working directory.
pub fn spawn_redis_server(dir: Option<&Path>, args: &[&str]) -> Child {
    let mut cmd = Command::new("redis-server");
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run redis-server ({e}): install it with `apt-get install redis-server` \
                 (scripts/test does this)"
            )
        })
}

/// A server process of the harness: signalled to hang and resume, killed
/// when dropped (or handed to the exit-time cleanup by `keep_until_exit`).
pub struct Daemon {
    what: &'static str,
    child: Option<Child>,
}

impl Daemon {
    pub fn new(what: &'static str, child: Child) -> Self {
        Self {
            what,
            child: Some(child),
        }
    }

    /// SIGSTOP: the server hangs (connections stay open, nothing answers)
    /// until `thaw`.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: libc::c_int) {
        let what = self.what;
        let child = self
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("{what} is not running"));
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// For a binary-wide server: killed by the exit-time cleanup instead.
    pub fn keep_until_exit(mut self) {
        if let Some(child) = self.child.take() {
            register_cleanup(Cleanup::Kill(child));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A private redis-server; killed when the handle is dropped or at exit.
pub struct RedisServer {
    pub port: u16,
    process: Daemon,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Self {
        let child = spawn_redis_server(None, &["--port", &port.to_string()]);
        wait_for_port(port, "redis-server");
        Self {
            port,
            process: Daemon::new("redis-server", child),
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The server hangs until `thaw` (see `Daemon::freeze`).
    pub fn freeze(&self) {
        self.process.freeze();
    }

    pub fn thaw(&self) {
        self.process.thaw();
    }

    pub fn stop(&mut self) {
        self.process.stop();
    }
}

/// The binary-wide Redis shared by tests (each test has its own key prefix).
pub fn shared_redis_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let server = RedisServer::start();
        let url = server.url();
        server.process.keep_until_exit();
        url
    })
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// PostgreSQL refuses to run as root: run its tools as `postgres` then.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn postgres_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("TESSERA_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    found.retain(|p| p.join("initdb").exists());
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL server binaries not found under /usr/lib/postgresql: install them with \
             `apt-get install postgresql` (scripts/test does this) or set TESSERA_PG_BIN"
        )
    })
}

/// The binary-wide PostgreSQL server; returns the admin URL (without database).
pub fn shared_postgres_base() -> &'static str {
    static BASE: OnceLock<String> = OnceLock::new();
    BASE.get_or_init(|| {
        let bin = postgres_bin();
        let port = free_port();
        let root = std::env::temp_dir().join(format!("tessera-pg-{}-{port}", std::process::id()));
        let data = root.join("data");
        std::fs::create_dir_all(&root).expect("create postgres temp dir");
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&root)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "cannot chown the PostgreSQL temp dir to the `postgres` user");
        }
        let out = process::output_within(
            as_postgres(&bin.join("initdb")).args([
                "-D",
                &data.to_string_lossy(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
            ]),
            Duration::from_secs(120),
        );
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
            root.to_string_lossy()
        );
        let out = process::output_within(
            as_postgres(&bin.join("pg_ctl"))
                .args(["-D", &data.to_string_lossy(), "-o", &opts, "-l"])
                .arg(root.join("log"))
                .args(["-w", "start"]),
            Duration::from_secs(120),
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {} {}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(root.join("log")).unwrap_or_default()
        );
        register_cleanup(Cleanup::Postgres { bin, data, root });
        format!("postgres://postgres@127.0.0.1:{port}")
    })
}

/// Creates a fresh PostgreSQL database and returns its URL.
pub async fn fresh_postgres_db() -> String {
    use sea_orm::{ConnectionTrait, Database};
    let base = shared_postgres_base();
    let name = format!("t_{}", Uuid::new_v4().simple());
    let admin = Database::connect(format!("{base}/postgres"))
        .await
        .expect("connect to test PostgreSQL");
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create test database");
    admin.close().await.ok();
    format!("{base}/{name}")
}

/// A per-process directory for SQLite files, removed at exit.
fn sqlite_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tessera-tests-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create sqlite temp dir");
        register_cleanup(Cleanup::RemoveDir(dir.clone()));
        dir
    })
}

pub fn temp_sqlite_url() -> String {
    let file = sqlite_dir().join(format!("{}.db", Uuid::new_v4()));
    format!("sqlite://{}?mode=rwc", file.to_string_lossy())
}

// ---------------------------------------------------------------- races

/// Runs `n` racers as separate tasks on the multi-thread runtime, all
/// released at once by a barrier, and returns their results in order.
/// `make(i)` builds racer `i` (owning what it needs, e.g. a clone of the
/// `TestApp`).
pub async fn race<T, Fut>(n: usize, make: impl Fn(usize) -> Fut) -> Vec<T>
where
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let racer = make(i);
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                racer.await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(n);
    for t in tasks {
        results.push(t.await.expect("racer panicked"));
    }
    results
}

/// Rounds of a race whose assertion is about exactly one winner: a bug that
/// lets two through shows in one round or another.
pub const RACE_ROUNDS: usize = 3;

// ---------------------------------------------------------------- app

#[derive(Clone)]
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: Arc<AppState>,
    pub config: Config,
    pub backend: Backend,
    /// The app's mail sender (`drain_sender` stops it).
    pub sender: Arc<Mutex<Option<Sender>>>,
}

/// The mail sender of test apps: quicker than production's (mail shows
/// up sooner, retries come within seconds).
pub fn test_sender_settings() -> SenderSettings {
    SenderSettings {
        poll: Duration::from_millis(100),
        max_backoff: Duration::from_secs(2),
        ..SenderSettings::default()
    }
}

/// A configuration for tests: fast argon2, known secret, given backend.
pub async fn test_config(backend: Backend) -> Config {
    let mut c = Config::defaults();
    c.jwt_secret = Some(SecretString::from(SECRET.to_owned()));
    c.argon2_memory_kib = 1024;
    c.argon2_iterations = 1;
    c.bind = "127.0.0.1:0".into();
    // Every app sends through the shared SMTP server with a From of its
    // own, which tells its mails from those of the tests running beside it.
    let smtp = tokio::task::spawn_blocking(|| smtp::shared_mail_server().to_owned())
        .await
        .expect("start the test SMTP server");
    c.smtp_url = Some(SecretString::from(smtp));
    c.mail_from = format!(
        "Tessera <no-reply+{}@tessera.test>",
        Uuid::new_v4().simple()
    );
    match backend {
        Backend::SqliteMemory => {
            c.database_url = temp_sqlite_url();
            c.redis_url = None;
        }
        Backend::PostgresRedis => {
            c.database_url = fresh_postgres_db().await;
            c.redis_url = Some(shared_redis_url().to_owned());
            c.redis_prefix = format!("t{}:", Uuid::new_v4().simple());
        }
        Backend::PostgresCluster => {
            c.database_url = fresh_postgres_db().await;
            // Started synchronously (it waits for the nodes).
            let url = tokio::task::spawn_blocking(|| cluster::shared_cluster_url().to_owned())
                .await
                .expect("start the Redis Cluster");
            c.redis_url = Some(url);
            c.redis_cluster = true;
            c.redis_prefix = format!("t{}:", Uuid::new_v4().simple());
        }
    }
    c
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config(backend).await;
    tweak(&mut config);
    spawn_with_config(config, backend).await
}

pub async fn spawn_with_config(config: Config, backend: Backend) -> TestApp {
    spawn_with_sender(config, backend, test_sender_settings()).await
}

/// An app whose mail sender runs with `sender` settings.
pub async fn spawn_with_sender(
    config: Config,
    backend: Backend,
    sender: SenderSettings,
) -> TestApp {
    let state = AppState::build(&config).await.expect("build app state");
    let sender = tessera::mail::sender::start(state.clone(), sender);
    // The binary's own serve loop, so every API test runs through it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind test listener");
    let port = listener.local_addr().expect("test listener port").port();
    let app = tessera::app(state.clone());
    let limits = tessera::server::Limits::from_config(&config);
    tokio::spawn(tessera::server::serve(
        listener,
        app,
        limits,
        std::future::pending(),
    ));
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("reqwest client"),
        state,
        config,
        backend,
        sender: Arc::new(Mutex::new(Some(sender))),
    }
}

/// A response read whole: status, headers and JSON body (Null if not JSON).
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an API.md error: status, `code`, JSON content type, and the
    /// RFC 6750 challenge on 401s.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status.as_u16(), self.body["code"].as_str()),
            (status, Some(code)),
            "unexpected response: {self:?}"
        );
        assert!(
            self.body["message"].is_string(),
            "error without message: {self:?}"
        );
        assert!(
            self.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "error is not JSON: {self:?}"
        );
        assert!(
            self.header("x-request-id").is_some(),
            "no x-request-id: {self:?}"
        );
        if status == 401 {
            assert!(
                self.header("www-authenticate")
                    .is_some_and(|v| v.starts_with("Bearer")),
                "401 without WWW-Authenticate: {self:?}"
            );
        }
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected response: {self:?}"
        );
    }

    pub fn str(&self, field: &str) -> String {
        self.body[field]
            .as_str()
            .unwrap_or_else(|| panic!("no string field {field} in {self:?}"))
            .to_owned()
    }
}

/// An account's tokens after login.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
    pub user_id: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        let resp = req.send().await.expect("request failed");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("read body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    pub fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut r = self.client.request(method, self.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        self.send(self.request(Method::GET, path, token)).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Resp {
        self.send(self.request(Method::DELETE, path, token)).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>) -> Resp {
        self.send(self.request(Method::POST, path, token)).await
    }

    pub async fn post_json(&self, path: &str, body: &Value, token: Option<&str>) -> Resp {
        self.send(self.request(Method::POST, path, token).json(body))
            .await
    }

    pub async fn send_json(
        &self,
        method: Method,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> Resp {
        self.send(self.request(method, path, token).json(body))
            .await
    }

    pub async fn register(&self, username: &str, email: &str, password: &str) -> Resp {
        self.post_json(
            "/auth/register",
            &json!({"username": username, "email": email, "password": password}),
            None,
        )
        .await
    }

    pub async fn login_email(&self, email: &str, password: &str) -> Resp {
        self.post_json(
            "/auth/login",
            &json!({"email": email, "password": password}),
            None,
        )
        .await
    }

    /// Registers `name` (email `name@example.com`) and logs in.
    pub async fn user(&self, name: &str) -> Tokens {
        self.register(name, &format!("{name}@example.com"), PASSWORD)
            .await
            .assert_status(201);
        self.login(name).await
    }

    pub async fn login(&self, name: &str) -> Tokens {
        let r = self
            .login_email(&format!("{name}@example.com"), PASSWORD)
            .await;
        r.assert_status(200);
        Tokens {
            access: r.str("access_token"),
            refresh: r.str("refresh_token"),
            user_id: r.str("user_id"),
        }
    }

    /// Bootstraps the configured-admin way (`root@example.com`) and logs in.
    pub async fn admin(&self) -> Tokens {
        tessera::bootstrap::ensure_admin(
            &self.state,
            "root@example.com",
            "root",
            SecretString::from(PASSWORD.to_owned()),
        )
        .await
        .expect("bootstrap admin");
        self.login("root").await
    }

    /// Rotates the session of `t` once: the new access token is not fresh
    /// (checked on /auth/verify). `t.refresh` is used up.
    pub async fn non_fresh(&self, t: &Tokens) -> Tokens {
        let r = self.refresh(&t.refresh).await;
        r.assert_status(200);
        let tokens = Tokens {
            access: r.str("access_token"),
            refresh: r.str("refresh_token"),
            user_id: t.user_id.clone(),
        };
        let v = self.verify(&tokens.access).await;
        v.assert_status(200);
        assert_eq!(
            v.body["fresh"], false,
            "a refreshed access token is not fresh"
        );
        tokens
    }

    /// A new session of `name`, rotated once: its access token is not fresh.
    pub async fn non_fresh_login(&self, name: &str) -> Tokens {
        let t = self.login(name).await;
        self.non_fresh(&t).await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Resp {
        self.post("/auth/refresh", Some(refresh_token)).await
    }

    /// Asserts that every one of `tokens` is refused as revoked: verify,
    /// `GET protected` with the access token, and refresh.
    pub async fn assert_revoked(&self, tokens: &[&Tokens], protected: &str) {
        for t in tokens {
            self.verify(&t.access)
                .await
                .assert_error(401, "TokenRevoked");
            self.get(protected, Some(&t.access))
                .await
                .assert_error(401, "TokenRevoked");
            self.refresh(&t.refresh)
                .await
                .assert_error(401, "TokenRevoked");
        }
    }

    pub async fn verify(&self, access: &str) -> Resp {
        self.get("/auth/verify", Some(access)).await
    }

    // ------------------------------------------------------------ mail

    /// The mailbox of the SMTP server this app sends to.
    pub fn mailbox(&self) -> smtp::Mailbox {
        use secrecy::ExposeSecret;
        let url = self
            .config
            .smtp_url
            .as_ref()
            .expect("this app sends no mail over SMTP (smtp_url unset)");
        smtp::Mailbox::of_url(url.expose_secret())
    }

    /// Mails this app sent (its own From) that reached `to`, oldest first.
    pub fn mails_to(&self, to: &str) -> Vec<smtp::Mail> {
        let from = self.state.mail.from.0.email.to_string();
        self.mailbox()
            .all()
            .into_iter()
            .filter(|m| m.envelope_from.eq_ignore_ascii_case(&from) && m.is_to(to))
            .collect()
    }

    /// Waits until at least `n` mails of this app reached `to` and returns
    /// them all; panics with what did arrive after `timeout`.
    pub async fn wait_for_mails(&self, to: &str, n: usize, timeout: Duration) -> Vec<smtp::Mail> {
        let deadline = Instant::now() + timeout;
        loop {
            let mails = self.mails_to(to);
            if mails.len() >= n {
                return mails;
            }
            if Instant::now() >= deadline {
                let from = self.state.mail.from.0.email.to_string();
                let sent: Vec<(Vec<String>, String)> = self
                    .mailbox()
                    .all()
                    .into_iter()
                    .filter(|m| m.envelope_from.eq_ignore_ascii_case(&from))
                    .map(|m| (m.to, m.subject))
                    .collect();
                panic!(
                    "expected {n} mail(s) to {to} within {timeout:?}, got {}; all this app's mails: {sent:?}",
                    mails.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits `wait` and asserts that no mail of this app reached `to`.
    pub async fn assert_no_mail_to(&self, to: &str, wait: Duration) {
        tokio::time::sleep(wait).await;
        let mails = self.mails_to(to);
        assert!(
            mails.is_empty(),
            "expected no mail to {to}, got: {:?}",
            mails.iter().map(|m| &m.subject).collect::<Vec<_>>()
        );
    }

    /// Stops the app's mail sender the SIGTERM way (`Sender::drain`).
    pub async fn drain_sender(&self, grace: Duration) {
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(sender) = sender {
            sender.drain(grace).await;
        }
    }
}
