//! `mixed`: verify at a fixed rate under a concurrent login storm, verify's
//! latency reported separately (issue 10). Two phases of `-d` each:
//!
//! 1. verify alone: `GET /auth/verify` open loop at `--rate` on the `-c`
//!    connections (as the `verify` scenario);
//! 2. the same verify schedule again, while `--storm-connections` more
//!    connections run closed-loop logins, one account each (as `login`).
//!
//! Then the ratio of verify's p99 under the storm to its p99 alone; the
//! target is at most 3.

use anyhow::{Result, bail};

use crate::Load;
use crate::report;
use crate::run::{self, Mode};
use crate::scenario::{self, Scenario};
use crate::schedule::Schedule;

/// Verify's `--rate` when none is given.
pub const DEFAULT_RATE: f64 = 2000.0;
/// Verify's p99 under the storm should stay within this factor of alone.
pub const TARGET_RATIO: f64 = 3.0;

/// `Ok(false)` when either stream of either phase failed too often.
pub async fn bench(load: &Load) -> Result<bool> {
    let rate = load.rate.unwrap_or(DEFAULT_RATE);
    let Some(schedule) = Schedule::new(rate, load.duration) else {
        bail!("--rate must be a positive number");
    };
    let (connections, storm_connections) = (
        usize::from(load.connections),
        usize::from(load.storm_connections),
    );
    // All setup (registrations are Argon2-bound) before phase 1.
    let storm = scenario::prepare(
        Scenario::Login,
        &load.url,
        &load.path,
        storm_connections,
        load.timeout,
        &scenario::Addresses::spread(1, load.addresses),
    )
    .await?;
    let verify = scenario::prepare(
        Scenario::Verify,
        &load.url,
        &load.path,
        connections,
        load.timeout,
        &scenario::Addresses::default(),
    )
    .await?;

    let d = load.duration;
    println!("scenario        mixed");
    println!(
        "mode            verify open loop, {rate} req/s target ({} scheduled per phase), {} connections; \
         login storm closed loop, {} connections; 2 phases of {}",
        schedule.len(),
        connections,
        storm_connections,
        humantime::format_duration(d)
    );

    // Clones share each connection's client, so phase 2 reuses phase 1's
    // keep-alive connections.
    let mut alone = run::run(verify.clone(), Mode::Open(schedule), d).await;
    let alone_fig = report::phase("verify alone (phase 1)", &mut alone, d, rate);
    let (mut under, mut logins) = run::beside(verify, schedule, storm, d).await;
    let under_fig = report::phase("verify under login storm (phase 2)", &mut under, d, rate);
    println!("== login storm (phase 2)");
    report::stream(&mut logins);

    println!("== verify p99 under storm / alone");
    if let Some(ratio) = report::p99_change("ratio", alone_fig.latency, under_fig.latency, "storm")
    {
        let verdict = if ratio <= TARGET_RATIO {
            "met"
        } else {
            "missed"
        };
        println!("target          <= {TARGET_RATIO}: {verdict}");
    }

    // Every verdict is printed, not only the first.
    let verdicts = [
        report::acceptable("verify (alone)", &alone.tally, load.max_fail_pct),
        report::acceptable("verify (under storm)", &under.tally, load.max_fail_pct),
        report::acceptable("login storm", &logins.tally, load.max_fail_pct),
    ];
    Ok(verdicts.iter().all(|ok| *ok))
}
