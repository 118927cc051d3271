//! `bench`: load generator for Tessera (issue 10). See BENCHMARKS.md.

mod ceiling;
mod flood;
mod floor;
mod mail;
mod mixed;
mod propagation;
mod report;
mod resident;
mod run;
mod scenario;
mod schedule;
mod sink;
mod slow;
mod soak;
mod stats;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::run::{Mode, Report};
use crate::scenario::Scenario;
use crate::schedule::Schedule;

/// Drives a running Tessera over HTTP/1.1 keep-alive and prints
/// requests/s, latency percentiles and failures.
#[derive(Parser, Debug)]
#[command(name = "bench", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    tool: Option<Tool>,
    #[command(flatten)]
    load: Option<Load>,
}

#[derive(Subcommand, Debug)]
enum Tool {
    /// Serve the floor: one route, one Redis EXISTS, 200 (with
    /// --no-redis: 200 and nothing else, the HTTP-only floor).
    Baseline {
        #[arg(long, default_value = "127.0.0.1:9090")]
        bind: String,
        #[arg(long, default_value = "redis://127.0.0.1:6379/")]
        redis: String,
        /// Answer 200 without any Redis call.
        #[arg(long)]
        no_redis: bool,
    },
    /// Log out on replica A, poll verify on replica B until it refuses:
    /// the delay of a revocation across replicas (issue 22).
    Propagation(propagation::Propagation),
    /// Mixed traffic against one replica for a long time, its resident
    /// memory sampled: no failure, memory flat after the warm-up.
    Soak(soak::Soak),
    /// Time argon2id hashes at the server's cost: the login ceiling.
    Argon2 {
        #[arg(long, env = "TESSERA_ARGON2_MEMORY_KIB", default_value_t = 19456)]
        memory_kib: u32,
        #[arg(long, env = "TESSERA_ARGON2_ITERATIONS", default_value_t = 2)]
        iterations: u32,
        #[arg(long, env = "TESSERA_ARGON2_PARALLELISM", default_value_t = 1)]
        parallelism: u32,
        /// Hashes per thread.
        #[arg(long, default_value_t = 20)]
        hashes: u32,
    },
    /// Serve SMTP on --bind: accept every message, keep none (a peer for
    /// the service's mail sender in `register` and `forgot`).
    SmtpSink {
        #[arg(long, default_value = "127.0.0.1:2525")]
        bind: String,
    },
}

#[derive(Args, Debug)]
struct Load {
    /// What to send (`floor` GETs --path on a `bench baseline` server;
    /// `mixed` is verify at --rate, alone and then under a login storm).
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
    /// latency from each request's due time. Without it: closed loop
    /// (`mixed`: verify's rate, default 2000).
    #[arg(long)]
    rate: Option<f64>,
    /// `mixed`: connections of the login storm (closed loop, one account
    /// each), besides the -c verify connections.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    storm_connections: u16,
    /// `slow-clients`: connections holding partial request heads in phase 2.
    #[arg(long, default_value_t = 1000)]
    slow_connections: u32,
    /// Requests/s of the `floor` scenario on this machine: prints the ratio.
    #[arg(long)]
    floor: Option<f64>,
    /// Requests/s of the `floor` scenario against `bench baseline
    /// --no-redis`: prints the ratio to the HTTP-only floor.
    #[arg(long)]
    http_floor: Option<f64>,
    /// The `ceiling` of `bench argon2` (hashes/s): prints login's ratio to it.
    #[arg(long)]
    ceiling: Option<f64>,
    /// `login`, `mixed`'s storm, `register`, `forgot`: spread the requests over this many client
    /// addresses in `X-Forwarded-For` (the server must run with
    /// `TESSERA_TRUST_FORWARDED=true`); 0: no header, all from this host.
    #[arg(long, default_value_t = 0)]
    addresses: u32,
    /// `login-flood`: the addresses the flood comes from.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    flood_addresses: u16,
    /// `register`, `forgot`: how long to wait after a phase for the
    /// service's mail sender to empty the outbox (its throughput is read
    /// meanwhile); the run goes on either way.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    drain_limit: Duration,
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
    let result = match (cli.tool, cli.load) {
        (
            Some(Tool::Baseline {
                bind,
                redis,
                no_redis,
            }),
            _,
        ) => floor::serve(&bind, (!no_redis).then_some(redis.as_str()))
            .await
            .map(|()| true),
        (Some(Tool::Propagation(p)), _) => propagation::bench(&p).await,
        (Some(Tool::Soak(s)), _) => soak::bench(&s).await,
        (
            Some(Tool::Argon2 {
                memory_kib,
                iterations,
                parallelism,
                hashes,
            }),
            _,
        ) => ceiling::run(
            &ceiling::Cost {
                memory_kib,
                iterations,
                parallelism,
            },
            hashes,
        )
        .map(|()| true),
        (Some(Tool::SmtpSink { bind }), _) => sink::serve(&bind).await.map(|()| true),
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
    if load.scenario == Scenario::Mixed {
        return mixed::bench(&load).await;
    }
    if load.scenario == Scenario::LoginFlood {
        return flood::bench(&load).await;
    }
    if load.scenario == Scenario::SlowClients {
        return slow::bench(&load).await;
    }
    if load.scenario == Scenario::Register {
        return mail::register(&load).await;
    }
    if load.scenario == Scenario::Forgot {
        return mail::forgot(&load).await;
    }
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
        &scenario::Addresses::spread(1, load.addresses),
    )
    .await?;
    let report = run::run(workers, mode, load.duration).await;
    Ok(print(&load, mode, report))
}

fn print(load: &Load, mode: Mode, mut r: Report) -> bool {
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
    let figures = report::stream(&mut r);
    if let Some(floor) = load.floor.filter(|f| *f > 0.0) {
        println!(
            "ratio to floor  {:.3} (floor {floor:.1} req/s)",
            figures.rps / floor
        );
    }
    if let Some(floor) = load.http_floor.filter(|f| *f > 0.0) {
        println!(
            "ratio to HTTP-only floor {:.3} (floor {floor:.1} req/s)",
            figures.rps / floor
        );
    }
    if let Some(ceiling) = load.ceiling.filter(|c| *c > 0.0) {
        println!(
            "ratio to argon2 ceiling {:.3} (ceiling {ceiling:.1} hashes/s)",
            figures.rps / ceiling
        );
    }
    if let Mode::Open(_) = mode {
        report::behind_schedule(&r, load.duration, load.rate.unwrap_or_default());
    }
    report::acceptable(load.scenario.name(), &r.tally, load.max_fail_pct)
}
