//! `slow-clients`: what connections that hold partial request heads cost
//! everyone else (issue 18). Two phases of `-d` each:
//!
//! 1. verify alone: `GET /auth/verify` open loop at `--rate` on the `-c`
//!    connections (as the `verify` scenario);
//! 2. the same verify schedule while `--slow-connections` more connections
//!    each send part of a request head and go quiet; when the server closes
//!    one (`TESSERA_HEADER_TIMEOUT`), it reconnects and does it again, so the
//!    pressure lasts the whole phase.
//!
//! Then verify's p99 under the slow clients over its p99 alone, and how
//! often the server closed the slow connections.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::Load;
use crate::mixed::DEFAULT_RATE;
use crate::report;
use crate::run::{self, Mode};
use crate::scenario::{self, Scenario};
use crate::schedule::Schedule;

/// A head that never ends: the request line and a header cut short.
const PARTIAL_HEAD: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: bench\r\nX-Slow: ";

#[derive(Default)]
struct Holders {
    /// Partial heads sent (connections opened and written).
    opened: AtomicU64,
    /// Closed by the server (EOF or reset while holding).
    closed: AtomicU64,
    /// Connects or writes that failed (backlog full, refused).
    failed: AtomicU64,
}

/// `host:port` of an `http://` base URL.
fn authority(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("--url must be http://host:port"))?;
    Ok(rest.split('/').next().unwrap_or(rest).to_owned())
}

/// One slow client until `end`: hold a partial head, reopen when closed.
async fn hold(addr: String, end: Instant, h: Arc<Holders>) {
    let mut buf = [0u8; 1024];
    while Instant::now() < end {
        let opened = async {
            let mut s = TcpStream::connect(&addr).await?;
            s.write_all(PARTIAL_HEAD).await?;
            Ok::<_, std::io::Error>(s)
        };
        let Ok(Ok(mut s)) = tokio::time::timeout_at(end.into(), opened).await else {
            h.failed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        h.opened.fetch_add(1, Ordering::Relaxed);
        loop {
            match tokio::time::timeout_at(end.into(), s.read(&mut buf)).await {
                Err(_) => return,
                Ok(Ok(0)) | Ok(Err(_)) => {
                    h.closed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(Ok(_)) => {}
            }
        }
    }
}

/// `Ok(false)` when verify failed too often in either phase.
pub async fn bench(load: &Load) -> Result<bool> {
    let rate = load.rate.unwrap_or(DEFAULT_RATE);
    let Some(schedule) = Schedule::new(rate, load.duration) else {
        bail!("--rate must be a positive number");
    };
    let addr = authority(&load.url)?;
    let verify = scenario::prepare(
        Scenario::Verify,
        &load.url,
        &load.path,
        usize::from(load.connections),
        load.timeout,
        &scenario::Addresses::spread(1, load.addresses),
    )
    .await?;
    let d = load.duration;
    println!("scenario        slow-clients");
    println!(
        "mode            verify open loop, {rate} req/s target, {} connections; {} slow connections \
         holding partial heads in phase 2; 2 phases of {}",
        load.connections,
        load.slow_connections,
        humantime::format_duration(d)
    );

    let mut alone = run::run(verify.clone(), Mode::Open(schedule), d).await;
    let alone_fig = report::phase("verify alone (phase 1)", &mut alone, d, rate);

    let holders = Arc::new(Holders::default());
    let end = Instant::now() + d + Duration::from_secs(1);
    let slow: Vec<_> = (0..load.slow_connections)
        .map(|_| tokio::spawn(hold(addr.clone(), end, holders.clone())))
        .collect();
    // Let the slow connections open before verify's schedule starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut under = run::run(verify, Mode::Open(schedule), d).await;
    for t in slow {
        let _ = t.await;
    }
    let under_fig = report::phase("verify under slow clients (phase 2)", &mut under, d, rate);
    println!("== slow connections (phase 2)");
    println!(
        "partial heads   {} sent, {} closed by the server, {} connects failed",
        holders.opened.load(Ordering::Relaxed),
        holders.closed.load(Ordering::Relaxed),
        holders.failed.load(Ordering::Relaxed)
    );
    println!("== verify p99 under slow clients / alone");
    report::p99_change(
        "ratio",
        alone_fig.latency,
        under_fig.latency,
        "slow clients",
    );
    let verdicts = [
        report::acceptable("verify (alone)", &alone.tally, load.max_fail_pct),
        report::acceptable(
            "verify (under slow clients)",
            &under.tally,
            load.max_fail_pct,
        ),
    ];
    Ok(verdicts.iter().all(|ok| *ok))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_of_the_base_url() {
        assert_eq!(
            authority("http://127.0.0.1:8080").unwrap(),
            "127.0.0.1:8080"
        );
        assert_eq!(authority("http://h:1/x").unwrap(), "h:1");
        assert!(authority("https://h:1").is_err());
    }
}
