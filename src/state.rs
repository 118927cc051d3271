//! Everything a request needs, built once at start from the `Config`.

use std::sync::Arc;

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use rand::RngCore;
use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use secrecy::SecretString;

use crate::{
    auth::{
        keys::{KeyRing, KeySettings},
        password::Passwords,
        store::{MemoryStore, RedisStore, TokenStore},
    },
    config::Config,
};

/// The token and HTTP rules' numbers, in the units they are used in.
#[derive(Debug, Clone)]
pub struct Settings {
    pub issuer: String,
    pub audience: String,
    pub access_ttl: i64,
    pub refresh_ttl: i64,
    pub reuse_grace_ms: i64,
    pub max_body_bytes: usize,
    pub trust_forwarded: bool,
}

pub struct AppState {
    pub db: DatabaseConnection,
    pub store: Arc<dyn TokenStore>,
    pub keys: KeyRing,
    pub passwords: Passwords,
    pub settings: Settings,
}

pub async fn connect_db(url: &str) -> anyhow::Result<DatabaseConnection> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.connect_timeout(std::time::Duration::from_secs(5))
        .acquire_timeout(std::time::Duration::from_secs(5))
        .sqlx_logging(false);
    if url.starts_with("sqlite:") {
        // One writer at a time avoids SQLITE_BUSY under concurrent requests.
        opts.max_connections(1);
    }
    Database::connect(opts)
        .await
        .context("cannot connect to the database (DATABASE_URL)")
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
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(1)
        .min_connections(1)
        .connect_timeout(std::time::Duration::from_secs(5))
        .sqlx_logging(false);
    let conn = Database::connect(opts)
        .await
        .context("cannot connect to the database (DATABASE_URL)")?;
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

fn split_secrets(list: &Option<SecretString>) -> Vec<SecretString> {
    use secrecy::ExposeSecret;
    list.as_ref()
        .map(|s| {
            s.expose_secret()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| SecretString::from(s.to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

impl AppState {
    /// Connects, migrates and assembles the state. Warns once for each
    /// embedded default that is unfit for production.
    pub async fn build(config: &Config) -> anyhow::Result<Arc<Self>> {
        if config.database_url.starts_with("sqlite:") {
            tracing::warn!(
                url = %config.database_url,
                "using SQLite: fine for one instance; set DATABASE_URL=postgres://... in production"
            );
        }
        let db = connect_db(&config.database_url).await?;
        migrate(&db, &config.database_url).await?;

        let store: Arc<dyn TokenStore> = match &config.redis_url {
            Some(url) => Arc::new(RedisStore::new(url, &config.redis_prefix)?),
            None => {
                tracing::warn!(
                    "REDIS_URL is not set: using the in-memory token store; run one instance only"
                );
                Arc::new(MemoryStore::new())
            }
        };

        let secret = match &config.jwt_secret {
            Some(s) => s.clone(),
            None => {
                tracing::warn!(
                    "TESSERA_JWT_SECRET is not set: using a random per-process secret; tokens die with the process"
                );
                let mut bytes = [0u8; 48];
                rand::rng().fill_bytes(&mut bytes);
                let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                SecretString::from(hex)
            }
        };
        let previous = split_secrets(&config.jwt_previous_secrets);
        let keys = KeyRing::hs256(KeySettings {
            secret: &secret,
            previous: &previous,
            issuer: &config.issuer,
            audience: &config.audience,
            leeway_secs: config.jwt_leeway.as_secs(),
        })?;

        let passwords = Passwords::new(
            config.argon2_memory_kib,
            config.argon2_iterations,
            config.argon2_parallelism,
        )?;

        Ok(Arc::new(Self {
            db,
            store,
            keys,
            passwords,
            settings: Settings {
                issuer: config.issuer.clone(),
                audience: config.audience.clone(),
                access_ttl: config.access_ttl.as_secs() as i64,
                refresh_ttl: config.refresh_ttl.as_secs() as i64,
                reuse_grace_ms: config.refresh_reuse_grace.as_millis() as i64,
                max_body_bytes: config.max_body_bytes,
                trust_forwarded: config.trust_forwarded,
            },
        }))
    }
}
