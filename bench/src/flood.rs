//! `login-flood`: another address's logins while a few addresses flood
//! logins with correct passwords of their own accounts (issue 18, item 3).
//! The server must run with `TESSERA_TRUST_FORWARDED=true` (every request
//! names its address in `X-Forwarded-For`) and, for the setup's
//! registrations, `TESSERA_REGISTER_PER_IP` at 0 or above the accounts per
//! address. Two phases of `-d` each:
//!
//! 1. the bystander alone: `POST /auth/login` open loop at `--rate` on the
//!    `-c` connections, one account each, all from one address;
//! 2. the same schedule again, while `--storm-connections` connections,
//!    spread over `--flood-addresses` other addresses (one account each),
//!    run closed-loop logins.
//!
//! Then the bystander's p99 under the flood over its p99 alone, and the
//! flood's answers (mostly 429 beyond each address's fair share of
//! hashing). Only the bystander's failures decide the exit status: the
//! flood's 429s are the point.

use anyhow::{Result, bail};

use crate::Load;
use crate::report;
use crate::run::{self, Mode};
use crate::scenario::{self, Addresses, Scenario};
use crate::schedule::Schedule;

/// The bystander's `--rate` when none is given: a trickle of logins.
pub const DEFAULT_RATE: f64 = 20.0;
/// The bystander's address (TEST-NET-1), apart from the flood's.
pub const BYSTANDER: &str = "192.0.2.1";

pub async fn bench(load: &Load) -> Result<bool> {
    let rate = load.rate.unwrap_or(DEFAULT_RATE);
    let Some(schedule) = Schedule::new(rate, load.duration) else {
        bail!("--rate must be a positive number");
    };
    let (connections, storm_connections) = (
        usize::from(load.connections),
        usize::from(load.storm_connections),
    );
    let flooders = Addresses::spread(1, u32::from(load.flood_addresses));
    let flood = scenario::prepare(
        Scenario::Login,
        &load.url,
        &load.path,
        storm_connections,
        load.timeout,
        &flooders,
    )
    .await?;
    let bystander = scenario::prepare(
        Scenario::Login,
        &load.url,
        &load.path,
        connections,
        load.timeout,
        &Addresses::one(BYSTANDER),
    )
    .await?;

    let d = load.duration;
    println!("scenario        login-flood");
    println!(
        "mode            bystander logins open loop, {rate} req/s target ({} scheduled per phase), \
         {connections} connections from {BYSTANDER}; flood closed loop, {storm_connections} \
         connections from {} addresses; 2 phases of {}",
        schedule.len(),
        flooders.len(),
        humantime::format_duration(d)
    );

    let mut alone = run::run(bystander.clone(), Mode::Open(schedule), d).await;
    let alone_fig = report::phase("bystander logins alone (phase 1)", &mut alone, d, rate);
    let (mut under, mut flooded) = run::beside(bystander, schedule, flood, d).await;
    let under_fig = report::phase(
        "bystander logins under the flood (phase 2)",
        &mut under,
        d,
        rate,
    );
    println!("== flood (phase 2)");
    report::stream(&mut flooded);

    println!("== bystander");
    println!(
        "succeeded       {} of {} alone, {} of {} under the flood",
        alone.tally.ok,
        alone.tally.total(),
        under.tally.ok,
        under.tally.total()
    );
    report::p99_change(
        "p99 ratio",
        alone_fig.latency,
        under_fig.latency,
        "the flood",
    );
    let verdicts = [
        report::acceptable("bystander (alone)", &alone.tally, load.max_fail_pct),
        report::acceptable("bystander (under flood)", &under.tally, load.max_fail_pct),
    ];
    Ok(verdicts.iter().all(|ok| *ok))
}
