//! Prometheus metrics (`GET /metrics`, text format 0.0.4): requests by method
//! and status, request latency, and token events. Process-wide, lock-free on
//! the hot path except the (method, status) table, which stays tiny.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use parking_lot::Mutex;
use poem::{Response, handler, http::header};

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
}

impl Event {
    const ALL: [Event; 13] = [
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
        }
    }
}

struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    buckets: [AtomicU64; BUCKETS.len()],
    duration_count: AtomicU64,
    duration_sum_micros: AtomicU64,
    events: [AtomicU64; Event::ALL.len()],
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| Metrics {
        requests: Mutex::new(BTreeMap::new()),
        buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        duration_count: AtomicU64::new(0),
        duration_sum_micros: AtomicU64::new(0),
        events: std::array::from_fn(|_| AtomicU64::new(0)),
    })
}

/// Records one finished request. Methods outside the standard set are
/// counted as `OTHER`, so clients cannot grow the table.
pub fn record_request(method: &str, status: u16, elapsed: Duration) {
    const KNOWN: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    let method = if KNOWN.contains(&method) {
        method
    } else {
        "OTHER"
    };
    let m = metrics();
    *m.requests
        .lock()
        .entry((method.to_owned(), status))
        .or_insert(0) += 1;
    let secs = elapsed.as_secs_f64();
    for (i, le) in BUCKETS.iter().enumerate() {
        if secs <= *le {
            m.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }
    m.duration_count.fetch_add(1, Ordering::Relaxed);
    m.duration_sum_micros
        .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
}

pub fn event(e: Event) {
    if let Some(i) = Event::ALL.iter().position(|x| *x == e) {
        metrics().events[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// The whole exposition text.
pub fn render() -> String {
    let m = metrics();
    let mut out = String::new();
    out.push_str("# HELP tessera_http_requests_total HTTP requests by method and status.\n");
    out.push_str("# TYPE tessera_http_requests_total counter\n");
    for ((method, status), n) in m.requests.lock().iter() {
        let _ = writeln!(
            out,
            "tessera_http_requests_total{{method=\"{method}\",status=\"{status}\"}} {n}"
        );
    }
    out.push_str("# HELP tessera_http_request_duration_seconds Time to answer a request.\n");
    out.push_str("# TYPE tessera_http_request_duration_seconds histogram\n");
    for (i, le) in BUCKETS.iter().enumerate() {
        let _ = writeln!(
            out,
            "tessera_http_request_duration_seconds_bucket{{le=\"{le}\"}} {}",
            m.buckets[i].load(Ordering::Relaxed)
        );
    }
    let count = m.duration_count.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "tessera_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
    );
    let _ = writeln!(
        out,
        "tessera_http_request_duration_seconds_sum {}",
        m.duration_sum_micros.load(Ordering::Relaxed) as f64 / 1e6
    );
    let _ = writeln!(out, "tessera_http_request_duration_seconds_count {count}");
    out.push_str("# HELP tessera_auth_events_total Login, refresh, logout and store events.\n");
    out.push_str("# TYPE tessera_auth_events_total counter\n");
    for (i, e) in Event::ALL.iter().enumerate() {
        let _ = writeln!(
            out,
            "tessera_auth_events_total{{event=\"{}\"}} {}",
            e.name(),
            m.events[i].load(Ordering::Relaxed)
        );
    }
    out
}

/// `GET /metrics` (not in the OpenAPI document, as API.md says).
#[handler]
pub fn endpoint() -> Response {
    Response::builder()
        .header(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )
        .body(render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_series() {
        record_request("GET", 200, Duration::from_millis(3));
        record_request("BREW", 405, Duration::from_millis(1));
        event(Event::RefreshReused);
        let text = render();
        assert!(text.contains("tessera_http_requests_total{method=\"GET\",status=\"200\"}"));
        assert!(text.contains("tessera_http_requests_total{method=\"OTHER\",status=\"405\"}"));
        assert!(text.contains("tessera_http_request_duration_seconds_bucket{le=\"+Inf\"}"));
        assert!(text.contains("tessera_auth_events_total{event=\"refresh_reused\"}"));
    }
}
