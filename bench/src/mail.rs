//! `register` and `forgot`: what a registration and a forgot-password
//! request cost with mail on (issue 19), and what the service's mail
//! sender delivers meanwhile (read from its `/metrics`).
//!
//! - `register`: `POST /auth/register` with a fresh username and email on
//!   every request. Run it against a server with
//!   `TESSERA_EMAIL_VERIFICATION=off` (no mail) and one with `optional` (a
//!   verification mail queued per registration): the difference is the
//!   outbox insert.
//! - `forgot`: `POST /auth/password/forgot`, two phases of `-d` in the same
//!   mode: the addresses of existing accounts (one per connection,
//!   registered during setup; each request queues a request row that the
//!   sender turns into a reset mail) and unknown addresses (a fresh one
//!   per request; the sender drops the row), unknown first. The answers
//!   must not differ.
//!
//! Each phase starts with an empty outbox and ends by waiting (at most
//! `--drain-limit`) for the sender to empty it, so the sender's throughput
//! is printed: mails
//! delivered during the phase (beside the requests) and after it (alone).
//! The server needs `TESSERA_TRUST_FORWARDED=true` with `--addresses`
//! (hashing's fair share per address binds registrations as it does
//! logins), `TESSERA_REGISTER_PER_IP=0` and `TESSERA_MAIL_PER_ADDRESS=0
//! TESSERA_MAIL_PER_IP=0`.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use reqwest::Client;
use tokio::time::Instant;

use crate::Load;
use crate::report::{self, Figures};
use crate::run::{self, Mode, Report};
use crate::scenario::{self, Addresses, Worker};
use crate::schedule::Schedule;
use crate::stats::fmt_us;

/// The outbox counters of one `/metrics` reading.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Outbox {
    pub queued: f64,
    pub sent: f64,
    pub retried: f64,
    pub failed: f64,
    /// Whole seconds (the gauge's unit): a backlog younger than 1 s reads 0.
    pub oldest_unsent: f64,
}

/// The sum of every series of `name` in a Prometheus text exposition
/// (`name value` or `name{labels} value`); `None` when there is none.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let value = match rest.chars().next() {
            Some(' ') => rest.trim(),
            Some('{') => match rest.rfind('}') {
                Some(end) => rest[end + 1..].trim(),
                None => continue,
            },
            _ => continue,
        };
        // A timestamp may follow the value.
        if let Some(v) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

pub fn outbox_of(text: &str) -> Option<Outbox> {
    Some(Outbox {
        queued: metric(text, "tessera_mail_queued_total")?,
        sent: metric(text, "tessera_mail_sent_total")?,
        retried: metric(text, "tessera_mail_retried_total")?,
        failed: metric(text, "tessera_mail_failed_total")?,
        oldest_unsent: metric(text, "tessera_mail_oldest_unsent_seconds")?,
    })
}

struct Metrics {
    client: Client,
    url: String,
}

impl Metrics {
    async fn read(&self) -> Result<Outbox> {
        let text = self
            .client
            .get(&self.url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("GET {}", self.url))?
            .text()
            .await
            .with_context(|| format!("GET {}: reading", self.url))?;
        outbox_of(&text).with_context(|| format!("GET {}: no tessera_mail_* metrics", self.url))
    }

    /// Waits until the sender has emptied the outbox: the oldest-unsent
    /// gauge at 0 on two readings 0.5 s apart, the first at least 1.5 s
    /// after `from` (the gauge counts whole seconds, so any row still
    /// queued then reads at least 1). Returns the last reading at which
    /// `sent` grew and its time, and when the outbox was seen empty.
    async fn drain(&self, from: Instant, limit: Duration) -> Result<Drained> {
        const POLL: Duration = Duration::from_millis(100);
        let mut last = self.read().await?;
        let mut last_growth = (Instant::now(), last);
        let mut empty_since: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if now.duration_since(from) > limit {
                return Ok(Drained {
                    last_delivery: last_growth,
                    empty_at: None,
                    end: last,
                });
            }
            tokio::time::sleep(POLL).await;
            let reading = self.read().await?;
            let now = Instant::now();
            if reading.sent > last.sent {
                last_growth = (now, reading);
            }
            last = reading;
            if reading.oldest_unsent > 0.0 || now.duration_since(from) < Duration::from_millis(1500)
            {
                empty_since = None;
                continue;
            }
            let since = *empty_since.get_or_insert(now);
            if now.duration_since(since) >= Duration::from_millis(500) {
                return Ok(Drained {
                    last_delivery: last_growth,
                    empty_at: Some(since),
                    end: reading,
                });
            }
        }
    }
}

struct Drained {
    last_delivery: (Instant, Outbox),
    /// `None`: not empty within the limit.
    empty_at: Option<Instant>,
    end: Outbox,
}

fn mode_of(load: &Load) -> Result<Mode> {
    match load.rate {
        None => Ok(Mode::Closed),
        Some(rate) => match Schedule::new(rate, load.duration) {
            Some(s) => Ok(Mode::Open(s)),
            None => bail!("--rate must be a positive number"),
        },
    }
}

fn describe(load: &Load, mode: Mode, what: &str) {
    match mode {
        Mode::Closed => println!(
            "mode            {what}closed loop, {} connections from {} addresses, {}",
            load.connections,
            load.addresses,
            humantime::format_duration(load.duration)
        ),
        Mode::Open(s) => println!(
            "mode            {what}open loop, {} req/s target ({} scheduled), {} connections from {} addresses, {}",
            load.rate.unwrap_or_default(),
            s.len(),
            load.connections,
            load.addresses,
            humantime::format_duration(load.duration)
        ),
    }
}

fn warn_addresses(load: &Load) {
    if usize::from(load.connections) > 4 * (load.addresses.max(1) as usize) {
        eprintln!(
            "bench: one client address gets a quarter of the hashing queue: pass --addresses \
             (about -c) and run the server with TESSERA_TRUST_FORWARDED=true"
        );
    }
}

/// One phase: an empty outbox, the run, the sender's throughput.
async fn phase(
    title: &str,
    load: &Load,
    mode: Mode,
    workers: Vec<Worker>,
    metrics: &Metrics,
) -> Result<(Report, Figures)> {
    let before = metrics.read().await?;
    let started = Instant::now();
    let mut r = run::run(workers, mode, load.duration).await;
    let ended = Instant::now();
    let at_end = metrics.read().await?;
    println!("== {title}");
    let figures = report::stream(&mut r);
    if let Mode::Open(_) = mode {
        report::behind_schedule(&r, load.duration, load.rate.unwrap_or_default());
    }
    let drained = metrics.drain(ended, load.drain_limit).await?;
    print_outbox(before, at_end, started, ended, &drained, load.drain_limit);
    Ok((r, figures))
}

fn print_outbox(
    before: Outbox,
    at_end: Outbox,
    started: Instant,
    ended: Instant,
    d: &Drained,
    limit: Duration,
) {
    let during = ended.duration_since(started).as_secs_f64();
    let queued = at_end.queued - before.queued;
    let sent_during = at_end.sent - before.sent;
    println!(
        "outbox          {queued} queued, {sent_during} delivered during the phase ({:.1} mails/s)",
        sent_during / during
    );
    let (last_at, last) = d.last_delivery;
    let sent_after = last.sent - at_end.sent;
    if sent_after > 0.0 {
        let after = last_at.duration_since(ended).as_secs_f64();
        println!(
            "sender alone    {sent_after} more delivered in {after:.1} s after the phase ({:.1} mails/s)",
            sent_after / after.max(0.1)
        );
    }
    match d.empty_at {
        Some(t) => println!(
            "outbox empty    {:.1} s after the phase (0.1 s polls, at least 1.5 s)",
            t.duration_since(ended).as_secs_f64()
        ),
        None => println!(
            "outbox empty    not within {}",
            humantime::format_duration(limit)
        ),
    }
    let (retried, failed) = (d.end.retried - before.retried, d.end.failed - before.failed);
    if retried > 0.0 || failed > 0.0 {
        println!("mail failures   {retried} retried, {failed} given up");
    }
}

/// Waits for an empty outbox before a run; says so when it is not.
async fn empty_first(metrics: &Metrics, load: &Load) -> Result<()> {
    if metrics
        .drain(Instant::now(), load.drain_limit)
        .await?
        .empty_at
        .is_none()
    {
        eprintln!("bench: the outbox is not empty at the start: the sender is busy beside the run");
    }
    Ok(())
}

fn metrics_of(load: &Load) -> Result<Metrics> {
    Ok(Metrics {
        client: scenario::connection(load.timeout)?,
        url: format!("{}/metrics", load.url.trim_end_matches('/')),
    })
}

/// Registrations with a fresh username and email on every request.
pub async fn register(load: &Load) -> Result<bool> {
    let mode = mode_of(load)?;
    warn_addresses(load);
    let metrics = metrics_of(load)?;
    let addresses = Addresses::spread(1, load.addresses);
    let workers = scenario::registrations(
        &load.url,
        usize::from(load.connections),
        load.timeout,
        &addresses,
    )?;
    // Whatever an earlier run left in the outbox goes first.
    empty_first(&metrics, load).await?;
    println!("scenario        register");
    describe(load, mode, "");
    let (r, _) = phase("registrations", load, mode, workers, &metrics).await?;
    Ok(report::acceptable(
        "registration",
        &r.tally,
        load.max_fail_pct,
    ))
}

/// Forgot requests for unknown addresses, then for existing accounts.
pub async fn forgot(load: &Load) -> Result<bool> {
    let mode = mode_of(load)?;
    let metrics = metrics_of(load)?;
    let connections = usize::from(load.connections);
    let addresses = Addresses::spread(1, load.addresses);
    let accounts =
        scenario::register_accounts(&load.url, connections, load.timeout, &addresses).await?;
    let existing = scenario::forgets(
        &load.url,
        Some(accounts.iter().map(|a| a.email.clone()).collect()),
        connections,
        load.timeout,
        &addresses,
    )?;
    let unknown = scenario::forgets(&load.url, None, connections, load.timeout, &addresses)?;
    // The setup's verification mails (if any) go first.
    empty_first(&metrics, load).await?;
    println!("scenario        forgot");
    describe(load, mode, "each phase ");

    // Unknown addresses first: the sender only drops their rows, so the
    // outbox is empty again within seconds; the existing accounts' reset
    // mails may take longer than --drain-limit to deliver.
    let (nobody, nobody_fig) =
        phase("unknown addresses (phase 1)", load, mode, unknown, &metrics).await?;
    let (known, known_fig) = phase(
        "existing accounts (phase 2)",
        load,
        mode,
        existing,
        &metrics,
    )
    .await?;

    println!("== unknown / existing");
    if known_fig.rps > 0.0 {
        println!("requests/s      {:.3}", nobody_fig.rps / known_fig.rps);
    }
    if let (Some(k), Some(n)) = (known_fig.latency, nobody_fig.latency) {
        println!(
            "latency         p50 {} / {}  p99 {} / {}",
            fmt_us(n.p50),
            fmt_us(k.p50),
            fmt_us(n.p99),
            fmt_us(k.p99)
        );
    }
    let verdicts = [
        report::acceptable("forgot (existing)", &known.tally, load.max_fail_pct),
        report::acceptable("forgot (unknown)", &nobody.tally, load.max_fail_pct),
    ];
    Ok(verdicts.iter().all(|ok| *ok))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = "\
# HELP tessera_mail_sent_total Mails delivered by this replica's sender.
# TYPE tessera_mail_sent_total counter
tessera_mail_sent_total 42
tessera_mail_sent_total_extra 7
tessera_mail_queued_total 50
tessera_mail_retried_total 0
tessera_mail_failed_total 1
tessera_mail_oldest_unsent_seconds 3
tessera_http_requests_total{route=\"/auth/register\",status=\"201\"} 10
tessera_http_requests_total{route=\"/auth/password/forgot\",status=\"202\"} 5 1700000000000
";

    #[test]
    fn reads_a_series_by_its_exact_name() {
        assert_eq!(metric(EXPOSITION, "tessera_mail_sent_total"), Some(42.0));
        assert_eq!(metric(EXPOSITION, "tessera_mail_sent"), None);
        assert_eq!(metric(EXPOSITION, "absent"), None);
    }

    #[test]
    fn sums_labelled_series_and_ignores_timestamps() {
        assert_eq!(
            metric(EXPOSITION, "tessera_http_requests_total"),
            Some(15.0)
        );
    }

    #[test]
    fn reads_the_outbox_counters() {
        assert_eq!(
            outbox_of(EXPOSITION),
            Some(Outbox {
                queued: 50.0,
                sent: 42.0,
                retried: 0.0,
                failed: 1.0,
                oldest_unsent: 3.0,
            })
        );
        assert_eq!(outbox_of("tessera_mail_sent_total 1\n"), None);
    }
}
