//! One typed configuration, read once from environment variables and the
//! same-named flags of `tessera serve` (API.md, "Configuration").

use std::{path::PathBuf, time::Duration};

use clap::{Args, ValueEnum};
use secrecy::{ExposeSecret, SecretString};

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

pub use crate::mail::EmailVerification;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Environment {
    Development,
    Production,
}

#[derive(Clone, Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long = "bind", env = "TESSERA_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,

    /// Database URL: sqlite://... or postgres://...
    #[arg(
        long = "database-url",
        env = "DATABASE_URL",
        default_value = DEFAULT_DATABASE_URL,
        hide_env_values = true
    )]
    pub database_url: String,

    /// Redis URL; unset means the embedded in-memory token store (one instance only).
    #[arg(long = "redis-url", env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// `REDIS_URL` is a comma-separated list of seed nodes of a Redis Cluster.
    #[arg(long = "redis-cluster", env = "TESSERA_REDIS_CLUSTER", default_value_t = false, action = clap::ArgAction::Set)]
    pub redis_cluster: bool,

    /// Prefix of every Redis key.
    #[arg(
        long = "redis-prefix",
        env = "TESSERA_REDIS_PREFIX",
        default_value = "tessera:"
    )]
    pub redis_prefix: String,

    /// Live sessions per user; a login beyond it ends the oldest (0 = no cap).
    #[arg(
        long = "max-sessions-per-user",
        env = "TESSERA_MAX_SESSIONS_PER_USER",
        default_value_t = 100
    )]
    pub max_sessions_per_user: usize,

    /// HS256 signing secret (at least 32 bytes); unset means a random per-process secret.
    #[arg(long = "jwt-secret", env = "TESSERA_JWT_SECRET", value_parser = parse_secret, hide_env_values = true)]
    pub jwt_secret: Option<SecretString>,

    /// Comma-separated retired HS256 secrets, accepted for verification only.
    #[arg(long = "jwt-previous-secrets", env = "TESSERA_JWT_PREVIOUS_SECRETS", value_parser = parse_secret, hide_env_values = true)]
    pub jwt_previous_secrets: Option<SecretString>,

    /// PEM (PKCS#8) Ed25519 private key: sign with EdDSA and publish the
    /// public key at /.well-known/jwks.json.
    #[arg(long = "jwt-ed25519-key-file", env = "TESSERA_JWT_ED25519_KEY_FILE")]
    pub jwt_ed25519_key_file: Option<PathBuf>,

    /// Comma-separated PEM files of retired Ed25519 public keys, verify-only.
    #[arg(
        long = "jwt-previous-public-keys",
        env = "TESSERA_JWT_PREVIOUS_PUBLIC_KEYS"
    )]
    pub jwt_previous_public_keys: Option<String>,

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

    /// Failed logins per account from every address in the window (0 = no limit).
    #[arg(
        long = "login-max-failures-per-account",
        env = "TESSERA_LOGIN_MAX_FAILURES_PER_ACCOUNT",
        default_value_t = 100
    )]
    pub login_max_failures_per_account: u32,

    /// Registrations per client IP per hour (0 = no limit).
    #[arg(
        long = "register-per-ip",
        env = "TESSERA_REGISTER_PER_IP",
        default_value_t = 30
    )]
    pub register_per_ip: u32,

    /// Password hashing threads (0 = one per core).
    #[arg(
        long = "hash-threads",
        env = "TESSERA_HASH_THREADS",
        default_value_t = 0
    )]
    pub hash_threads: usize,

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

    /// Longest a request may take, body upload included (then 503); 0 = no limit.
    #[arg(long = "request-timeout", env = "TESSERA_REQUEST_TIMEOUT", default_value = "30", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// A connection without any traffic for this long is closed; 0 = never.
    #[arg(long = "idle-timeout", env = "TESSERA_IDLE_TIMEOUT", default_value = "75", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// A connection must send a whole request head within this (HTTP/1.1 and
    /// HTTP/2; also the HTTP/2 PING interval and answer time); 0 = never.
    #[arg(long = "header-timeout", env = "TESSERA_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// Open connections at once; beyond it new ones wait in the listen backlog.
    #[arg(long = "max-connections", env = "TESSERA_MAX_CONNECTIONS", default_value = "10000", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    #[arg(long = "env", env = "TESSERA_ENV", default_value = "development")]
    pub env: Environment,

    /// The service's own origin, for links in mail; default `http://` + bind.
    #[arg(long = "public-url", env = "TESSERA_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// `smtp://[user:pass@]host:port` (`?tls=required` for STARTTLS),
    /// `smtps://...` (implicit TLS), or `log`; unset: mail goes to the log.
    #[arg(long = "smtp-url", env = "TESSERA_SMTP_URL", value_parser = parse_secret, hide_env_values = true)]
    pub smtp_url: Option<SecretString>,

    /// The From of every mail; its display name names the service in mails.
    #[arg(
        long = "mail-from",
        env = "TESSERA_MAIL_FROM",
        default_value = "Tessera <no-reply@localhost>"
    )]
    pub mail_from: String,

    /// Links go to `{base}/reset-password#token=...` (an app's own pages)
    /// instead of Tessera's `/account/...` pages.
    #[arg(long = "link-base-url", env = "TESSERA_LINK_BASE_URL")]
    pub link_base_url: Option<String>,

    #[arg(
        long = "email-verification",
        env = "TESSERA_EMAIL_VERIFICATION",
        default_value = "optional"
    )]
    pub email_verification: EmailVerification,

    /// Lifetime of a password-reset link.
    #[arg(long = "reset-ttl", env = "TESSERA_RESET_TTL", default_value = "1h", value_parser = parse_duration)]
    pub reset_ttl: Duration,

    /// Lifetime of a verification (or address-change) link.
    #[arg(long = "verify-ttl", env = "TESSERA_VERIFY_TTL", default_value = "24h", value_parser = parse_duration)]
    pub verify_ttl: Duration,

    /// Mails (reset, verification) per recipient address per hour (0 = no limit).
    #[arg(
        long = "mail-per-address",
        env = "TESSERA_MAIL_PER_ADDRESS",
        default_value_t = 3
    )]
    pub mail_per_address: u32,

    /// Mail requests per client IP per hour (0 = no limit).
    #[arg(
        long = "mail-per-ip",
        env = "TESSERA_MAIL_PER_IP",
        default_value_t = 30
    )]
    pub mail_per_ip: u32,

    /// Browser sessions: `/auth/browser/*` and cookie authentication.
    #[arg(long = "cookies", env = "TESSERA_COOKIES", default_value_t = false, action = clap::ArgAction::Set)]
    pub cookies: bool,

    /// `Secure` cookies with the `__Host-`/`__Secure-` prefixes; `false` only
    /// for development over plain HTTP (refused in production).
    #[arg(long = "cookie-secure", env = "TESSERA_COOKIE_SECURE", default_value_t = true, action = clap::ArgAction::Set)]
    pub cookie_secure: bool,

    /// Server key of data at rest (one-time link tokens; TOTP secrets);
    /// unset: derived from the signing secret.
    #[arg(long = "data-key", env = "TESSERA_DATA_KEY", value_parser = parse_secret, hide_env_values = true)]
    pub data_key: Option<SecretString>,

    /// `tracking`: each replica caches access-token checks, invalidated by
    /// Redis client-side caching (needs `REDIS_URL`).
    #[arg(
        long = "verify-cache",
        env = "TESSERA_VERIFY_CACHE",
        default_value = "off"
    )]
    pub verify_cache: VerifyCacheMode,
}

/// `TESSERA_VERIFY_CACHE` (API.md "Configuration").
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VerifyCacheMode {
    /// Every check is a store round trip.
    Off,
    /// Checks answered from a per-replica cache that Redis invalidates.
    Tracking,
}

impl Config {
    /// A `REDIS_URL` that names something (blank counts as unset).
    fn has_redis(&self) -> bool {
        self.redis_url
            .as_deref()
            .is_some_and(|u| !u.trim().is_empty())
    }

    /// `TESSERA_PUBLIC_URL`, or `http://` + `TESSERA_BIND`; no trailing slash.
    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.bind),
        }
    }

    /// The mail settings; `key_material` is what the link key is derived
    /// from (`TESSERA_DATA_KEY`, or the signing secret).
    pub fn mail_settings(&self, key_material: &[u8]) -> anyhow::Result<crate::mail::MailSettings> {
        use crate::mail::{Address, Delivery, LinkKey, MailSettings};
        let from = Address::parse(&self.mail_from).map_err(anyhow::Error::msg)?;
        let link_base = match &self.link_base_url {
            Some(base) => base.trim_end_matches('/').to_owned(),
            None => format!("{}/account", self.public_url()),
        };
        Ok(MailSettings {
            delivery: Delivery::from_config(self.smtp_url.as_ref()),
            service_name: from.display_name(),
            from,
            link_base,
            verification: self.email_verification,
            reset_ttl: self.reset_ttl,
            verify_ttl: self.verify_ttl,
            per_address: self.mail_per_address,
            per_ip: self.mail_per_ip,
            link_key: LinkKey::derive(key_material),
        })
    }

    /// Fills the settings that come only from the environment.
    pub fn with_env_secrets(mut self) -> Self {
        self.admin_password = std::env::var("TESSERA_ADMIN_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty())
            .map(SecretString::from);
        self
    }

    /// The defaults of API.md, as if no variable were set (used by tests):
    /// the clap attributes above are the one place they are written.
    pub fn defaults() -> Self {
        use clap::{CommandFactory, FromArgMatches, Parser};
        #[derive(Parser)]
        struct Defaults {
            #[command(flatten)]
            config: Config,
        }
        // Without the environment: only the written defaults count.
        let matches = Defaults::command()
            .mut_args(|a| a.env(None::<&str>))
            .try_get_matches_from(["tessera"]);
        match matches.and_then(|m| Defaults::from_arg_matches(&m)) {
            Ok(d) => d.config,
            // Only a broken attribute above can get here; tests catch it.
            Err(e) => panic!("the configuration's defaults do not parse: {e}"),
        }
    }
}

/// `DATABASE_URL` and `REDIS_URL` embed passwords: debug output shows the
/// scheme and host only, and the secrets not at all.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field("database_url", &redact_url(&self.database_url))
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("redis_cluster", &self.redis_cluster)
            .field("redis_prefix", &self.redis_prefix)
            .field("max_sessions_per_user", &self.max_sessions_per_user)
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "jwt_previous_secrets",
                &self.jwt_previous_secrets.as_ref().map(|_| "[redacted]"),
            )
            .field("jwt_ed25519_key_file", &self.jwt_ed25519_key_file)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .field("refresh_reuse_grace", &self.refresh_reuse_grace)
            .field("env", &self.env)
            .field("public_url", &self.public_url)
            .field(
                "smtp_url",
                &self
                    .smtp_url
                    .as_ref()
                    .map(|u| redact_url(u.expose_secret())),
            )
            .field("mail_from", &self.mail_from)
            .field("email_verification", &self.email_verification)
            .field("data_key", &self.data_key.as_ref().map(|_| "[redacted]"))
            .field("verify_cache", &self.verify_cache)
            .finish_non_exhaustive()
    }
}

/// `scheme://[redacted]@host/...` for URLs with credentials; others as they are.
pub fn redact_url(url: &str) -> String {
    // A cluster seed list: each node's URL on its own.
    if url.contains(',') {
        return url.split(',').map(redact_url).collect::<Vec<_>>().join(",");
    }
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}[redacted]{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// The SQLite URL used when `DATABASE_URL` is not set.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://tessera.db?mode=rwc";

/// Splits a comma-separated list, trimming blanks away.
fn split_list(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// `Some(path)` for a SQLite URL (`sqlite:path`, `sqlite://path?...`).
fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url.trim().strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    Some(rest.split('?').next().unwrap_or(""))
}

/// SQLite's default file (`tessera.db` in the working directory, however the
/// URL spells it) or an in-memory SQLite database: data that does not survive
/// a container restart, so never a production database.
fn is_throwaway_sqlite(url: &str) -> bool {
    let Some(path) = sqlite_path(url) else {
        return false;
    };
    let path = path.strip_prefix("./").unwrap_or(path);
    path.is_empty() || path == "tessera.db" || path == ":memory:" || url.contains("mode=memory")
}

impl Config {
    /// The retired HS256 secrets of `TESSERA_JWT_PREVIOUS_SECRETS`.
    pub fn previous_secrets(&self) -> Vec<SecretString> {
        self.jwt_previous_secrets
            .as_ref()
            .map(|s| {
                split_list(s.expose_secret())
                    .map(|s| SecretString::from(s.to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The files of `TESSERA_JWT_PREVIOUS_PUBLIC_KEYS`.
    pub fn previous_public_key_files(&self) -> Vec<PathBuf> {
        self.jwt_previous_public_keys
            .as_deref()
            .map(|s| split_list(s).map(PathBuf::from).collect())
            .unwrap_or_default()
    }

    /// Every reason this configuration must not start, in one list (empty:
    /// fine). In any mode: secrets shorter than 32 bytes, key files that
    /// cannot be read. With `TESSERA_ENV=production` also: no persistent
    /// signing key, SQLite's default file (or an in-memory SQLite database),
    /// no Redis.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        let min = crate::auth::keys::MIN_SECRET_BYTES;
        if let Some(secret) = &self.jwt_secret
            && secret.expose_secret().len() < min
        {
            problems.push(format!(
                "TESSERA_JWT_SECRET is shorter than {min} bytes (generate one with `openssl rand -hex 32`)"
            ));
        }
        for (i, secret) in self.previous_secrets().iter().enumerate() {
            if secret.expose_secret().len() < min {
                problems.push(format!(
                    "TESSERA_JWT_PREVIOUS_SECRETS: secret {} of the list is shorter than {min} bytes",
                    i + 1
                ));
            }
        }
        if let Some(path) = &self.jwt_ed25519_key_file
            && !path.is_file()
        {
            problems.push(format!(
                "TESSERA_JWT_ED25519_KEY_FILE: {} is not a readable file",
                path.display()
            ));
        }
        for path in self.previous_public_key_files() {
            if !path.is_file() {
                problems.push(format!(
                    "TESSERA_JWT_PREVIOUS_PUBLIC_KEYS: {} is not a readable file",
                    path.display()
                ));
            }
        }
        if let Err(e) = crate::mail::Address::parse(&self.mail_from) {
            problems.push(format!("TESSERA_MAIL_FROM: {e}"));
        }
        if let Some(url) = &self.smtp_url
            && let Err(e) = crate::mail::Delivery::check_url(url.expose_secret())
        {
            problems.push(format!("TESSERA_SMTP_URL: {e}"));
        }
        for (name, url) in [
            ("TESSERA_PUBLIC_URL", &self.public_url),
            ("TESSERA_LINK_BASE_URL", &self.link_base_url),
        ] {
            if let Some(u) = url
                && !(u.starts_with("http://") || u.starts_with("https://"))
            {
                problems.push(format!("{name}: {u:?} is not an http:// or https:// URL"));
            }
        }
        if let Some(key) = &self.data_key
            && key.expose_secret().len() < min
        {
            problems.push(format!(
                "TESSERA_DATA_KEY is shorter than {min} bytes (generate one with `openssl rand -hex 32`)"
            ));
        }
        if self.verify_cache == VerifyCacheMode::Tracking && !self.has_redis() {
            problems.push(
                "TESSERA_VERIFY_CACHE=tracking needs REDIS_URL: the cache is invalidated by Redis (the in-memory store needs no cache)"
                    .into(),
            );
        }
        if self.env == Environment::Production {
            if !self.cookie_secure {
                problems.push(
                    "TESSERA_COOKIE_SECURE=false: cookies without Secure are for plain-HTTP development only"
                        .into(),
                );
            }
            if self.smtp_url.is_none() {
                problems.push(
                    "TESSERA_SMTP_URL is not set: production needs a mail server for recovery and verification mails (or `log` to keep writing them to the log)"
                        .into(),
                );
            }
            if self.jwt_secret.is_none() && self.jwt_ed25519_key_file.is_none() {
                problems.push(
                    "TESSERA_JWT_SECRET is not set (nor TESSERA_JWT_ED25519_KEY_FILE): production needs a fixed signing key shared by all replicas, not a random per-process secret"
                        .into(),
                );
            }
            if is_throwaway_sqlite(&self.database_url) {
                problems.push(format!(
                    "DATABASE_URL is {:?}, SQLite's default file (or an in-memory database): set DATABASE_URL=postgres://... in production",
                    self.database_url
                ));
            }
            if !self.has_redis() {
                problems.push(
                    "REDIS_URL is not set: production needs the shared Redis token store (the in-memory store is per process: revocations and login limits would not reach other replicas)"
                        .into(),
                );
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_clap_defaults() {
        let c = Config::defaults();
        assert_eq!(c.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(c.access_ttl, Duration::from_secs(900));
        assert_eq!(c.max_sessions_per_user, 100);
        assert_eq!(c.login_max_failures, 5);
        assert_eq!(c.login_max_failures_per_account, 100);
        assert_eq!(c.login_max_failures_per_ip, 50);
        assert_eq!(c.register_per_ip, 30);
        assert_eq!(c.hash_threads, 0);
        assert_eq!(c.header_timeout, Duration::from_secs(10));
        assert_eq!(c.max_connections, 10_000);
        assert!(c.redis_url.is_none() && c.jwt_secret.is_none());
    }

    #[test]
    fn debug_never_shows_url_passwords_or_secrets() {
        let mut c = Config::defaults();
        c.database_url = "postgres://tessera:pg-pass-123@db:5432/tessera".into();
        c.redis_url = Some("redis://:redis-pass-456@cache:6379/0".into());
        c.jwt_secret = Some(SecretString::from("jwt-secret-789".to_owned()));
        let shown = format!("{c:?}");
        for secret in ["pg-pass-123", "redis-pass-456", "jwt-secret-789"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("db:5432"), "{shown}");
        assert_eq!(redact_url("redis://cache:6379/"), "redis://cache:6379/");
        assert_eq!(
            redact_url("redis://:p1@r1:6379,redis://u:p2@r2:6379,redis://r3:6379"),
            "redis://[redacted]@r1:6379,redis://[redacted]@r2:6379,redis://r3:6379"
        );
    }

    #[test]
    fn durations_accept_seconds_and_humantime() {
        assert_eq!(parse_duration("900"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("soon").is_err());
    }
}

#[cfg(test)]
mod validate_tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn production() -> Config {
        let mut c = Config::defaults();
        c.env = Environment::Production;
        c.jwt_secret = Some(SecretString::from(SECRET.to_owned()));
        c.database_url = "postgres://tessera@db/tessera".into();
        c.redis_url = Some("redis://redis:6379/".into());
        c.smtp_url = Some(SecretString::from(
            "smtp://mail:587?tls=required".to_owned(),
        ));
        c
    }

    fn problems(c: &Config) -> String {
        c.validate().expect_err("should be refused").join("\n")
    }

    #[test]
    fn a_correct_production_config_passes() {
        assert_eq!(production().validate(), Ok(()));
        let mut c = production();
        c.jwt_previous_secrets = Some(SecretString::from(format!(" {SECRET}x , {SECRET}y ")));
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.previous_secrets().len(), 2);
        // An explicit SQLite file is allowed (one instance, warned at start).
        c.database_url = "sqlite:///var/lib/tessera/tessera.db?mode=rwc".into();
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn an_ed25519_key_file_replaces_the_secret() {
        let file =
            std::env::temp_dir().join(format!("tessera-validate-{}.pem", std::process::id()));
        std::fs::write(&file, "placeholder").unwrap();
        let mut c = production();
        c.jwt_secret = None;
        c.jwt_ed25519_key_file = Some(file.clone());
        let result = c.validate();
        c.jwt_ed25519_key_file = Some(file.with_extension("missing"));
        c.jwt_previous_public_keys = Some(format!("{},", file.display()));
        let missing = problems(&c);
        std::fs::remove_file(&file).unwrap();
        assert_eq!(result, Ok(()));
        assert!(
            missing.contains("TESSERA_JWT_ED25519_KEY_FILE"),
            "{missing}"
        );
        assert!(
            !missing.contains("TESSERA_JWT_PREVIOUS_PUBLIC_KEYS"),
            "{missing}"
        );
    }

    #[test]
    fn production_refuses_unsafe_defaults_and_lists_them_all() {
        let mut c = Config::defaults();
        c.env = Environment::Production;
        let all = problems(&c);
        for setting in [
            "TESSERA_JWT_SECRET",
            "DATABASE_URL",
            "REDIS_URL",
            "TESSERA_SMTP_URL",
        ] {
            assert!(all.contains(setting), "{setting} not named in: {all}");
        }
        // The same defaults are fine in development.
        assert_eq!(Config::defaults().validate(), Ok(()));

        for url in [
            "sqlite://tessera.db?mode=rwc",
            "sqlite://tessera.db",
            "sqlite:tessera.db",
            "sqlite://./tessera.db?mode=rwc",
            "sqlite::memory:",
            "sqlite://file.db?mode=memory",
        ] {
            let mut c = production();
            c.database_url = url.into();
            assert!(problems(&c).contains("DATABASE_URL"), "{url} accepted");
        }
        let mut c = production();
        c.redis_url = None;
        assert!(problems(&c).contains("REDIS_URL"));
        c.redis_url = Some(" ".into());
        assert!(problems(&c).contains("REDIS_URL"));
        // Mail: an explicit choice, `log` included; a bad URL never.
        let mut c = production();
        c.smtp_url = Some(SecretString::from("log".to_owned()));
        assert_eq!(c.validate(), Ok(()));
        c.smtp_url = Some(SecretString::from("http://mail".to_owned()));
        assert!(problems(&c).contains("TESSERA_SMTP_URL"));
        c.smtp_url = None;
        assert!(problems(&c).contains("TESSERA_SMTP_URL"));
        let mut c = production();
        c.mail_from = "not a mailbox".into();
        assert!(problems(&c).contains("TESSERA_MAIL_FROM"));
        c.mail_from = "Acme <no-reply@acme.example>".into();
        c.public_url = Some("auth.acme.example".into());
        assert!(problems(&c).contains("TESSERA_PUBLIC_URL"));
        // Cookies without Secure are for plain-HTTP development only.
        let mut c = production();
        c.cookies = true;
        assert_eq!(c.validate(), Ok(()));
        c.cookie_secure = false;
        assert!(problems(&c).contains("TESSERA_COOKIE_SECURE"));
        c.env = Environment::Development;
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn short_secrets_are_refused_in_every_mode() {
        for env in [Environment::Development, Environment::Production] {
            let mut c = production();
            c.env = env;
            c.jwt_secret = Some(SecretString::from("x".repeat(31)));
            let p = problems(&c);
            assert!(p.contains("TESSERA_JWT_SECRET"), "{p}");
            assert!(!p.contains(&"x".repeat(31)), "the secret is echoed: {p}");
            c.jwt_secret = Some(SecretString::from("x".repeat(32)));
            assert_eq!(c.validate(), Ok(()));
            c.jwt_previous_secrets = Some(SecretString::from(format!("{SECRET},tiny")));
            let p = problems(&c);
            assert!(
                p.contains("TESSERA_JWT_PREVIOUS_SECRETS") && p.contains("secret 2"),
                "{p}"
            );
            assert!(!p.contains("tiny"), "the secret is echoed: {p}");
        }
    }
}
