//! Prometheus metrics (`GET /metrics`, text format 0.0.4). Process-wide: one
//! process serves one app (the tests run several, hence counters that only
//! grow), except the pool gauges and the verify cache's figures, sampled from
//! the scraped app's own pool and cache.
//!
//! | family | type | labels |
//! |---|---|---|
//! | `tessera_http_requests_total` | counter | `method`, `route` (template or `unmatched`), `status` |
//! | `tessera_http_request_duration_seconds` | histogram | `method`, `route` |
//! | `tessera_logins_total` | counter | `outcome` (`LoginOutcome`) |
//! | `tessera_refreshes_total` | counter | `outcome` (`RefreshOutcome`) |
//! | `tessera_revocations_total` | counter | `cause` (`RevocationCause`) |
//! | `tessera_store_errors_total` | counter | `kind`: `unavailable`, `corrupt` |
//! | `tessera_db_errors_total` | counter | `kind`: `unavailable`, `other` |
//! | `tessera_db_pool_acquire_timeouts_total` | counter | |
//! | `tessera_db_pool_{size,idle,in_use,max_connections}` | gauge | |
//! | `tessera_auth_events_total` | counter | `event` (`Event`, the older family; `bootstrap_conflict`: the bootstrap admin's email or username held by a non-admin) |
//! | `tessera_rate_limited_total` | counter | `limit` (`RateLimit`) |
//! | `tessera_connections_closed_slow_total` | counter | `reason` (`SlowClose`) |
//! | `tessera_connections_open` | gauge | |
//! | `tessera_connections_cap_reached_total`, `tessera_connections_over_address_share_total`, `tessera_accept_backoffs_total` | counter | |
//! | `tessera_verify_cache_{entries,bytes,live}` | gauge | (with `TESSERA_VERIFY_CACHE=tracking`) |
//! | `tessera_verify_cache_{hits,misses,invalidations,flushes}_total` | counter | (with `TESSERA_VERIFY_CACHE=tracking`) |
//!
//! Every label value comes from a closed set (the enums below, route
//! templates, known methods), so no client can grow the number of series.

use std::{
    borrow::Cow,
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use parking_lot::Mutex;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Token and account events worth watching (reuse means a stolen token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Event {
    LoginSucceeded,
    LoginFailed,
    LoginRateLimited,
    RefreshRotated,
    RefreshWithinGrace,
    RefreshReused,
    RefreshRevoked,
    Logout,
    StoreUnavailable,
    DatabaseUnavailable,
    DatabaseError,
    /// Redis runs with an evicting `maxmemory-policy` (checked at start):
    /// revocations and login counters may be dropped.
    StoreEvictionPolicy,
    /// A login lost against an account change in flight (API.md).
    LoginLostToAccountChange,
    /// The configured bootstrap admin's email or username is held by a
    /// non-admin account: no admin was created (API.md).
    BootstrapConflict,
}

impl Event {
    const ALL: [Event; 14] = [
        Event::LoginSucceeded,
        Event::LoginFailed,
        Event::LoginRateLimited,
        Event::RefreshRotated,
        Event::RefreshWithinGrace,
        Event::RefreshReused,
        Event::RefreshRevoked,
        Event::Logout,
        Event::StoreUnavailable,
        Event::DatabaseUnavailable,
        Event::DatabaseError,
        Event::StoreEvictionPolicy,
        Event::LoginLostToAccountChange,
        Event::BootstrapConflict,
    ];

    fn name(self) -> &'static str {
        match self {
            Event::LoginSucceeded => "login_succeeded",
            Event::LoginFailed => "login_failed",
            Event::LoginRateLimited => "login_rate_limited",
            Event::RefreshRotated => "refresh_rotated",
            Event::RefreshWithinGrace => "refresh_within_grace",
            Event::RefreshReused => "refresh_reused",
            Event::RefreshRevoked => "refresh_revoked",
            Event::Logout => "logout",
            Event::StoreUnavailable => "store_unavailable",
            Event::DatabaseUnavailable => "database_unavailable",
            Event::DatabaseError => "database_error",
            Event::StoreEvictionPolicy => "store_eviction_policy",
            Event::LoginLostToAccountChange => "login_lost_to_account_change",
            Event::BootstrapConflict => "bootstrap_conflict",
        }
    }
}

/// A closed set of label values: the enum, its label strings and `ALL`.
macro_rules! label_set {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $label:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn label(self) -> &'static str {
                match self {
                    $($name::$variant => $label),+
                }
            }
        }
    };
}

label_set! {
    /// How a `POST /auth/login` ended.
    LoginOutcome {
        Success => "success",
        /// Wrong password or unknown account.
        InvalidCredentials => "invalid_credentials",
        Blocked => "blocked",
        /// The right password of an unverified account while verification is required.
        EmailNotVerified => "email_not_verified",
        /// The right password of an account with a second factor: a
        /// challenge was handed out (`/auth/mfa/verify` ends it).
        MfaRequired => "mfa_required",
        RateLimited => "rate_limited",
        /// Database, token store or password hashing unavailable (503).
        Unavailable => "unavailable",
        /// Lost against a change of the account in flight (API.md).
        AccountChanged => "account_changed",
        /// Anything else (a bug: 500).
        Error => "error",
    }
}

label_set! {
    /// How a presented refresh token was judged. Store and database
    /// failures are counted by their own families, not here.
    RefreshOutcome {
        Rotated => "rotated",
        /// The parent of the current token, within the reuse grace.
        Grace => "grace",
        /// An older token: the session is revoked.
        Reused => "reused",
        /// No such session any more (ended, revoked, user blocked or gone).
        Revoked => "revoked",
        Expired => "expired",
        /// Bad signature or claims, or another user's session.
        Invalid => "invalid",
    }
}

label_set! {
    /// Why sessions were ended: one count per action, however many
    /// sessions it ended.
    RevocationCause {
        Logout => "logout",
        LogoutAll => "logout_all",
        PasswordChange => "password_change",
        RoleChange => "role_change",
        /// A block or an unblock (either ends the sessions).
        Block => "block",
        Delete => "delete",
        /// `DELETE /auth/sessions/{id}`.
        SessionEnd => "session_end",
        /// A reused refresh token revoked its session.
        Reuse => "reuse",
        /// A login beyond `TESSERA_MAX_SESSIONS_PER_USER` ended the oldest.
        SessionCap => "session_cap",
        /// A second factor confirmed, removed, or given new recovery codes.
        MfaChange => "mfa_change",
    }
}

label_set! {
    /// Token store failures that reached a request (`StoreError`).
    StoreErrorKind {
        Unavailable => "unavailable",
        Corrupt => "corrupt",
    }
}

label_set! {
    /// Database failures that reached a request; constraint refusals (409)
    /// are answers, not failures, and are not counted.
    DbErrorKind {
        /// Unreachable, connection lost or no pool connection in time (503).
        Unavailable => "unavailable",
        /// Anything else (500).
        Other => "other",
    }
}

label_set! {
    /// Which limit answered a 429 (API.md, "Precise rules" and "Email").
    RateLimit {
        /// Failed logins of one account from one client IP.
        AccountIp => "account_ip",
        /// Failed logins of one account from every address.
        Account => "account",
        /// Failed logins from one client IP.
        Ip => "ip",
        /// One client IP's fair share of password hashing.
        HashingIp => "hashing_ip",
        /// One account's fair share of password hashing.
        HashingAccount => "hashing_account",
        /// Registrations from one client IP.
        Register => "register",
        /// Mails (reset, verification) to one address.
        MailAddress => "mail_address",
        /// Mail requests from one client IP.
        MailIp => "mail_ip",
        /// Wrong one-time link tokens from one client IP.
        LinkIp => "link_ip",
    }
}

/// Counts per value of a label set, indexed by the enum's discriminant.
struct Counts<const N: usize>([AtomicU64; N]);

impl<const N: usize> Counts<N> {
    fn new() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }

    fn add(&self, i: usize) {
        if let Some(c) = self.0.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn get(&self, i: usize) -> u64 {
        self.0.get(i).map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

#[derive(Default)]
struct Histogram {
    /// Cumulative: `buckets[i]` counts observations <= `BUCKETS[i]`.
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum_micros: u64,
}

impl Histogram {
    fn observe(&mut self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        for (b, le) in self.buckets.iter_mut().zip(BUCKETS) {
            if secs <= le {
                *b += 1;
            }
        }
        self.count += 1;
        self.sum_micros = self
            .sum_micros
            .saturating_add(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }
}

/// One route template's requests.
#[derive(Default)]
struct RouteStats {
    /// (method, status) -> requests.
    requests: BTreeMap<(&'static str, u16), u64>,
    /// Latency by method.
    latency: BTreeMap<&'static str, Histogram>,
}

struct Metrics {
    /// By route template; a template's key is allocated on its first
    /// request only (looked up by `&str` afterwards).
    routes: Mutex<BTreeMap<String, RouteStats>>,
    events: Counts<{ Event::ALL.len() }>,
    logins: Counts<{ LoginOutcome::ALL.len() }>,
    refreshes: Counts<{ RefreshOutcome::ALL.len() }>,
    revocations: Counts<{ RevocationCause::ALL.len() }>,
    store_errors: Counts<{ StoreErrorKind::ALL.len() }>,
    db_errors: Counts<{ DbErrorKind::ALL.len() }>,
    db_acquire_timeouts: AtomicU64,
    rate_limited: Counts<{ RateLimit::ALL.len() }>,
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| Metrics {
        routes: Mutex::new(BTreeMap::new()),
        events: Counts::new(),
        logins: Counts::new(),
        refreshes: Counts::new(),
        revocations: Counts::new(),
        store_errors: Counts::new(),
        db_errors: Counts::new(),
        db_acquire_timeouts: AtomicU64::new(0),
        rate_limited: Counts::new(),
    })
}

/// Records one finished request under its route template (`http::RouteTemplates`,
/// never the raw path). Methods outside the standard set are counted as
/// `OTHER`, so clients cannot grow the table.
pub fn record_request(route: &str, method: &str, status: u16, elapsed: Duration) {
    const KNOWN: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    let method = KNOWN.into_iter().find(|m| *m == method).unwrap_or("OTHER");
    let mut routes = metrics().routes.lock();
    if !routes.contains_key(route) {
        routes.insert(route.to_owned(), RouteStats::default());
    }
    let Some(stats) = routes.get_mut(route) else {
        return;
    };
    *stats.requests.entry((method, status)).or_insert(0) += 1;
    stats.latency.entry(method).or_default().observe(elapsed);
}

pub fn event(e: Event) {
    if let Some(i) = Event::ALL.iter().position(|x| *x == e) {
        metrics().events.add(i);
    }
}

pub fn login(o: LoginOutcome) {
    metrics().logins.add(o as usize);
}

pub fn refresh(o: RefreshOutcome) {
    metrics().refreshes.add(o as usize);
}

pub fn revocation(c: RevocationCause) {
    metrics().revocations.add(c as usize);
}

pub fn store_error(k: StoreErrorKind) {
    metrics().store_errors.add(k as usize);
}

pub fn db_error(k: DbErrorKind) {
    metrics().db_errors.add(k as usize);
}

/// A request answered 429 by `limit`.
pub fn rate_limited(limit: RateLimit) {
    metrics().rate_limited.add(limit as usize);
}

/// No pool connection within the acquire timeout: the pool is too small
/// for the load, or the database is stuck.
pub fn db_acquire_timeout() {
    metrics()
        .db_acquire_timeouts
        .fetch_add(1, Ordering::Relaxed);
}

/// The database pool at scrape time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Open connections, idle or in use.
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

impl PoolStats {
    /// Both of SQLite's pools (writer and readers) as one.
    pub fn plus(self, other: Self) -> Self {
        Self {
            size: self.size.saturating_add(other.size),
            idle: self.idle.saturating_add(other.idle),
            max: self.max.saturating_add(other.max),
        }
    }
}

/// Samples the SQLx pool behind the connection; `None` without one
/// (disconnected). The variant is matched first: the accessors panic on the
/// other backend.
pub fn pool_stats(db: &sea_orm::DatabaseConnection) -> Option<PoolStats> {
    use sea_orm::DatabaseConnectionType as T;
    fn stats<DB: sea_orm::sqlx::Database>(pool: &sea_orm::sqlx::Pool<DB>) -> PoolStats {
        // sqlx counts idle connections apart from the size, and a sample
        // taken while a connection changes hands can read an idle count
        // that wrapped below zero (usize::MAX): never more idle than open.
        let size = pool.size();
        PoolStats {
            size,
            idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX).min(size),
            max: pool.options().get_max_connections(),
        }
    }
    match &db.inner {
        T::SqlxPostgresPoolConnection(_) => Some(stats(db.get_postgres_connection_pool())),
        T::SqlxSqlitePoolConnection(_) => Some(stats(db.get_sqlite_connection_pool())),
        _ => None,
    }
}

/// A label value as the text format wants it (templates are ours, but a
/// quote or backslash must not break the exposition).
fn escape(v: &str) -> Cow<'_, str> {
    if v.contains(['"', '\\', '\n']) {
        Cow::Owned(
            v.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n"),
        )
    } else {
        Cow::Borrowed(v)
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A counter family with one label over a closed set, every value present
/// (zero included), so dashboards and `rate()` see the series from start.
fn counter_family<E: Copy>(
    out: &mut String,
    (name, help, label): (&str, &str, &str),
    all: &[E],
    label_of: impl Fn(E) -> &'static str,
    counts: impl Fn(usize) -> u64,
) {
    family(out, name, "counter", help);
    for (i, v) in all.iter().enumerate() {
        let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {}", label_of(*v), counts(i));
    }
}

/// The process-wide families (everything but the pool gauges).
pub fn render() -> String {
    let m = metrics();
    let mut out = String::new();
    {
        let routes = m.routes.lock();
        family(
            &mut out,
            "tessera_http_requests_total",
            "counter",
            "HTTP requests by route template, method and status.",
        );
        for (route, stats) in routes.iter() {
            let route = escape(route);
            for ((method, status), n) in &stats.requests {
                let _ = writeln!(
                    out,
                    "tessera_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let name = "tessera_http_request_duration_seconds";
        family(
            &mut out,
            name,
            "histogram",
            "Time to answer a request, by route template and method.",
        );
        for (route, stats) in routes.iter() {
            let route = escape(route);
            for (method, h) in &stats.latency {
                let labels = format!("method=\"{method}\",route=\"{route}\"");
                for (n, le) in h.buckets.iter().zip(BUCKETS) {
                    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {n}");
                }
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
                let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum_micros as f64 / 1e6);
                let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
            }
        }
    }
    counter_family(
        &mut out,
        (
            "tessera_auth_events_total",
            "Login, refresh, logout and store events.",
            "event",
        ),
        &Event::ALL,
        Event::name,
        |i| m.events.get(i),
    );
    counter_family(
        &mut out,
        ("tessera_logins_total", "Logins by outcome.", "outcome"),
        LoginOutcome::ALL,
        LoginOutcome::label,
        |i| m.logins.get(i),
    );
    counter_family(
        &mut out,
        (
            "tessera_refreshes_total",
            "Refresh token presentations by outcome.",
            "outcome",
        ),
        RefreshOutcome::ALL,
        RefreshOutcome::label,
        |i| m.refreshes.get(i),
    );
    counter_family(
        &mut out,
        (
            "tessera_revocations_total",
            "Actions that ended sessions, by cause.",
            "cause",
        ),
        RevocationCause::ALL,
        RevocationCause::label,
        |i| m.revocations.get(i),
    );
    counter_family(
        &mut out,
        (
            "tessera_store_errors_total",
            "Token store failures that reached a request, by kind.",
            "kind",
        ),
        StoreErrorKind::ALL,
        StoreErrorKind::label,
        |i| m.store_errors.get(i),
    );
    counter_family(
        &mut out,
        (
            "tessera_db_errors_total",
            "Database failures that reached a request, by kind.",
            "kind",
        ),
        DbErrorKind::ALL,
        DbErrorKind::label,
        |i| m.db_errors.get(i),
    );
    counter_family(
        &mut out,
        (
            "tessera_rate_limited_total",
            "Requests answered 429, by the limit that refused them.",
            "limit",
        ),
        RateLimit::ALL,
        RateLimit::label,
        |i| m.rate_limited.get(i),
    );
    family(
        &mut out,
        "tessera_db_pool_acquire_timeouts_total",
        "counter",
        "Requests that got no database connection within the acquire timeout.",
    );
    let _ = writeln!(
        out,
        "tessera_db_pool_acquire_timeouts_total {}",
        m.db_acquire_timeouts.load(Ordering::Relaxed)
    );
    out
}

/// The gauges of one app's database pool, sampled at scrape time.
fn render_pool(out: &mut String, pool: Option<PoolStats>) {
    if let Some(p) = pool {
        let gauges = [
            ("tessera_db_pool_size", "Open database connections.", p.size),
            ("tessera_db_pool_idle", "Idle database connections.", p.idle),
            (
                "tessera_db_pool_in_use",
                "Database connections in use.",
                // Sampled one after the other: idle may briefly exceed size.
                p.size.saturating_sub(p.idle),
            ),
            (
                "tessera_db_pool_max_connections",
                "Configured maximum of database connections.",
                p.max,
            ),
        ];
        for (name, help, v) in gauges {
            family(out, name, "gauge", help);
            let _ = writeln!(out, "{name} {v}");
        }
    }
}

/// The exposition text of one app: its pool's gauges and, with
/// `TESSERA_VERIFY_CACHE=tracking`, its verify cache's figures (each
/// replica its own, also when tests run several in one process).
pub fn render_with_pool(pool: Option<PoolStats>, cache: Option<VerifyCacheFigures>) -> String {
    let mut out = render();
    render_pool(&mut out, pool);
    render_connections(&mut out);
    render_mail(&mut out);
    if let Some(cache) = cache {
        render_verify_cache(&mut out, &cache);
    }
    out
}

/// A verify cache's figures at scrape time (`auth::verify_cache::VerifyCache::figures`).
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyCacheFigures {
    pub entries: u64,
    pub bytes: u64,
    pub live: bool,
    pub hits: u64,
    pub misses: u64,
    pub invalidations: u64,
    pub flushes: u64,
}

fn render_verify_cache(out: &mut String, c: &VerifyCacheFigures) {
    let rows: [(&str, &str, &str, u64); 7] = [
        (
            "tessera_verify_cache_entries",
            "gauge",
            "Access-token checks cached by this replica.",
            c.entries,
        ),
        (
            "tessera_verify_cache_bytes",
            "gauge",
            "Approximate memory of the cached checks.",
            c.bytes,
        ),
        (
            "tessera_verify_cache_live",
            "gauge",
            "1 while Redis tracking is up and the cache answers; 0 while checks go to Redis.",
            u64::from(c.live),
        ),
        (
            "tessera_verify_cache_hits_total",
            "counter",
            "Checks answered from the cache.",
            c.hits,
        ),
        (
            "tessera_verify_cache_misses_total",
            "counter",
            "Checks that asked Redis while the cache was live.",
            c.misses,
        ),
        (
            "tessera_verify_cache_invalidations_total",
            "counter",
            "Sessions forgotten: a Redis invalidation or a revocation by this replica.",
            c.invalidations,
        ),
        (
            "tessera_verify_cache_flushes_total",
            "counter",
            "Times the whole cache was emptied (tracking lost or regained, or a flush).",
            c.flushes,
        ),
    ];
    for (name, kind, help, v) in rows {
        family(out, name, kind, help);
        let _ = writeln!(out, "{name} {v}");
    }
}

label_set! {
    /// Why the server closed a connection for slowness (API.md "Slow and
    /// idle clients").
    SlowClose {
        /// No whole request head within `TESSERA_HEADER_TIMEOUT`.
        HeaderTimeout => "header_timeout",
        /// No request for `TESSERA_IDLE_TIMEOUT` (closed hard after a short grace).
        Idle => "idle",
        /// An HTTP/2 PING not answered within `TESSERA_HEADER_TIMEOUT`.
        Http2Ping => "h2_ping",
    }
}

/// The serve loop's counters (src/server.rs), apart from `Metrics` so the
/// connection families stay one local block.
struct ConnectionMetrics {
    slow_closes: Counts<{ SlowClose::ALL.len() }>,
    open: AtomicU64,
    cap_waits: AtomicU64,
    over_address_share: AtomicU64,
    accept_backoffs: AtomicU64,
}

fn connection_metrics() -> &'static ConnectionMetrics {
    static M: OnceLock<ConnectionMetrics> = OnceLock::new();
    M.get_or_init(|| ConnectionMetrics {
        slow_closes: Counts::new(),
        open: AtomicU64::new(0),
        cap_waits: AtomicU64::new(0),
        over_address_share: AtomicU64::new(0),
        accept_backoffs: AtomicU64::new(0),
    })
}

pub fn slow_close(r: SlowClose) {
    connection_metrics().slow_closes.add(r as usize);
}

/// One open connection, counted in the gauge until dropped.
pub struct OpenConnection(());

impl OpenConnection {
    pub fn new() -> Self {
        connection_metrics().open.fetch_add(1, Ordering::Relaxed);
        Self(())
    }
}

impl Default for OpenConnection {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        connection_metrics().open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The loop found `TESSERA_MAX_CONNECTIONS` open and stopped accepting.
pub fn connection_cap_reached() {
    connection_metrics()
        .cap_waits
        .fetch_add(1, Ordering::Relaxed);
}

/// A connection from an address already holding its share of
/// `TESSERA_MAX_CONNECTIONS` was closed at once.
pub fn connection_over_address_share() {
    connection_metrics()
        .over_address_share
        .fetch_add(1, Ordering::Relaxed);
}

/// `accept()` failed (EMFILE and the like) and the loop paused.
pub fn accept_backoff() {
    connection_metrics()
        .accept_backoffs
        .fetch_add(1, Ordering::Relaxed);
}

/// The mail outbox's counters (src/mail): queued, sent, retried, failed,
/// and the age of the oldest unsent message as last seen by this replica's
/// sender.
struct MailMetrics {
    queued: AtomicU64,
    sent: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    oldest_unsent_secs: AtomicU64,
}

fn mail_metrics() -> &'static MailMetrics {
    static M: OnceLock<MailMetrics> = OnceLock::new();
    M.get_or_init(|| MailMetrics {
        queued: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        retried: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        oldest_unsent_secs: AtomicU64::new(0),
    })
}

/// A mail was written to the outbox.
pub fn mail_queued() {
    mail_metrics().queued.fetch_add(1, Ordering::Relaxed);
}

/// A mail was delivered (accepted by the SMTP server, or logged).
pub fn mail_sent() {
    mail_metrics().sent.fetch_add(1, Ordering::Relaxed);
}

/// A delivery failed for now (server unreachable, 4xx) and will be retried.
pub fn mail_retried() {
    mail_metrics().retried.fetch_add(1, Ordering::Relaxed);
}

/// A delivery was given up (5xx refusal).
pub fn mail_failed() {
    mail_metrics().failed.fetch_add(1, Ordering::Relaxed);
}

/// The age of the oldest unsent mail (0: none), as the sender last saw it.
pub fn mail_oldest_unsent(age: Duration) {
    mail_metrics()
        .oldest_unsent_secs
        .store(age.as_secs(), Ordering::Relaxed);
}

fn render_mail(out: &mut String) {
    let m = mail_metrics();
    let singles = [
        (
            "tessera_mail_queued_total",
            "counter",
            "Mails written to the outbox by this replica.",
            &m.queued,
        ),
        (
            "tessera_mail_sent_total",
            "counter",
            "Mails delivered by this replica's sender.",
            &m.sent,
        ),
        (
            "tessera_mail_retried_total",
            "counter",
            "Deliveries that failed for now (server unreachable or 4xx) and are retried.",
            &m.retried,
        ),
        (
            "tessera_mail_failed_total",
            "counter",
            "Deliveries given up (a permanent 5xx refusal).",
            &m.failed,
        ),
        (
            "tessera_mail_oldest_unsent_seconds",
            "gauge",
            "Age of the oldest unsent mail in the outbox (0: none), as last seen by this replica.",
            &m.oldest_unsent_secs,
        ),
    ];
    for (name, kind, help, v) in singles {
        family(out, name, kind, help);
        let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
    }
}

fn render_connections(out: &mut String) {
    let m = connection_metrics();
    counter_family(
        out,
        (
            "tessera_connections_closed_slow_total",
            "Connections closed for slowness, by reason.",
            "reason",
        ),
        SlowClose::ALL,
        SlowClose::label,
        |i| m.slow_closes.get(i),
    );
    let singles = [
        (
            "tessera_connections_open",
            "gauge",
            "Open client connections (all servers of the process).",
            &m.open,
        ),
        (
            "tessera_connections_cap_reached_total",
            "counter",
            "Times accepting paused at TESSERA_MAX_CONNECTIONS.",
            &m.cap_waits,
        ),
        (
            "tessera_connections_over_address_share_total",
            "counter",
            "Connections closed at once: their address held a quarter of TESSERA_MAX_CONNECTIONS.",
            &m.over_address_share,
        ),
        (
            "tessera_accept_backoffs_total",
            "counter",
            "Failed accepts (e.g. out of file descriptors) followed by a pause.",
            &m.accept_backoffs,
        ),
    ];
    for (name, kind, help, v) in singles {
        family(out, name, kind, help);
        let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_series() {
        record_request("/employees/{id}", "GET", 200, Duration::from_millis(3));
        record_request("unmatched", "BREW", 405, Duration::from_millis(1));
        event(Event::RefreshReused);
        login(LoginOutcome::RateLimited);
        rate_limited(RateLimit::HashingAccount);
        let text = render_with_pool(
            Some(PoolStats {
                size: 3,
                idle: 1,
                max: 10,
            }),
            None,
        );
        for series in [
            r#"tessera_http_requests_total{method="GET",route="/employees/{id}",status="200"}"#,
            r#"tessera_http_requests_total{method="OTHER",route="unmatched",status="405"}"#,
            r#"tessera_http_request_duration_seconds_bucket{method="GET",route="/employees/{id}",le="+Inf"}"#,
            r#"tessera_http_request_duration_seconds_count{method="GET",route="/employees/{id}"}"#,
            r#"tessera_auth_events_total{event="refresh_reused"}"#,
            r#"tessera_logins_total{outcome="rate_limited"}"#,
            r#"tessera_refreshes_total{outcome="grace"} "#,
            r#"tessera_revocations_total{cause="session_end"} "#,
            r#"tessera_store_errors_total{kind="corrupt"} "#,
            r#"tessera_db_errors_total{kind="other"} "#,
            r#"tessera_rate_limited_total{limit="account_ip"} "#,
            r#"tessera_rate_limited_total{limit="register"} "#,
            "tessera_db_pool_acquire_timeouts_total ",
            "tessera_db_pool_in_use 2\n",
            "tessera_db_pool_max_connections 10\n",
            r#"tessera_connections_closed_slow_total{reason="h2_ping"} "#,
            "tessera_connections_open ",
            "tessera_connections_cap_reached_total ",
            "tessera_connections_over_address_share_total ",
            "tessera_accept_backoffs_total ",
        ] {
            assert!(text.contains(series), "{series} missing from\n{text}");
        }
        assert!(!render().contains("tessera_db_pool_size"));
    }

    #[test]
    fn pool_sums_saturate() {
        // A wrapped idle count once made /metrics panic (overflow in plus).
        let odd = PoolStats {
            size: 1,
            idle: u32::MAX,
            max: 1,
        };
        let sum = odd.plus(PoolStats {
            size: 4,
            idle: 2,
            max: 4,
        });
        assert_eq!((sum.size, sum.idle, sum.max), (5, u32::MAX, 5));
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(20));
        assert_eq!(h.buckets[0], 0);
        assert_eq!(h.buckets[2], 1, "0.005 holds the 3 ms one");
        assert_eq!(h.buckets[BUCKETS.len() - 1], 1, "20 s is only in +Inf");
        assert_eq!(h.count, 2);
        assert_eq!(h.sum_micros, 20_003_000);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("/a"), "/a");
        assert_eq!(escape("a\"b\\c"), "a\\\"b\\\\c");
    }
}
