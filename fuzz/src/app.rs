//! The whole application in-process (`tessera::app`: the real routes, body
//! parsing, error rendering, rules and database), built once per fuzzing
//! process and driven one request at a time.
//!
//! State: a SQLite file under /dev/shm (or the temp dir), the in-memory
//! token store, fast argon2, an admin account with a fresh access token, and
//! one employee, category, product and other user to aim PATCH/PUT at.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use clap::Parser;
use poem::{
    Body, Endpoint, EndpointExt, Request,
    http::{Method, StatusCode},
};
use secrecy::SecretString;
use serde_json::{Value, json};
use tessera::{config::Config, state::AppState};

use crate::SECRET;

pub const ADMIN_EMAIL: &str = "fuzz-admin@example.com";
pub const ADMIN_USERNAME: &str = "fuzz-admin";
pub const ADMIN_PASSWORD: &str = "fuzz-admin-password";

/// In a body, replaced by the id of the existing category before sending,
/// so that product bodies can name a category that exists.
pub const CATEGORY_PLACEHOLDER: &[u8] = b"@CATEGORY@";

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    config: Config,
}

pub struct Response {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, String::from_utf8_lossy(&self.body))
    }
}

impl Response {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Ids of the resources the PATCH/PUT operations aim at.
pub struct Ids {
    pub employee: String,
    pub category: String,
    pub product: String,
    pub other_user: String,
}

/// The admin's credentials and token; they change when a fuzzed request
/// changes the admin's username or password.
struct Account {
    username: String,
    password: String,
    token: String,
}

pub struct App {
    rt: tokio::runtime::Runtime,
    ep: poem::endpoint::BoxEndpoint<'static>,
    account: Mutex<Account>,
    pub ids: Ids,
}

fn db_path() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    let dir = if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    };
    dir.join(format!("tessera-fuzz-{}.db", std::process::id()))
}

impl App {
    pub fn new() -> App {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let path = db_path();
        for suffix in ["", "-journal", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let cli = Cli::parse_from([
            "tessera-fuzz",
            "--database-url",
            &url,
            "--jwt-secret",
            SECRET,
            "--argon2-memory-kib",
            "1024",
            "--argon2-iterations",
            "1",
            // A fuzzing process runs for hours: tokens must outlive it, and
            // the fuzzer's failed logins must not lock the harness out.
            "--access-ttl",
            "315360000",
            "--login-max-failures",
            "4000000000",
            "--login-max-failures-per-ip",
            "4000000000",
            // Forgot and address changes to one address must not turn 429.
            "--mail-per-address",
            "0",
            "--mail-per-ip",
            "0",
        ]);
        let state: Arc<AppState> = rt
            .block_on(AppState::build(&cli.config))
            .expect("application state");
        rt.block_on(tessera::bootstrap::ensure_admin(
            &state,
            ADMIN_EMAIL,
            ADMIN_USERNAME,
            SecretString::from(ADMIN_PASSWORD.to_owned()),
        ))
        .expect("admin account");
        let ep = tessera::app(state).map_to_response().boxed();
        let mut app = App {
            rt,
            ep,
            account: Mutex::new(Account {
                username: ADMIN_USERNAME.into(),
                password: ADMIN_PASSWORD.into(),
                token: String::new(),
            }),
            ids: Ids {
                employee: String::new(),
                category: String::new(),
                product: String::new(),
                other_user: String::new(),
            },
        };
        app.login().expect("admin login");
        let id = |r: Response| -> String {
            assert!(r.status.is_success(), "fixture: {:?}", r.status);
            r.json().expect("fixture JSON")["id"]
                .as_str()
                .expect("fixture id")
                .to_owned()
        };
        let other = app.send(
            Method::POST,
            "/auth/register",
            false,
            json!({"username": "fuzz-other", "email": "other@example.com", "password": "other-password"}),
        );
        app.ids.other_user = id(other);
        let employee = app.send(
            Method::POST,
            "/employees",
            true,
            json!({"name": "Ann", "position": "Engineer"}),
        );
        app.ids.employee = id(employee);
        let category = app.send(Method::POST, "/categories", true, json!({"name": "Tools"}));
        app.ids.category = id(category);
        let product = app.send(
            Method::POST,
            "/products",
            true,
            json!({"name": "Hammer", "price": 19.99, "quantity": 3, "category_id": app.ids.category}),
        );
        app.ids.product = id(product);
        app
    }

    fn send(&self, method: Method, path: &str, auth: bool, body: Value) -> Response {
        self.request(
            method,
            path,
            auth,
            Some("application/json"),
            body.to_string().into_bytes(),
        )
    }

    /// Logs the admin in again with the current credentials.
    pub fn login(&self) -> Result<(), Response> {
        let (username, password) = {
            let a = self.account.lock().unwrap();
            (a.username.clone(), a.password.clone())
        };
        let r = self.send(
            Method::POST,
            "/auth/login",
            false,
            json!({"username": username, "password": password}),
        );
        if r.status != StatusCode::OK {
            return Err(r);
        }
        let token = r
            .json()
            .and_then(|v| v["access_token"].as_str().map(str::to_owned));
        match token {
            Some(t) => {
                self.account.lock().unwrap().token = t;
                Ok(())
            }
            None => Err(r),
        }
    }

    pub fn set_username(&self, username: &str) {
        self.account.lock().unwrap().username = username.to_owned();
    }

    pub fn set_password(&self, password: &str) {
        self.account.lock().unwrap().password = password.to_owned();
    }

    /// One request through the whole application; `auth` adds the admin's
    /// fresh access token.
    pub fn request(
        &self,
        method: Method,
        path: &str,
        auth: bool,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Response {
        let mut req = Request::builder().method(method).uri_str(path);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        if auth {
            let token = self.account.lock().unwrap().token.clone();
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = req.body(Body::from(body));
        self.rt.block_on(async {
            let resp = match self.ep.call(req).await {
                Ok(r) => r,
                Err(e) => e.into_response(),
            };
            let status = resp.status();
            let content_type = resp.content_type().map(str::to_owned);
            let body = resp.into_body().into_vec().await.expect("in-process body");
            Response {
                status,
                content_type,
                body,
            }
        })
    }
}

impl Default for App {
    fn default() -> Self {
        Self::new()
    }
}
