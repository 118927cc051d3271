//! `bench propagation`: how long a revocation takes to reach another
//! replica (issue 22). Two Tessera replicas, A and B, on the same database
//! and Redis (B with `TESSERA_VERIFY_CACHE=tracking`). For each of N
//! sessions, made in advance:
//!
//! 1. `GET /auth/verify` on B twice (200 both times: the first fills B's
//!    cache, the second is answered from it);
//! 2. `POST /auth/logout` on A (204);
//! 3. from the moment A's answer arrives, `GET /auth/verify` on B on one
//!    keep-alive connection, back to back (or `--interval` apart), until B
//!    answers 401. The delay is from A's answer to B's 401, so it includes
//!    one verify round trip even when B already knew.
//!
//! A 200 from B that arrives later than `--bound-ms` plus the interval
//! after A's answer is a late acceptance: a revoked token accepted past
//! the bound. Any late acceptance, any answer other than 200/401 (or a
//! logout other than 204), or a token B still accepts after `--give-up`,
//! exits 1.

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use reqwest::{Client, StatusCode};

use crate::mail::metric;
use crate::scenario::{self, Addresses};
use crate::stats::{fmt_us, summarise, to_us};

#[derive(Args, Debug)]
pub struct Propagation {
    /// Replica A (where the logouts go; logins go there too).
    #[arg(long)]
    a: String,
    /// Replica B (polled; run it with TESSERA_VERIFY_CACHE=tracking).
    #[arg(long)]
    b: String,
    /// Revocations (one session each).
    #[arg(long, short = 'n', default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    revocations: u32,
    /// Pause between two polls of B (humantime; 0 = back to back).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// A 200 from B later than this (plus --interval) after the logout's
    /// answer is a late acceptance.
    #[arg(long, default_value_t = 5)]
    bound_ms: u64,
    /// Stop polling a token B still accepts this long after its logout
    /// (counted, exits 1).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    give_up: Duration,
    /// Sessions per account (each login costs an argon2 hash; the server
    /// ends the oldest past TESSERA_MAX_SESSIONS_PER_USER, default 100).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    sessions_per_account: u32,
    /// Logins in flight during setup.
    #[arg(long, default_value_t = 4)]
    setup_concurrency: usize,
    /// Per-request timeout.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// What happened to the revocations.
#[derive(Default)]
struct Tally {
    /// Logout's answer to B's first 401, µs.
    delays_us: Vec<u32>,
    polls: u64,
    /// 200s from B after the logout's answer (within the bound or not).
    accepted_after: u64,
    /// Revocations with at least one such 200.
    revocations_accepted_after: u64,
    late: u64,
    /// Tokens B still accepted at --give-up.
    never_refused: u64,
    /// Anything but 200/401 from B (transport errors included), or a
    /// logout other than 204, or a 401 from B before the logout.
    other: Vec<String>,
}

/// The cache's counters on B, to show the checks were served from it.
#[derive(Default, Clone, Copy)]
struct CacheCounters {
    hits: f64,
    misses: f64,
    invalidations: f64,
    flushes: f64,
}

async fn cache_counters(client: &Client, b: &str) -> Option<CacheCounters> {
    let text = client
        .get(format!("{b}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(CacheCounters {
        hits: metric(&text, "tessera_verify_cache_hits_total")?,
        misses: metric(&text, "tessera_verify_cache_misses_total")?,
        invalidations: metric(&text, "tessera_verify_cache_invalidations_total")?,
        flushes: metric(&text, "tessera_verify_cache_flushes_total")?,
    })
}

/// Status of one request, body read so the connection is reused; a
/// transport error as text.
async fn status(req: reqwest::RequestBuilder) -> Result<StatusCode, String> {
    let resp = req.send().await.map_err(|e| format!("transport: {e}"))?;
    let status = resp.status();
    resp.bytes().await.map_err(|e| format!("transport: {e}"))?;
    Ok(status)
}

/// `Ok(false)` when a revoked token was accepted late, never refused, or
/// an unexpected answer came.
pub async fn bench(p: &Propagation) -> Result<bool> {
    let (a, b) = (p.a.trim_end_matches('/'), p.b.trim_end_matches('/'));
    let n = p.revocations as usize;
    let per = p.sessions_per_account as usize;
    let bound = Duration::from_millis(p.bound_ms);

    let accounts =
        scenario::register_accounts(a, n.div_ceil(per), p.timeout, &Addresses::default()).await?;
    let setup_started = Instant::now();
    let mut tokens = scenario::sessions(a, &accounts, per, p.setup_concurrency, p.timeout).await?;
    tokens.truncate(n);
    eprintln!(
        "bench propagation: {} sessions on {} accounts in {:.1} s",
        tokens.len(),
        accounts.len(),
        setup_started.elapsed().as_secs_f64()
    );

    // One keep-alive connection to each replica.
    let on_a = scenario::connection(p.timeout)?;
    let on_b = scenario::connection(p.timeout)?;
    let before = cache_counters(&on_b, b).await;
    let verify_b = format!("{b}/auth/verify");
    let logout_a = format!("{a}/auth/logout");

    let mut t = Tally::default();
    let started = Instant::now();
    for (i, token) in tokens.iter().enumerate() {
        let mut warm_ok = true;
        for _ in 0..2 {
            match status(on_b.get(&verify_b).bearer_auth(token)).await {
                Ok(StatusCode::OK) => {}
                Ok(s) => {
                    t.other
                        .push(format!("revocation {i}: B answered {s} before the logout"));
                    warm_ok = false;
                }
                Err(e) => {
                    t.other
                        .push(format!("revocation {i}: B before the logout: {e}"));
                    warm_ok = false;
                }
            }
        }
        if !warm_ok {
            continue;
        }
        match status(on_a.post(&logout_a).bearer_auth(token)).await {
            Ok(StatusCode::NO_CONTENT) => {}
            Ok(s) => {
                t.other
                    .push(format!("revocation {i}: logout on A answered {s}"));
                continue;
            }
            Err(e) => {
                t.other.push(format!("revocation {i}: logout on A: {e}"));
                continue;
            }
        }
        let t0 = Instant::now();
        let mut accepted = false;
        loop {
            let answer = status(on_b.get(&verify_b).bearer_auth(token)).await;
            let at = t0.elapsed();
            t.polls += 1;
            match answer {
                Ok(StatusCode::UNAUTHORIZED) => {
                    t.delays_us.push(to_us(at));
                    break;
                }
                Ok(StatusCode::OK) => {
                    t.accepted_after += 1;
                    accepted = true;
                    if at > bound + p.interval {
                        t.late += 1;
                    }
                    if at > p.give_up {
                        t.never_refused += 1;
                        break;
                    }
                }
                Ok(s) => {
                    t.other
                        .push(format!("revocation {i}: B answered {s} after the logout"));
                    break;
                }
                Err(e) => {
                    t.other
                        .push(format!("revocation {i}: B after the logout: {e}"));
                    break;
                }
            }
            if !p.interval.is_zero() {
                tokio::time::sleep(p.interval).await;
            }
        }
        if accepted {
            t.revocations_accepted_after += 1;
        }
    }
    let elapsed = started.elapsed();
    let after = cache_counters(&on_b, b).await;
    Ok(print(p, &mut t, elapsed, before.zip(after), tokens.len()))
}

fn print(
    p: &Propagation,
    t: &mut Tally,
    elapsed: Duration,
    cache: Option<(CacheCounters, CacheCounters)>,
    sessions: usize,
) -> bool {
    println!("scenario        propagation");
    println!("replicas        A {} (logouts), B {} (polled)", p.a, p.b);
    println!(
        "revocations     {} measured of {sessions} in {:.3} s; poll interval {}, bound {} ms",
        t.delays_us.len(),
        elapsed.as_secs_f64(),
        humantime::format_duration(p.interval),
        p.bound_ms
    );
    match summarise(&mut t.delays_us) {
        Some(s) => println!(
            "delay           p50 {}  p99 {}  p99.9 {}  max {}  (logout's answer on A to B's first 401)",
            fmt_us(s.p50),
            fmt_us(s.p99),
            fmt_us(s.p999),
            fmt_us(s.max)
        ),
        None => println!("delay           (no revocation seen)"),
    }
    println!(
        "polls of B      {} after the logouts; {} answered 200 ({} revocations)",
        t.polls, t.accepted_after, t.revocations_accepted_after
    );
    println!(
        "late accepted   {} (200 from B more than {} ms + interval after the logout's answer)",
        t.late, p.bound_ms
    );
    if t.never_refused > 0 {
        println!(
            "never refused   {} (still 200 after {})",
            t.never_refused,
            humantime::format_duration(p.give_up)
        );
    }
    println!("other answers   {}", t.other.len());
    for o in t.other.iter().take(10) {
        println!("                {o}");
    }
    match cache {
        Some((before, after)) => println!(
            "B's cache       hits +{}  misses +{}  invalidations +{}  flushes +{}",
            after.hits - before.hits,
            after.misses - before.misses,
            after.invalidations - before.invalidations,
            after.flushes - before.flushes
        ),
        None => {
            println!("B's cache       no tessera_verify_cache_* metrics: B runs without the cache")
        }
    }
    if let Some(p99) = crate::stats::percentile(&t.delays_us, 0.99) {
        let verdict = if u64::from(p99) < p.bound_ms * 1000 {
            "met"
        } else {
            "missed"
        };
        println!("target          p99 < {} ms: {verdict}", p.bound_ms);
    }
    let ok = t.late == 0 && t.never_refused == 0 && t.other.is_empty();
    if !ok {
        eprintln!(
            "bench: propagation failed: {} late acceptances, {} never refused, {} other answers",
            t.late,
            t.never_refused,
            t.other.len()
        );
    }
    ok
}
