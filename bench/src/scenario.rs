//! Scenarios: the setup each needs (accounts, tokens, rows) and the one
//! request a worker repeats. Setup failures are fatal (`anyhow`); answers
//! during the run are only ever counted.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::ValueEnum;
use reqwest::{Client, Method, RequestBuilder};
use serde_json::{Value, json};

use crate::stats::Outcome;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// GET `--path` (default `/`) without credentials: the `bench baseline` floor.
    Floor,
    /// GET /auth/verify with a Bearer access token.
    Verify,
    /// GET /users/me with a Bearer access token.
    Me,
    /// POST /auth/login {email, password} (Argon2-bound).
    Login,
    /// POST /auth/refresh, one rotating chain per connection.
    Refresh,
    /// GET /employees?per_page=20 after creating 20 employees.
    EmployeesList,
    /// POST /employees {name, position}.
    EmployeesCreate,
    /// Verify at --rate, first alone, then under a closed-loop login storm
    /// on --storm-connections more connections (`mixed.rs`).
    Mixed,
    /// One address's logins at --rate, first alone, then while
    /// --flood-addresses other addresses flood logins with their own
    /// accounts on --storm-connections connections (`flood.rs`).
    LoginFlood,
    /// Verify at --rate, first alone, then while --slow-connections hold
    /// partial request heads (`slow.rs`).
    SlowClients,
    /// POST /auth/register, a fresh username and email each time; prints
    /// the mail sender's throughput from /metrics (`mail.rs`).
    Register,
    /// POST /auth/password/forgot for unknown addresses, then for existing
    /// accounts; prints the mail sender's throughput (`mail.rs`).
    Forgot,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Floor => "floor",
            Scenario::Verify => "verify",
            Scenario::Me => "me",
            Scenario::Login => "login",
            Scenario::Refresh => "refresh",
            Scenario::EmployeesList => "employees-list",
            Scenario::EmployeesCreate => "employees-create",
            Scenario::Mixed => "mixed",
            Scenario::LoginFlood => "login-flood",
            Scenario::SlowClients => "slow-clients",
            Scenario::Register => "register",
            Scenario::Forgot => "forgot",
        }
    }
}

/// One keep-alive HTTP/1.1 connection: a worker's own client holds at most
/// one idle connection and the worker has at most one request in flight.
pub fn connection(timeout: Duration) -> Result<Client> {
    Client::builder()
        .http1_only()
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .timeout(timeout)
        .build()
        .context("building HTTP client")
}

#[derive(Clone, Debug)]
pub struct Account {
    pub email: String,
    pub password: String,
}

#[derive(Clone, Debug)]
struct Tokens {
    access: String,
    refresh: String,
}

/// Sends `req`, reads the whole body (so the connection can be reused).
async fn exchange(req: RequestBuilder) -> (Outcome, Option<Vec<u8>>) {
    let resp = match req.send().await {
        Ok(r) => r,
        Err(_) => return (Outcome::Transport, None),
    };
    let status = resp.status();
    let body = match resp.bytes().await {
        Ok(b) => b.to_vec(),
        Err(_) => return (Outcome::Transport, None),
    };
    if status.is_success() {
        (Outcome::Ok, Some(body))
    } else {
        (Outcome::Status(status.as_u16()), Some(body))
    }
}

fn tokens_of(body: &[u8]) -> Option<Tokens> {
    let v: Value = serde_json::from_slice(body).ok()?;
    Some(Tokens {
        access: v.get("access_token")?.as_str()?.to_owned(),
        refresh: v.get("refresh_token")?.as_str()?.to_owned(),
    })
}

/// `X-Forwarded-For` per connection: connection i sends address i mod n
/// (the server must run with `TESSERA_TRUST_FORWARDED=true`). Empty: no
/// header, every connection is the socket's address.
#[derive(Clone, Debug, Default)]
pub struct Addresses(Vec<String>);

impl Addresses {
    /// `n` addresses of the 100.64.0.0/10 shared range (RFC 6598), counted
    /// from `first`.
    pub fn spread(first: u32, n: u32) -> Self {
        Self(
            (first..first + n)
                .map(|i| format!("100.{}.{}.{}", 64 + (i >> 16) % 64, (i >> 8) & 255, i & 255))
                .collect(),
        )
    }

    pub fn one(address: &str) -> Self {
        Self(vec![address.to_owned()])
    }

    pub fn of(&self, connection: usize) -> Option<String> {
        (!self.0.is_empty()).then(|| self.0[connection % self.0.len()].clone())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

fn forwarded(req: RequestBuilder, address: Option<&str>) -> RequestBuilder {
    match address {
        Some(a) => req.header("x-forwarded-for", a),
        None => req,
    }
}

/// Setup-time calls: any failure ends the run before it starts. Sent from
/// `forwarded` when set (registrations count per client address).
struct Setup {
    client: Client,
    base: String,
    forwarded: Option<String>,
}

impl Setup {
    /// One setup request; a 429 (the server's fair share of hashing for
    /// one address, or a limit) is retried after its `Retry-After`, since
    /// setup is not measured.
    async fn call(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> Result<Vec<u8>> {
        const TRIES: u32 = 30;
        for _ in 1..TRIES {
            match self.call_once(&method, path, bearer, body.as_ref()).await? {
                Answer::Ok(bytes) => return Ok(bytes),
                Answer::Retry(after) => tokio::time::sleep(after).await,
            }
        }
        match self.call_once(&method, path, bearer, body.as_ref()).await? {
            Answer::Ok(bytes) => Ok(bytes),
            Answer::Retry(_) => bail!("{method} {path}: still 429 after {TRIES} tries"),
        }
    }

    async fn call_once(
        &self,
        method: &Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Answer> {
        let mut req = forwarded(
            self.client
                .request(method.clone(), format!("{}{path}", self.base)),
            self.forwarded.as_deref(),
        );
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {path}: no answer"))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let bytes = resp
            .bytes()
            .await
            .with_context(|| format!("{method} {path}: reading answer"))?;
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS
            && let Some(secs) = retry_after
        {
            return Ok(Answer::Retry(Duration::from_secs(secs.max(1))));
        }
        if !status.is_success() {
            bail!(
                "{method} {path}: {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        Ok(Answer::Ok(bytes.to_vec()))
    }

    async fn register(&self) -> Result<Account> {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let username = format!("bench_{}", &tag[..20]);
        let account = Account {
            email: format!("{username}@bench.example.com"),
            password: format!("bench-pw-{tag}"),
        };
        self.call(
            Method::POST,
            "/auth/register",
            None,
            Some(
                json!({"username": username, "email": account.email, "password": account.password}),
            ),
        )
        .await?;
        Ok(account)
    }

    async fn login(&self, a: &Account) -> Result<Tokens> {
        let body = self
            .call(Method::POST, "/auth/login", None, Some(login_body(a)))
            .await?;
        tokens_of(&body)
            .ok_or_else(|| anyhow!("POST /auth/login: no access_token/refresh_token in answer"))
    }
}

/// A setup request's answer: the body, or wait and send it again.
enum Answer {
    Ok(Vec<u8>),
    Retry(Duration),
}

fn login_body(a: &Account) -> Value {
    json!({"email": a.email, "password": a.password})
}

/// What one worker sends, and the state it carries between requests. A
/// clone shares the original's client (its connection) and copies its state.
#[derive(Clone)]
pub enum Worker {
    Get {
        client: Client,
        url: String,
        bearer: Option<String>,
    },
    Login {
        client: Client,
        url: String,
        body: Value,
        /// `X-Forwarded-For`, if any.
        from: Option<String>,
    },
    Refresh {
        client: Client,
        base: String,
        account: Account,
        token: String,
        /// Chains restarted by a fresh login after a failed rotation.
        restarts: u64,
    },
    CreateEmployee {
        client: Client,
        url: String,
        bearer: String,
        prefix: String,
        n: u64,
    },
    /// A new account per request: `{prefix}_{n}`, `{prefix}_{n}@...`.
    Register {
        client: Client,
        url: String,
        prefix: String,
        password: String,
        n: u64,
        from: Option<String>,
    },
    /// A forgot request for `to`, or (`None`) for a fresh unknown address
    /// per request.
    Forgot {
        client: Client,
        url: String,
        to: Option<String>,
        prefix: String,
        n: u64,
        from: Option<String>,
    },
}

impl Worker {
    /// One timed request.
    pub async fn step(&mut self) -> Outcome {
        match self {
            Worker::Get {
                client,
                url,
                bearer,
            } => {
                let mut req = client.get(url.as_str());
                if let Some(t) = bearer {
                    req = req.bearer_auth(t);
                }
                exchange(req).await.0
            }
            Worker::Login {
                client,
                url,
                body,
                from,
            } => {
                exchange(forwarded(client.post(url.as_str()), from.as_deref()).json(body))
                    .await
                    .0
            }
            Worker::CreateEmployee {
                client,
                url,
                bearer,
                prefix,
                n,
            } => {
                *n += 1;
                let body = json!({"name": format!("{prefix}-{n}"), "position": "benchmark"});
                exchange(
                    client
                        .post(url.as_str())
                        .bearer_auth(bearer.as_str())
                        .json(&body),
                )
                .await
                .0
            }
            Worker::Register {
                client,
                url,
                prefix,
                password,
                n,
                from,
            } => {
                *n += 1;
                let username = format!("{prefix}_{n}");
                let body = json!({
                    "username": username,
                    "email": format!("{username}@{MAIL_DOMAIN}"),
                    "password": password,
                });
                exchange(forwarded(client.post(url.as_str()), from.as_deref()).json(&body))
                    .await
                    .0
            }
            Worker::Forgot {
                client,
                url,
                to,
                prefix,
                n,
                from,
            } => {
                let email = match to {
                    Some(e) => e.clone(),
                    None => {
                        *n += 1;
                        format!("{prefix}_{n}@{MAIL_DOMAIN}")
                    }
                };
                exchange(
                    forwarded(client.post(url.as_str()), from.as_deref())
                        .json(&json!({ "email": email })),
                )
                .await
                .0
            }
            Worker::Refresh {
                client,
                base,
                account,
                token,
                restarts,
            } => {
                let req = client
                    .post(format!("{base}/auth/refresh"))
                    .bearer_auth(token.as_str());
                let outcome = match exchange(req).await {
                    (Outcome::Ok, Some(body)) => match tokens_of(&body) {
                        Some(t) => {
                            *token = t.refresh;
                            Outcome::Ok
                        }
                        None => Outcome::BadBody,
                    },
                    (Outcome::Ok, None) => Outcome::BadBody,
                    (other, _) => other,
                };
                if outcome != Outcome::Ok {
                    // The chain may be spent (a lost answer still rotated
                    // it): start a new one, outside the timed request.
                    let login = client
                        .post(format!("{base}/auth/login"))
                        .json(&login_body(account));
                    if let (Outcome::Ok, Some(body)) = exchange(login).await
                        && let Some(t) = tokens_of(&body)
                    {
                        *token = t.refresh;
                        *restarts += 1;
                    }
                }
                outcome
            }
        }
    }

    pub fn restarts(&self) -> u64 {
        match self {
            Worker::Refresh { restarts, .. } => *restarts,
            _ => 0,
        }
    }
}

/// Accounts, tokens and rows for `scenario`, then one worker per connection.
/// `addresses`: the logins' `X-Forwarded-For` (`login` and the storms).
pub async fn prepare(
    scenario: Scenario,
    base: &str,
    path: &str,
    connections: usize,
    timeout: Duration,
    addresses: &Addresses,
) -> Result<Vec<Worker>> {
    let base = base.trim_end_matches('/').to_owned();
    let setup = Setup {
        client: connection(timeout)?,
        base: base.clone(),
        forwarded: None,
    };
    let mut workers = Vec::with_capacity(connections);
    match scenario {
        // Two streams: `mixed.rs` prepares a verify and a login set.
        Scenario::Mixed => bail!("mixed is prepared as verify + login"),
        Scenario::LoginFlood => bail!("login-flood is prepared as logins per address"),
        Scenario::SlowClients => bail!("slow-clients is prepared as verify"),
        Scenario::Register | Scenario::Forgot => {
            bail!("register and forgot are prepared in mail.rs")
        }
        Scenario::Floor => {
            for _ in 0..connections {
                workers.push(Worker::Get {
                    client: connection(timeout)?,
                    url: format!("{base}{path}"),
                    bearer: None,
                });
            }
        }
        Scenario::Verify | Scenario::Me | Scenario::EmployeesList => {
            let account = setup.register().await?;
            let tokens = setup.login(&account).await?;
            let url = match scenario {
                Scenario::Verify => format!("{base}/auth/verify"),
                Scenario::Me => format!("{base}/users/me"),
                _ => {
                    for i in 0..20 {
                        setup
                            .call(
                                Method::POST,
                                "/employees",
                                Some(&tokens.access),
                                Some(json!({"name": format!("seed-{i}"), "position": "benchmark"})),
                            )
                            .await?;
                    }
                    format!("{base}/employees?per_page=20")
                }
            };
            for _ in 0..connections {
                workers.push(Worker::Get {
                    client: connection(timeout)?,
                    url: url.clone(),
                    bearer: Some(tokens.access.clone()),
                });
            }
        }
        Scenario::Login => {
            // One account per connection: the server counts each attempt as
            // a failure until its password checks out (limits.rs), so more
            // than TESSERA_LOGIN_MAX_FAILURES (5) logins in flight on one
            // account get 429. The per-IP limit (50) still binds above 50
            // connections from one address. Past
            // TESSERA_MAX_SESSIONS_PER_USER the oldest sessions end.
            let per_address = connections.div_ceil(addresses.len().max(1));
            if per_address > 50 {
                eprintln!(
                    "bench: more than 50 logins in flight from one address trip the per-IP limit \
                     unless the server runs with TESSERA_LOGIN_MAX_FAILURES_PER_IP=0"
                );
            }
            if per_address > 30 {
                eprintln!(
                    "bench: more than 30 registrations from one address trip the registration \
                     limit unless the server runs with TESSERA_REGISTER_PER_IP=0"
                );
            }
            for (i, (account, _)) in accounts(&setup, connections, false, addresses)
                .await?
                .into_iter()
                .enumerate()
            {
                workers.push(Worker::Login {
                    client: connection(timeout)?,
                    url: format!("{base}/auth/login"),
                    body: login_body(&account),
                    from: addresses.of(i),
                });
            }
        }
        Scenario::EmployeesCreate => {
            let account = setup.register().await?;
            let tokens = setup.login(&account).await?;
            let run = uuid::Uuid::new_v4().simple().to_string();
            for w in 0..connections {
                workers.push(Worker::CreateEmployee {
                    client: connection(timeout)?,
                    url: format!("{base}/employees"),
                    bearer: tokens.access.clone(),
                    prefix: format!("bench-{}-{w}", &run[..8]),
                    n: 0,
                });
            }
        }
        Scenario::Refresh => {
            // One account per connection: each chain is its own session and
            // no connection's logins evict another's.
            for (account, tokens) in
                accounts(&setup, connections, true, &Addresses::default()).await?
            {
                let Some(tokens) = tokens else {
                    bail!("setup: login gave no tokens");
                };
                workers.push(Worker::Refresh {
                    client: connection(timeout)?,
                    base: base.clone(),
                    account,
                    token: tokens.refresh,
                    restarts: 0,
                });
            }
        }
    }
    Ok(workers)
}

/// The domain of every address the bench makes up (accounts and unknown
/// addresses alike, so existing and unknown differ only in existence).
const MAIL_DOMAIN: &str = "bench.example.com";

/// A short tag for this run, so names never collide with an earlier run's.
fn run_tag() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

/// `register`: one worker per connection, each inventing its accounts.
pub fn registrations(
    base: &str,
    connections: usize,
    timeout: Duration,
    addresses: &Addresses,
) -> Result<Vec<Worker>> {
    let base = base.trim_end_matches('/');
    let run = run_tag();
    (0..connections)
        .map(|w| {
            Ok(Worker::Register {
                client: connection(timeout)?,
                url: format!("{base}/auth/register"),
                prefix: format!("b{run}_{w}"),
                password: format!("bench-pw-{run}"),
                n: 0,
                from: addresses.of(w),
            })
        })
        .collect()
}

/// `forgot`: connection i asks for `to[i]`, or (`None`) for a fresh
/// unknown address per request.
pub fn forgets(
    base: &str,
    to: Option<Vec<String>>,
    connections: usize,
    timeout: Duration,
    addresses: &Addresses,
) -> Result<Vec<Worker>> {
    let base = base.trim_end_matches('/');
    let run = run_tag();
    (0..connections)
        .map(|w| {
            Ok(Worker::Forgot {
                client: connection(timeout)?,
                url: format!("{base}/auth/password/forgot"),
                to: to.as_ref().and_then(|t| t.get(w).cloned()),
                prefix: format!("nobody{run}_{w}"),
                n: 0,
                from: addresses.of(w),
            })
        })
        .collect()
}

/// `n` fresh accounts, account i registered from `addresses.of(i)`.
pub async fn register_accounts(
    base: &str,
    n: usize,
    timeout: Duration,
    addresses: &Addresses,
) -> Result<Vec<Account>> {
    let setup = Setup {
        client: connection(timeout)?,
        base: base.trim_end_matches('/').to_owned(),
        forwarded: None,
    };
    Ok(accounts(&setup, n, false, addresses)
        .await?
        .into_iter()
        .map(|(a, _)| a)
        .collect())
}

/// `n` fresh accounts, registered (and logged in, with `login`)
/// concurrently, account i from `addresses.of(i)`; in that order.
async fn accounts(
    setup: &Setup,
    n: usize,
    login: bool,
    addresses: &Addresses,
) -> Result<Vec<(Account, Option<Tokens>)>> {
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..n {
        let setup = Setup {
            client: setup.client.clone(),
            base: setup.base.clone(),
            forwarded: addresses.of(i),
        };
        pending.spawn(async move {
            let account = setup.register().await?;
            let tokens = match login {
                true => Some(setup.login(&account).await?),
                false => None,
            };
            anyhow::Ok((i, account, tokens))
        });
    }
    let mut out = Vec::with_capacity(n);
    while let Some(done) = pending.join_next().await {
        out.push(done.context("setup task")??);
    }
    out.sort_by_key(|(i, ..)| *i);
    Ok(out.into_iter().map(|(_, a, t)| (a, t)).collect())
}

/// `per_account` logins of each of `accounts` (sessions for `propagation`),
/// at most `concurrency` at a time and one at a time per account (the
/// server counts a login in flight as a failure of that account until its
/// password checks out). The access tokens, account by account.
pub async fn sessions(
    base: &str,
    accounts: &[Account],
    per_account: usize,
    concurrency: usize,
    timeout: Duration,
) -> Result<Vec<String>> {
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut pending = tokio::task::JoinSet::new();
    for (i, account) in accounts.iter().cloned().enumerate() {
        let setup = Setup {
            client: connection(timeout)?,
            base: base.trim_end_matches('/').to_owned(),
            forwarded: None,
        };
        let permits = permits.clone();
        pending.spawn(async move {
            let mut tokens = Vec::with_capacity(per_account);
            for _ in 0..per_account {
                let _permit = permits.acquire().await.context("setup semaphore")?;
                tokens.push(setup.login(&account).await?.access);
            }
            anyhow::Ok((i, tokens))
        });
    }
    let mut out = Vec::with_capacity(accounts.len());
    while let Some(done) = pending.join_next().await {
        out.push(done.context("setup task")??);
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out.into_iter().flat_map(|(_, t)| t).collect())
}
