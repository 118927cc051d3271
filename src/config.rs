//! One typed configuration, read once from environment variables and the
//! same-named flags of `tessera serve` (API.md, "Configuration").

use std::time::Duration;

use clap::{Args, ValueEnum};
use secrecy::SecretString;

/// Parses whole seconds (`900`) or humantime (`15m`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("not a duration (seconds or e.g. 15m): {e}"))
}

fn parse_secret(s: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(s.to_owned()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Environment {
    Development,
    Production,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long = "bind", env = "TESSERA_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,

    /// Database URL: sqlite://... or postgres://...
    #[arg(
        long = "database-url",
        env = "DATABASE_URL",
        default_value = "sqlite://tessera.db?mode=rwc"
    )]
    pub database_url: String,

    /// Redis URL; unset means the embedded in-memory token store (one instance only).
    #[arg(long = "redis-url", env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Prefix of every Redis key.
    #[arg(
        long = "redis-prefix",
        env = "TESSERA_REDIS_PREFIX",
        default_value = "tessera:"
    )]
    pub redis_prefix: String,

    /// HS256 signing secret (at least 32 bytes); unset means a random per-process secret.
    #[arg(long = "jwt-secret", env = "TESSERA_JWT_SECRET", value_parser = parse_secret, hide_env_values = true)]
    pub jwt_secret: Option<SecretString>,

    /// Comma-separated retired HS256 secrets, accepted for verification only.
    #[arg(long = "jwt-previous-secrets", env = "TESSERA_JWT_PREVIOUS_SECRETS", value_parser = parse_secret, hide_env_values = true)]
    pub jwt_previous_secrets: Option<SecretString>,

    #[arg(long = "issuer", env = "TESSERA_ISSUER", default_value = "tessera")]
    pub issuer: String,

    #[arg(long = "audience", env = "TESSERA_AUDIENCE", default_value = "tessera")]
    pub audience: String,

    #[arg(long = "access-ttl", env = "TESSERA_ACCESS_TTL", default_value = "900", value_parser = parse_duration)]
    pub access_ttl: Duration,

    #[arg(long = "refresh-ttl", env = "TESSERA_REFRESH_TTL", default_value = "2592000", value_parser = parse_duration)]
    pub refresh_ttl: Duration,

    #[arg(long = "jwt-leeway", env = "TESSERA_JWT_LEEWAY", default_value = "0", value_parser = parse_duration)]
    pub jwt_leeway: Duration,

    /// Seconds in which the immediate parent of the current refresh token is still accepted.
    #[arg(long = "refresh-reuse-grace", env = "TESSERA_REFRESH_REUSE_GRACE", default_value = "0", value_parser = parse_duration)]
    pub refresh_reuse_grace: Duration,

    #[arg(
        long = "login-max-failures",
        env = "TESSERA_LOGIN_MAX_FAILURES",
        default_value_t = 5
    )]
    pub login_max_failures: u32,

    #[arg(long = "login-window", env = "TESSERA_LOGIN_WINDOW", default_value = "900", value_parser = parse_duration)]
    pub login_window: Duration,

    #[arg(
        long = "login-max-failures-per-ip",
        env = "TESSERA_LOGIN_MAX_FAILURES_PER_IP",
        default_value_t = 50
    )]
    pub login_max_failures_per_ip: u32,

    #[arg(long = "trust-forwarded", env = "TESSERA_TRUST_FORWARDED", default_value_t = false, action = clap::ArgAction::Set)]
    pub trust_forwarded: bool,

    #[arg(
        long = "argon2-memory-kib",
        env = "TESSERA_ARGON2_MEMORY_KIB",
        default_value_t = 19456
    )]
    pub argon2_memory_kib: u32,

    #[arg(
        long = "argon2-iterations",
        env = "TESSERA_ARGON2_ITERATIONS",
        default_value_t = 2
    )]
    pub argon2_iterations: u32,

    #[arg(
        long = "argon2-parallelism",
        env = "TESSERA_ARGON2_PARALLELISM",
        default_value_t = 1
    )]
    pub argon2_parallelism: u32,

    #[arg(
        long = "max-body-bytes",
        env = "TESSERA_MAX_BODY_BYTES",
        default_value_t = 65536
    )]
    pub max_body_bytes: usize,

    #[arg(long = "admin-email", env = "TESSERA_ADMIN_EMAIL")]
    pub admin_email: Option<String>,

    #[arg(long = "admin-username", env = "TESSERA_ADMIN_USERNAME")]
    pub admin_username: Option<String>,

    /// Read from `TESSERA_ADMIN_PASSWORD` only: a password never goes on argv.
    #[arg(skip)]
    pub admin_password: Option<SecretString>,

    /// `pretty` or `json`; default: pretty on a terminal, json otherwise.
    #[arg(long = "log-format", env = "TESSERA_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Comma-separated allowed origins, or `*`.
    #[arg(long = "cors-origins", env = "TESSERA_CORS_ORIGINS")]
    pub cors_origins: Option<String>,

    #[arg(long = "env", env = "TESSERA_ENV", default_value = "development")]
    pub env: Environment,
}

impl Config {
    /// Fills the settings that come only from the environment.
    pub fn with_env_secrets(mut self) -> Self {
        self.admin_password = std::env::var("TESSERA_ADMIN_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty())
            .map(SecretString::from);
        self
    }

    /// The defaults of API.md, as if no variable were set (used by tests).
    pub fn defaults() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            database_url: "sqlite://tessera.db?mode=rwc".into(),
            redis_url: None,
            redis_prefix: "tessera:".into(),
            jwt_secret: None,
            jwt_previous_secrets: None,
            issuer: "tessera".into(),
            audience: "tessera".into(),
            access_ttl: Duration::from_secs(900),
            refresh_ttl: Duration::from_secs(2_592_000),
            jwt_leeway: Duration::ZERO,
            refresh_reuse_grace: Duration::ZERO,
            login_max_failures: 5,
            login_window: Duration::from_secs(900),
            login_max_failures_per_ip: 50,
            trust_forwarded: false,
            argon2_memory_kib: 19456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            max_body_bytes: 65536,
            admin_email: None,
            admin_username: None,
            admin_password: None,
            log_format: None,
            cors_origins: None,
            env: Environment::Development,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_seconds_and_humantime() {
        assert_eq!(parse_duration("900"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("soon").is_err());
    }
}
