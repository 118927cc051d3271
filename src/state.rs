//! Everything a request needs, built once at start from the `Config`.

use std::sync::Arc;

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use rand::RngCore;
use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use secrecy::SecretString;

use crate::{
    auth::{
        keys::{KeyRing, RingSettings},
        limits::LoginLimits,
        password::Passwords,
        store::{MemoryStore, RedisStore, TokenStore},
        tokens::{TokenEngine, TokenSettings},
    },
    config::Config,
    reads::Reads,
    sqlite_reads::{self, SqliteReads},
};

/// The HTTP and account rules' numbers (the token engine has its own).
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_body_bytes: usize,
    /// `TESSERA_CORS_ORIGINS` as configured (parsed by `http::CorsPolicy`).
    pub cors_origins: Option<String>,
    /// Per-request deadline (`TESSERA_REQUEST_TIMEOUT`); zero means none.
    pub request_timeout: std::time::Duration,
    pub trust_forwarded: bool,
    pub login_limits: crate::auth::limits::LoginLimits,
    /// `TESSERA_REGISTER_PER_IP`: registrations per client IP per hour.
    pub register_per_ip: u32,
}

pub struct AppState {
    /// Every write, and every read that decides a write.
    pub db: DatabaseConnection,
    /// Read-only connections of a file SQLite database (`reader`).
    pub read_pool: Option<DatabaseConnection>,
    /// The hottest reads of a file SQLite database, run in place (`reads`).
    pub sqlite_reads: Option<Arc<SqliteReads>>,
    pub tokens: TokenEngine,
    pub passwords: Passwords,
    pub settings: Settings,
    pub mail: crate::mail::MailSettings,
    pub browser: BrowserSettings,
    /// Seals TOTP secrets and keys recovery-code hashes (`TESSERA_DATA_KEY`).
    pub data_key: crate::auth::sealed::DataKey,
}

/// Browser sessions (API.md "Browser sessions"): `TESSERA_COOKIES`, the
/// cookies' `Secure` flag and names, the CSRF key, and the origins an
/// unsafe cookie-authenticated request may come from.
#[derive(Debug, Clone)]
pub struct BrowserSettings {
    pub enabled: bool,
    pub jar: crate::auth::cookies::CookieJar,
    pub csrf_key: crate::auth::csrf::CsrfKey,
    /// The service's own origin (`scheme://host[:port]` of `TESSERA_PUBLIC_URL`).
    pub own_origin: String,
    /// `TESSERA_CORS_ORIGINS` when it lists origins (never `*`).
    pub cors_origins: Vec<String>,
}

impl BrowserSettings {
    /// Whether an `Origin` (lowercased) may send unsafe cookie requests.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        origin == self.own_origin || self.cors_origins.iter().any(|o| o == origin)
    }

    fn from_config(config: &Config, key_material: &[u8]) -> Self {
        let public = config.public_url().to_ascii_lowercase();
        // The origin is the URL without its path.
        let own_origin = match public.split_once("://") {
            Some((scheme, rest)) => {
                format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest))
            }
            None => public,
        };
        let cors_origins = match crate::http::CorsPolicy::parse(config.cors_origins.as_deref()) {
            Ok(Some(crate::http::CorsPolicy::Origins(list))) => list,
            _ => Vec::new(),
        };
        Self {
            enabled: config.cookies,
            jar: crate::auth::cookies::CookieJar {
                secure: config.cookie_secure,
            },
            csrf_key: crate::auth::csrf::CsrfKey::derive(key_material),
            own_origin,
            cors_origins,
        }
    }
}

/// What every pool of ours shares: 5 s to connect and to wait for a
/// connection, no statement logging (bound values may be hashes), and a
/// health check only for connections idle for `PING_IF_IDLE`. sqlx's
/// default pings every connection on every checkout: one more round trip
/// per query (a tenth of `/users/me`'s CPU on PostgreSQL, in a profile).
/// A connection that broke while busy fails its query instead, which is
/// answered 503 (`error::is_connection_loss`) and closes it.
fn pool_options(url: &str) -> ConnectOptions {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.connect_timeout(DB_TIMEOUT)
        .acquire_timeout(DB_TIMEOUT)
        .test_before_acquire_if_idle_for(PING_IF_IDLE)
        .sqlx_logging(false);
    opts
}

const PING_IF_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

const DB_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

async fn open(opts: ConnectOptions) -> anyhow::Result<DatabaseConnection> {
    Database::connect(opts)
        .await
        .context("cannot connect to the database (DATABASE_URL)")
}

pub async fn connect_db(url: &str) -> anyhow::Result<DatabaseConnection> {
    let mut opts = pool_options(url);
    if url.starts_with("sqlite:") {
        // One writer at a time avoids SQLITE_BUSY under concurrent requests.
        // WAL with synchronous=NORMAL: a commit appends to the log instead of
        // syncing a rollback journal, and stays durable against a process
        // crash (a power loss may drop the last commits, never corrupt).
        opts.max_connections(1)
            .map_sqlx_sqlite_opts(|o| {
                use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(DB_TIMEOUT)
            })
            .map_sqlx_sqlite_pool_opts(stable_query_plans);
    }
    open(opts).await
}

type SqlitePoolOptions = sea_orm::sqlx::pool::PoolOptions<sea_orm::sqlx::Sqlite>;

/// Turns on SQLite's query planner stability guarantee on every connection.
/// Without it a statement whose plan looked at a bound value (SeaORM binds
/// every `LIMIT` and `OFFSET`, and `.one()` is `LIMIT ?`) is marked expired
/// at each rebinding and compiled again on every execution: a tenth of
/// the CPU of a list, in a profile. Our plans do not depend on the values
/// (no statistics are gathered), so nothing is lost.
fn stable_query_plans(pool: SqlitePoolOptions) -> SqlitePoolOptions {
    pool.after_connect(|conn, _meta| {
        Box::pin(async move {
            let mut handle = conn.lock_handle().await?;
            let db = handle.as_raw_handle().as_ptr();
            // SAFETY: `db` is this connection's open handle, held locked for
            // the call; the option takes an int and a nullable int pointer.
            let rc = unsafe {
                libsqlite3_sys::sqlite3_db_config(
                    db,
                    libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
                    1 as std::ffi::c_int,
                    std::ptr::null_mut::<std::ffi::c_int>(),
                )
            };
            if rc == libsqlite3_sys::SQLITE_OK {
                Ok(())
            } else {
                Err(sea_orm::sqlx::Error::Configuration(
                    format!("SQLITE_DBCONFIG_ENABLE_QPSG failed ({rc})").into(),
                ))
            }
        })
    })
}

/// Read-only connections of a file SQLite database: in WAL mode readers
/// never block the writer nor each other.
const SQLITE_READERS: u32 = 4;

/// `AppState::read_pool`, opened once the writer has created and migrated
/// the database. `None` where reads share the writer's pool: PostgreSQL
/// (whose pool serves both), and in-memory SQLite (which exists only on its
/// own connection).
pub async fn connect_reader(url: &str) -> anyhow::Result<Option<DatabaseConnection>> {
    if !url.starts_with("sqlite:") || url.contains(":memory:") || url.contains("mode=memory") {
        return Ok(None);
    }
    let mut opts = pool_options(url);
    opts.max_connections(SQLITE_READERS)
        .map_sqlx_sqlite_opts(|o| {
            // Read-only: a write sent here by mistake fails loudly instead
            // of racing the writer for the lock.
            o.read_only(true)
                .create_if_missing(false)
                .busy_timeout(DB_TIMEOUT)
        })
        .map_sqlx_sqlite_pool_opts(stable_query_plans);
    open(opts).await.map(Some)
}

/// Applies pending migrations. On PostgreSQL, replicas starting together
/// serialise on an advisory lock held by one dedicated connection.
pub async fn migrate(db: &DatabaseConnection, url: &str) -> anyhow::Result<()> {
    use sea_orm::ConnectionTrait;
    if !url.starts_with("postgres") {
        return Migrator::up(db, None)
            .await
            .context("database migration failed");
    }
    let mut opts = pool_options(url);
    opts.max_connections(1).min_connections(1);
    let conn = open(opts).await?;
    const LOCK: &str = "SELECT pg_advisory_lock(7403452390117)";
    const UNLOCK: &str = "SELECT pg_advisory_unlock(7403452390117)";
    conn.execute_unprepared(LOCK)
        .await
        .context("migration lock")?;
    let result = Migrator::up(&conn, None).await;
    let _ = conn.execute_unprepared(UNLOCK).await;
    let _ = conn.close().await;
    result.context("database migration failed")
}

fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Reads a PEM key file named by `setting`.
fn read_key_file(setting: &str, path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("{setting}: cannot read {}", path.display()))
}

/// The signing and verification keys of the configuration, and the key
/// material the server's own keys derive from (`auth::server_key`):
/// `TESSERA_DATA_KEY`, else the HS256 secret (the random one too: links and
/// CSRF tokens then die with the process, like its tokens), else the
/// Ed25519 key file's text. Each key file is read once.
fn key_ring(config: &Config) -> anyhow::Result<(KeyRing, Vec<u8>)> {
    let ed25519_pem = config
        .jwt_ed25519_key_file
        .as_deref()
        .map(|p| read_key_file("TESSERA_JWT_ED25519_KEY_FILE", p))
        .transpose()?;
    let previous_public_pems = config
        .previous_public_key_files()
        .iter()
        .map(|p| read_key_file("TESSERA_JWT_PREVIOUS_PUBLIC_KEYS", p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let random;
    let secret = match (&config.jwt_secret, &ed25519_pem) {
        (Some(s), _) => Some(s),
        (None, Some(_)) => None,
        (None, None) => {
            tracing::warn!(
                "TESSERA_JWT_SECRET is not set: using a random per-process secret; tokens die with the process"
            );
            let mut bytes = [0u8; 48];
            rand::rng().fill_bytes(&mut bytes);
            random = SecretString::from(crate::auth::server_key::hex(&bytes));
            Some(&random)
        }
    };
    if ed25519_pem.is_some() && config.jwt_secret.is_some() {
        tracing::info!("signing with EdDSA: TESSERA_JWT_SECRET is accepted for verification only");
    }
    let previous = config.previous_secrets();
    let keys = KeyRing::new(RingSettings {
        secret,
        previous_secrets: &previous,
        ed25519_private_pem: ed25519_pem.as_deref(),
        previous_public_pems: &previous_public_pems,
        issuer: &config.issuer,
        audience: &config.audience,
        leeway_secs: config.jwt_leeway.as_secs(),
    })?;
    tracing::info!(alg = ?keys.algorithm(), kid = keys.kid(), "token signing key");
    use secrecy::ExposeSecret;
    let material = match (&config.data_key, secret, &ed25519_pem) {
        (Some(k), _, _) => k.expose_secret().as_bytes().to_vec(),
        (None, Some(s), _) => s.expose_secret().as_bytes().to_vec(),
        (None, None, Some(pem)) => pem.clone().into_bytes(),
        // The ring refuses to start without a key: unreachable in practice.
        (None, None, None) => anyhow::bail!("no key material for the server's keys"),
    };
    if config.data_key.is_none() {
        tracing::warn!(
            "TESSERA_DATA_KEY is not set: TOTP secrets, recovery codes, mail link and CSRF tokens use a key derived from the signing key, and change when it does"
        );
    }
    Ok((keys, material))
}

impl AppState {
    /// For reads that decide nothing: on SQLite they then never queue
    /// behind the one writer. Reads that decide a write use `db`.
    pub fn reader(&self) -> &DatabaseConnection {
        self.read_pool.as_ref().unwrap_or(&self.db)
    }

    /// The reads with a faster path than SeaORM where the database has one.
    pub fn reads(&self) -> Reads<'_> {
        Reads {
            orm: self.reader(),
            sqlite: self.sqlite_reads.as_ref(),
        }
    }

    /// Connects, migrates and assembles the state. Warns once for each
    /// embedded default that is unfit for production.
    pub async fn build(config: &Config) -> anyhow::Result<Arc<Self>> {
        if let Err(problems) = config.validate() {
            anyhow::bail!(
                "refusing to start (TESSERA_ENV={}), fix the configuration:\n  - {}",
                match config.env {
                    crate::config::Environment::Production => "production",
                    crate::config::Environment::Development => "development",
                },
                problems.join("\n  - ")
            );
        }
        // Key files are read before anything connects: a bad key fails fast.
        let (keys, key_material) = key_ring(config)?;
        let mail = config.mail_settings(&key_material)?;
        let browser = BrowserSettings::from_config(config, &key_material);
        if matches!(mail.delivery, crate::mail::Delivery::Log) {
            tracing::warn!(
                "TESSERA_SMTP_URL is not set (or `log`): mails, with their links, are written to the log instead of being sent"
            );
        }
        if config.database_url.starts_with("sqlite:") {
            tracing::warn!(
                url = %config.database_url,
                "using SQLite: fine for one instance; set DATABASE_URL=postgres://... in production"
            );
        }
        let db = connect_db(&config.database_url).await?;
        migrate(&db, &config.database_url).await?;
        let read_pool = connect_reader(&config.database_url).await?;
        let sqlite_reads = sqlite_reads::file_of(&config.database_url)?
            .map(|path| SqliteReads::open(&path).map(Arc::new))
            .transpose()
            .context("cannot open the SQLite database for reading")?;

        let store: Arc<dyn TokenStore> = match &config.redis_url {
            Some(url) => {
                let redis = if config.redis_cluster {
                    let seeds: Vec<&str> = url
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .collect();
                    RedisStore::new_cluster(&seeds, &config.redis_prefix)?
                } else {
                    RedisStore::new(url, &config.redis_prefix)?
                };
                redis.warn_if_evicting().await;
                Arc::new(redis)
            }
            None => {
                tracing::warn!(
                    "REDIS_URL is not set: using the in-memory token store; run one instance only"
                );
                Arc::new(MemoryStore::new())
            }
        };

        let passwords = Passwords::with_threads(
            config.argon2_memory_kib,
            config.argon2_iterations,
            config.argon2_parallelism,
            config.hash_threads,
        )
        .await?;

        let tokens = TokenEngine {
            keys,
            store,
            settings: TokenSettings {
                issuer: config.issuer.clone(),
                audience: config.audience.clone(),
                access_ttl: secs(config.access_ttl),
                refresh_ttl: secs(config.refresh_ttl),
                reuse_grace_ms: i64::try_from(config.refresh_reuse_grace.as_millis())
                    .unwrap_or(i64::MAX),
                max_sessions: config.max_sessions_per_user,
            },
            cache: verify_cache(config),
        };
        Ok(Arc::new(Self {
            db,
            read_pool,
            sqlite_reads,
            tokens,
            passwords,
            mail,
            browser,
            data_key: crate::auth::sealed::DataKey::derive(&key_material),
            settings: Settings {
                max_body_bytes: config.max_body_bytes,
                cors_origins: config.cors_origins.clone(),
                request_timeout: config.request_timeout,
                trust_forwarded: config.trust_forwarded,
                login_limits: LoginLimits {
                    max_failures: config.login_max_failures,
                    max_failures_per_account: config.login_max_failures_per_account,
                    max_failures_per_ip: config.login_max_failures_per_ip,
                    window_secs: config.login_window.as_secs().max(1),
                },
                register_per_ip: config.register_per_ip,
            },
        }))
    }
}

/// The verify cache and its Redis listeners, when configured
/// (`validate` refused `tracking` without `REDIS_URL`).
fn verify_cache(config: &Config) -> Option<Arc<crate::auth::verify_cache::VerifyCache>> {
    use crate::auth::{store::tracking, verify_cache::VerifyCache};
    if config.verify_cache != crate::config::VerifyCacheMode::Tracking {
        return None;
    }
    let url = config.redis_url.as_deref()?;
    let nodes = if config.redis_cluster {
        tracking::Nodes::Cluster(
            url.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    } else {
        tracking::Nodes::Single(url.to_owned())
    };
    let cache = Arc::new(VerifyCache::new(
        crate::auth::verify_cache::DEFAULT_MAX_ENTRIES,
    ));
    tracking::spawn(Arc::clone(&cache), nodes, &config.redis_prefix);
    Some(cache)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No health-check round trip before every query; only connections
    /// idle long enough to have been dropped by a server or a proxy.
    #[test]
    fn pools_ping_only_idle_connections() {
        for url in ["postgres://u@h/db", "sqlite://x.db?mode=rwc"] {
            let opts = pool_options(url);
            assert!(!opts.get_test_before_acquire(), "{url}");
            assert_eq!(
                opts.get_test_before_acquire_if_idle_for(),
                Some(PING_IF_IDLE)
            );
        }
    }
}
