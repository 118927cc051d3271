//! `bench`: load generator for Tessera (issue 10). See BENCHMARKS.md.

mod floor;
mod run;
mod scenario;
mod schedule;
mod stats;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::run::{Mode, Report};
use crate::scenario::Scenario;
use crate::schedule::Schedule;
use crate::stats::{fmt_us, summarise};

/// Drives a running Tessera over HTTP/1.1 keep-alive and prints
/// requests/s, latency percentiles and failures.
#[derive(Parser, Debug)]
#[command(name = "bench", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    baseline: Option<Baseline>,
    #[command(flatten)]
    load: Option<Load>,
}

#[derive(Subcommand, Debug)]
enum Baseline {
    /// Serve the floor: one route, one Redis EXISTS, 200.
    Baseline {
        #[arg(long, default_value = "127.0.0.1:9090")]
        bind: String,
        #[arg(long, default_value = "redis://127.0.0.1:6379/")]
        redis: String,
    },
}

#[derive(Args, Debug)]
struct Load {
    /// What to send (`floor` GETs --path on a `bench baseline` server).
    #[arg(value_enum)]
    scenario: Scenario,
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Path for the `floor` scenario.
    #[arg(long, default_value = "/")]
    path: String,
    /// Concurrent keep-alive connections (one request in flight each).
    #[arg(long, short = 'c', default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    connections: u16,
    /// How long to send for (humantime: 10s, 1m).
    #[arg(long, short = 'd', default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Open loop: this many requests per second on a fixed schedule,
    /// latency from each request's due time. Without it: closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Requests/s of the `floor` scenario on this machine: prints the ratio.
    #[arg(long)]
    floor: Option<f64>,
    /// Per-request timeout (a timeout counts as a transport error).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Fail (exit 1) when more than this percentage of requests fail.
    #[arg(long, default_value_t = 1.0)]
    max_fail_pct: f64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match (cli.baseline, cli.load) {
        (Some(Baseline::Baseline { bind, redis }), _) => {
            floor::serve(&bind, &redis).await.map(|()| true)
        }
        (None, Some(load)) => bench(load).await,
        (None, None) => Err(anyhow::anyhow!(
            "give a scenario or `baseline` (see --help)"
        )),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `Ok(false)` when the run is not a result (too many failures).
async fn bench(load: Load) -> Result<bool> {
    let mode = match load.rate {
        None => Mode::Closed,
        Some(rate) => match Schedule::new(rate, load.duration) {
            Some(s) => Mode::Open(s),
            None => bail!("--rate must be a positive number"),
        },
    };
    let workers = scenario::prepare(
        load.scenario,
        &load.url,
        &load.path,
        usize::from(load.connections),
        load.timeout,
    )
    .await?;
    let report = run::run(workers, mode, load.duration).await;
    Ok(print(&load, mode, report))
}

fn print(load: &Load, mode: Mode, mut r: Report) -> bool {
    let t = &mut r.tally;
    let secs = r.elapsed.as_secs_f64();
    let rps = if secs > 0.0 {
        t.total() as f64 / secs
    } else {
        0.0
    };
    println!("scenario        {}", load.scenario.name());
    match mode {
        Mode::Closed => println!(
            "mode            closed loop, {} connections, {}",
            load.connections,
            humantime::format_duration(load.duration)
        ),
        Mode::Open(s) => println!(
            "mode            open loop, {} req/s target ({} scheduled), {} connections, {}",
            load.rate.unwrap_or_default(),
            s.len(),
            load.connections,
            humantime::format_duration(load.duration)
        ),
    }
    println!("requests        {} in {:.3} s", t.total(), secs);
    println!("requests/s      {rps:.1}");
    match summarise(&mut t.latencies_us) {
        Some(s) => println!(
            "latency         p50 {}  p99 {}  p99.9 {}  max {}",
            fmt_us(s.p50),
            fmt_us(s.p99),
            fmt_us(s.p999),
            fmt_us(s.max)
        ),
        None => println!("latency         (no answers)"),
    }
    let statuses: Vec<String> = t.statuses.iter().map(|(c, n)| format!("{c}x{n}")).collect();
    println!(
        "non-2xx         {}{}",
        t.non_2xx,
        if statuses.is_empty() {
            String::new()
        } else {
            format!(" ({})", statuses.join(", "))
        }
    );
    println!("transport errs  {}", t.transport);
    if t.bad_body > 0 {
        println!("bad 2xx bodies  {}", t.bad_body);
    }
    if r.restarts > 0 {
        println!("chain restarts  {}", r.restarts);
    }
    if let Some(floor) = load.floor.filter(|f| *f > 0.0) {
        println!(
            "ratio to floor  {:.3} (floor {floor:.1} req/s)",
            rps / floor
        );
    }
    if let Mode::Open(_) = mode
        && r.elapsed > load.duration + load.duration / 10
    {
        println!(
            "behind schedule the run took {:.3} s for {} of schedule: the server cannot sustain --rate {}",
            secs,
            humantime::format_duration(load.duration),
            load.rate.unwrap_or_default()
        );
    }
    let ratio = t.failure_ratio();
    if ratio * 100.0 > load.max_fail_pct {
        eprintln!(
            "bench: {:.2}% of requests failed (limit {}%): not a result",
            ratio * 100.0,
            load.max_fail_pct
        );
        return false;
    }
    true
}
