//! `bench soak`: a long run of mixed traffic against one replica with its
//! resident memory sampled (issue 22). Open loop at `--rate` in all,
//! shared out as verify 50 %, me 20 %, refresh 10 %, employees list 10 %,
//! employees create 10 % (each on its own connections, as the single
//! scenarios), plus logins at `--login-rate`. `VmRSS` of the server is
//! read every `--sample-every`. Passes when no request failed and every
//! sample after the warm-up (`--warmup`, default the first minute) is
//! within `--tolerance-pct` of the sample taken at the warm-up's end.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use tokio::time::{Instant, sleep_until};

use crate::report;
use crate::resident;
use crate::run::{self, Mode, Report};
use crate::scenario::{self, Addresses, Scenario};
use crate::schedule::Schedule;
use crate::stats::fmt_us;

#[derive(Args, Debug)]
pub struct Soak {
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// How long (humantime). Keep it under TESSERA_ACCESS_TTL (900 s):
    /// verify, me and the employee streams use one access token each.
    #[arg(long, short = 'd', default_value = "10m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Requests/s of the five token streams together (open loop).
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Connections of the five token streams together (each gets at least one).
    #[arg(long, short = 'c', default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    connections: u16,
    /// Logins/s (argon2-bound), on two connections with an account each.
    #[arg(long, default_value_t = 2.0)]
    login_rate: f64,
    /// The server's pid; without it, the process listening on --url's port.
    #[arg(long)]
    pid: Option<u32>,
    /// Time between two memory samples.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    sample_every: Duration,
    /// Samples before this are the warm-up; the first one at or after it is
    /// the reference.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Every later sample must be within this percentage of the reference.
    #[arg(long, default_value_t = 10.0)]
    tolerance_pct: f64,
    /// Per-request timeout (a timeout is a failed request).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// The token streams and their shares of --rate.
const STREAMS: [(Scenario, f64); 5] = [
    (Scenario::Verify, 0.5),
    (Scenario::Me, 0.2),
    (Scenario::Refresh, 0.1),
    (Scenario::EmployeesList, 0.1),
    (Scenario::EmployeesCreate, 0.1),
];
const LOGIN_CONNECTIONS: usize = 2;

/// One memory sample: seconds since the start, KiB.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Sample {
    at: Duration,
    kib: u64,
}

/// `Ok(false)` when a request failed or memory did not stay flat.
pub async fn bench(s: &Soak) -> Result<bool> {
    let pid = match s.pid {
        Some(pid) => pid,
        None => {
            let url = reqwest::Url::parse(&s.url).context("parsing --url")?;
            let port = url.port_or_known_default().context("--url has no port")?;
            resident::pid_listening_on(port)?
        }
    };
    resident::status_kib(pid, "VmRSS")?;
    if s.duration >= Duration::from_secs(14 * 60) {
        eprintln!(
            "bench: the token streams use one access token each: run the server with \
             TESSERA_ACCESS_TTL above {} or they end in 401s",
            humantime::format_duration(s.duration)
        );
    }

    let total: f64 = STREAMS.iter().map(|(_, w)| w).sum();
    let mut streams = Vec::new();
    for (scenario, weight) in STREAMS {
        let rate = s.rate * weight / total;
        let connections = ((f64::from(s.connections) * weight / total).round() as usize).max(1);
        let schedule = Schedule::new(rate, s.duration).context("--rate must be positive")?;
        let workers = scenario::prepare(
            scenario,
            &s.url,
            "/",
            connections,
            s.timeout,
            &Addresses::default(),
        )
        .await?;
        streams.push((scenario.name(), rate, connections, schedule, workers));
    }
    let login_schedule =
        Schedule::new(s.login_rate, s.duration).context("--login-rate must be positive")?;
    let logins = scenario::prepare(
        Scenario::Login,
        &s.url,
        "/",
        LOGIN_CONNECTIONS,
        s.timeout,
        &Addresses::default(),
    )
    .await?;
    streams.push((
        "login",
        s.login_rate,
        LOGIN_CONNECTIONS,
        login_schedule,
        logins,
    ));

    println!("scenario        soak");
    println!(
        "mode            open loop, {} req/s + {} logins/s, {} connections, {}; server pid {pid}, \
         VmRSS every {}",
        s.rate,
        s.login_rate,
        streams.iter().map(|(_, _, c, _, _)| c).sum::<usize>(),
        humantime::format_duration(s.duration),
        humantime::format_duration(s.sample_every)
    );

    let start = run::start_soon();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (_, _, _, schedule, workers)) in streams.iter_mut().enumerate() {
        let (schedule, workers) = (*schedule, std::mem::take(workers));
        let d = s.duration;
        tasks.spawn(async move {
            (
                i,
                run::run_from(workers, Mode::Open(schedule), start, d).await,
            )
        });
    }
    let samples = sample(pid, start, s.duration, s.sample_every).await;
    let mut reports: Vec<Option<Report>> = (0..streams.len()).map(|_| None).collect();
    while let Some(done) = tasks.join_next().await {
        let (i, r) = done.context("a stream's task failed")?;
        reports[i] = Some(r);
    }

    let mut failed = 0;
    let mut requests = 0;
    let mut p99s = Vec::new();
    for ((name, rate, _, _, _), r) in streams.iter().zip(reports.iter_mut()) {
        let Some(r) = r else { continue };
        let fig = report::phase(name, r, s.duration, *rate);
        failed += r.tally.failed();
        requests += r.tally.total();
        if let Some(l) = fig.latency {
            p99s.push(format!("{name} {}", fmt_us(l.p99)));
        }
    }
    let samples = samples?;
    let memory = judge(&samples, s.warmup, s.tolerance_pct);
    let hwm = resident::status_kib(pid, "VmHWM").ok();

    println!("== summary");
    println!("requests        {requests}, failed {failed}");
    println!("p99             {}", p99s.join(", "));
    if let Some(hwm) = hwm {
        println!("peak (VmHWM)    {}", mib(hwm));
    }
    match &memory {
        Ok(m) => println!(
            "memory          reference {} at {}; after it {} to {} ({:+.1} % to {:+.1} %): flat within {} %",
            mib(m.reference.kib),
            humantime::format_duration(m.reference.at),
            mib(m.min),
            mib(m.max),
            m.low_pct,
            m.high_pct,
            s.tolerance_pct
        ),
        Err(e) => println!("memory          {e}"),
    }
    // One row for BENCHMARKS.md's soak table.
    let (reference, range) = match &memory {
        Ok(m) | Err(Verdict::Drift(m)) => (
            mib(m.reference.kib),
            format!(
                "{} – {} ({:+.1} % / {:+.1} %)",
                mib(m.min),
                mib(m.max),
                m.low_pct,
                m.high_pct
            ),
        ),
        Err(e) => ("–".to_owned(), e.to_string()),
    };
    println!(
        "markdown        | {} | {} req/s + {} logins/s | {requests} | {failed} | {reference} | {range} | {} |",
        humantime::format_duration(s.duration),
        s.rate,
        s.login_rate,
        hwm.map(mib).unwrap_or_else(|| "–".to_owned()),
    );

    if failed > 0 {
        eprintln!("bench: {failed} requests failed in the soak");
    }
    if let Err(e) = &memory {
        eprintln!("bench: memory: {e}");
    }
    Ok(failed == 0 && memory.is_ok())
}

/// Samples VmRSS at `start`, every `every` after it, until `duration`
/// has passed (the last sample at or just after the end), printing each.
async fn sample(
    pid: u32,
    start: Instant,
    duration: Duration,
    every: Duration,
) -> Result<Vec<Sample>> {
    if every.is_zero() {
        bail!("--sample-every must be above 0");
    }
    let mut samples = Vec::new();
    let mut at = Duration::ZERO;
    loop {
        sleep_until(start + at).await;
        let kib = resident::status_kib(pid, "VmRSS").context("the server went away")?;
        println!("rss             {:>6} s  {}", at.as_secs(), mib(kib));
        samples.push(Sample { at, kib });
        if at >= duration {
            return Ok(samples);
        }
        at = (at + every).min(duration);
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Memory after the warm-up, against the reference sample.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Flat {
    reference: Sample,
    min: u64,
    max: u64,
    low_pct: f64,
    high_pct: f64,
}

#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    TooShort,
    Drift(Flat),
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::TooShort => {
                write!(
                    f,
                    "no sample after the warm-up's reference: run longer or lower --warmup"
                )
            }
            Verdict::Drift(m) => write!(
                f,
                "not flat: after the reference {} it went from {} to {} ({:+.1} % / {:+.1} %)",
                mib(m.reference.kib),
                mib(m.min),
                mib(m.max),
                m.low_pct,
                m.high_pct
            ),
        }
    }
}

/// The reference is the first sample at or after `warmup`; every later
/// sample must be within `tolerance_pct` of it.
fn judge(samples: &[Sample], warmup: Duration, tolerance_pct: f64) -> Result<Flat, Verdict> {
    let i = samples
        .iter()
        .position(|s| s.at >= warmup)
        .ok_or(Verdict::TooShort)?;
    let reference = samples[i];
    let later = &samples[i + 1..];
    let (Some(min), Some(max)) = (
        later.iter().map(|s| s.kib).min(),
        later.iter().map(|s| s.kib).max(),
    ) else {
        return Err(Verdict::TooShort);
    };
    let pct = |kib: u64| (kib as f64 / reference.kib.max(1) as f64 - 1.0) * 100.0;
    let flat = Flat {
        reference,
        min,
        max,
        low_pct: pct(min),
        high_pct: pct(max),
    };
    if flat.low_pct.abs() <= tolerance_pct && flat.high_pct.abs() <= tolerance_pct {
        Ok(flat)
    } else {
        Err(Verdict::Drift(flat))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(kib: &[u64]) -> Vec<Sample> {
        kib.iter()
            .enumerate()
            .map(|(i, k)| Sample {
                at: Duration::from_secs(10 * i as u64),
                kib: *k,
            })
            .collect()
    }

    #[test]
    fn the_warmup_does_not_count() {
        // Growth in the first minute, flat after: the reference is at 60 s.
        let s = samples(&[
            20_000, 40_000, 50_000, 60_000, 60_000, 60_000, 60_000, 62_000, 59_000,
        ]);
        let flat = judge(&s, Duration::from_secs(60), 10.0).unwrap();
        assert_eq!(flat.reference.at, Duration::from_secs(60));
        assert_eq!((flat.min, flat.max), (59_000, 62_000));
    }

    #[test]
    fn growth_past_the_tolerance_fails() {
        let s = samples(&[
            50_000, 50_000, 50_000, 50_000, 50_000, 50_000, 50_000, 54_000, 56_000,
        ]);
        match judge(&s, Duration::from_secs(60), 10.0) {
            Err(Verdict::Drift(f)) => assert!((f.high_pct - 12.0).abs() < 1e-9),
            other => panic!("expected a drift, got {other:?}"),
        }
        // A fall counts too.
        let s = samples(&[50_000, 50_000, 44_000]);
        assert!(matches!(
            judge(&s, Duration::from_secs(10), 10.0),
            Err(Verdict::Drift(_))
        ));
    }

    #[test]
    fn nothing_after_the_reference_is_no_verdict() {
        let s = samples(&[50_000, 50_000, 50_000]);
        assert_eq!(
            judge(&s, Duration::from_secs(20), 10.0),
            Err(Verdict::TooShort)
        );
        assert_eq!(
            judge(&s, Duration::from_secs(60), 10.0),
            Err(Verdict::TooShort)
        );
    }
}
