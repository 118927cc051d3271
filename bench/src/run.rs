//! The driver: one task per connection, closed loop (send, await, repeat:
//! wrk-like, measures capacity) or open loop (requests due on a fixed
//! schedule, shared by all connections; latency from the due time).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::{Instant, sleep_until};

use crate::scenario::Worker;
use crate::schedule::Schedule;
use crate::stats::Tally;

#[derive(Clone, Copy, Debug)]
pub enum Mode {
    Closed,
    Open(Schedule),
}

pub struct Report {
    pub tally: Tally,
    /// From the common start to the last answer.
    pub elapsed: Duration,
    pub restarts: u64,
}

/// A common start a little ahead, so every task begins together.
pub fn start_soon() -> Instant {
    Instant::now() + Duration::from_millis(50)
}

pub async fn run(workers: Vec<Worker>, mode: Mode, duration: Duration) -> Report {
    run_from(workers, mode, start_soon(), duration).await
}

/// `run` from a given `start`: two streams given the same start (`mixed`)
/// share one clock.
pub async fn run_from(
    workers: Vec<Worker>,
    mode: Mode,
    start: Instant,
    duration: Duration,
) -> Report {
    let end = start + duration;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for mut w in workers {
        let next = next.clone();
        tasks.spawn(async move {
            let mut tally = Tally::default();
            sleep_until(start).await;
            let mut last = start;
            match mode {
                Mode::Closed => loop {
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    let outcome = w.step().await;
                    last = Instant::now();
                    tally.record(outcome, last - t0);
                },
                Mode::Open(schedule) => {
                    while let Some(offset) = schedule.due(next.fetch_add(1, Ordering::Relaxed)) {
                        let due = start + offset;
                        sleep_until(due).await;
                        let outcome = w.step().await;
                        last = Instant::now();
                        tally.record(outcome, last.saturating_duration_since(due));
                    }
                }
            }
            (tally, last, w.restarts())
        });
    }
    let mut tally = Tally::default();
    let mut last = start;
    let mut restarts = 0;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((t, l, r)) => {
                tally.merge(t);
                last = last.max(l);
                restarts += r;
            }
            // A worker that panicked is a bug in the tool, not an answer;
            // its requests are lost, so say so.
            Err(e) => eprintln!("bench: a connection task failed: {e}"),
        }
    }
    Report {
        tally,
        elapsed: last.saturating_duration_since(start),
        restarts,
    }
}

/// Phase 2 of the two-phase scenarios: `probe` on `schedule` while `load`
/// runs closed loop beside it, both from one start, for `duration`.
pub async fn beside(
    probe: Vec<Worker>,
    schedule: Schedule,
    load: Vec<Worker>,
    duration: Duration,
) -> (Report, Report) {
    let start = start_soon();
    tokio::join!(
        run_from(probe, Mode::Open(schedule), start, duration),
        run_from(load, Mode::Closed, start, duration),
    )
}
