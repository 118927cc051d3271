//! Printing a run: the figures of one stream of requests and the verdicts
//! on it (behind schedule, too many failures). Shared by the one-scenario
//! report (`main.rs`) and `mixed`.

use std::time::Duration;

use crate::run::Report;
use crate::stats::{Summary, Tally, fmt_us, summarise};

/// What a stream's report gives to the lines after it.
pub struct Figures {
    pub rps: f64,
    pub latency: Option<Summary>,
}

/// Prints requests, requests/s, latency, failures (and chain restarts) of
/// `r`; sorts its latency samples.
pub fn stream(r: &mut Report) -> Figures {
    let t = &mut r.tally;
    let secs = r.elapsed.as_secs_f64();
    let rps = if secs > 0.0 {
        t.total() as f64 / secs
    } else {
        0.0
    };
    println!("requests        {} in {:.3} s", t.total(), secs);
    println!("requests/s      {rps:.1}");
    let latency = summarise(&mut t.latencies_us);
    match latency {
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
    Figures { rps, latency }
}

/// One phase of a two-phase run: its title, its figures and whether it
/// kept to the schedule of `rate` over `duration`.
pub fn phase(title: &str, r: &mut Report, duration: Duration, rate: f64) -> Figures {
    println!("== {title}");
    let figures = stream(r);
    behind_schedule(r, duration, rate);
    figures
}

/// The open-loop line after a stream that overran its schedule by more
/// than 10 %.
pub fn behind_schedule(r: &Report, duration: Duration, rate: f64) {
    if r.elapsed > duration + duration / 10 {
        println!(
            "behind schedule the run took {:.3} s for {} of schedule: the server cannot sustain --rate {}",
            r.elapsed.as_secs_f64(),
            humantime::format_duration(duration),
            rate
        );
    }
}

/// `false` (and says so) when more than `max_fail_pct` % of `what`'s
/// requests failed: then the run is not a result.
pub fn acceptable(what: &str, t: &Tally, max_fail_pct: f64) -> bool {
    let ratio = t.failure_ratio();
    if ratio * 100.0 > max_fail_pct {
        eprintln!(
            "bench: {:.2}% of {what} requests failed (limit {max_fail_pct}%): not a result",
            ratio * 100.0,
        );
        return false;
    }
    true
}

/// Prints `label` p99 under a load over p99 alone (`under` names the load)
/// and returns the ratio; `None` (also printed) unless both phases have
/// latencies.
pub fn p99_change(
    label: &str,
    alone: Option<Summary>,
    loaded: Option<Summary>,
    under: &str,
) -> Option<f64> {
    let ratio = p99_ratio(alone, loaded);
    match (ratio, alone, loaded) {
        (Some(ratio), Some(a), Some(u)) => println!(
            "{label:<15} {ratio:.2} (p99 {} under {under}, {} alone)",
            fmt_us(u.p99),
            fmt_us(a.p99)
        ),
        _ => println!("{label:<15} (no latencies in a phase)"),
    }
    ratio
}

/// p99 under a load over p99 alone; `None` unless both phases have
/// latencies (and alone is above 0 µs).
pub fn p99_ratio(alone: Option<Summary>, loaded: Option<Summary>) -> Option<f64> {
    let (alone, loaded) = (alone?, loaded?);
    (alone.p99 > 0).then(|| f64::from(loaded.p99) / f64::from(alone.p99))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p99(us: u32) -> Option<Summary> {
        Some(Summary {
            p50: us / 2,
            p99: us,
            p999: us,
            max: us,
        })
    }

    #[test]
    fn ratio_of_p99s() {
        let r = p99_ratio(p99(2000), p99(5000)).unwrap();
        assert!((r - 2.5).abs() < 1e-9);
        assert!(p99_ratio(p99(1000), p99(500)).unwrap() < 1.0);
    }

    #[test]
    fn no_ratio_without_both_phases() {
        assert_eq!(p99_ratio(None, p99(5)), None);
        assert_eq!(p99_ratio(p99(5), None), None);
        assert_eq!(p99_ratio(p99(0), p99(5)), None);
    }
}
