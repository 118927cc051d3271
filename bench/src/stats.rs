//! Latency samples and their summary: every request's duration in
//! microseconds, sorted once at the end (fine for a first increment; a
//! 10 s run at 100k req/s is 4 MB of samples).

use std::time::Duration;

/// What became of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx answer whose body the scenario could use.
    Ok,
    /// An answer outside 2xx (status code).
    Status(u16),
    /// A 2xx answer whose body the scenario could not use (e.g. a refresh
    /// answer without `refresh_token`).
    BadBody,
    /// No answer: connect, write, read or timeout failure.
    Transport,
}

/// Per-worker tallies, merged at the end of a run.
#[derive(Default, Debug, Clone)]
pub struct Tally {
    /// Latency of every finished request (any outcome but `Transport`), µs.
    pub latencies_us: Vec<u32>,
    pub ok: u64,
    pub non_2xx: u64,
    pub bad_body: u64,
    pub transport: u64,
    /// First few distinct non-2xx statuses, for the report.
    pub statuses: Vec<(u16, u64)>,
}

impl Tally {
    pub fn record(&mut self, outcome: Outcome, latency: Duration) {
        if outcome != Outcome::Transport {
            self.latencies_us.push(to_us(latency));
        }
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::Status(code) => {
                self.non_2xx += 1;
                match self.statuses.iter_mut().find(|(c, _)| *c == code) {
                    Some((_, n)) => *n += 1,
                    None => self.statuses.push((code, 1)),
                }
            }
            Outcome::BadBody => self.bad_body += 1,
            Outcome::Transport => self.transport += 1,
        }
    }

    pub fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        self.ok += other.ok;
        self.non_2xx += other.non_2xx;
        self.bad_body += other.bad_body;
        self.transport += other.transport;
        for (code, n) in other.statuses {
            match self.statuses.iter_mut().find(|(c, _)| *c == code) {
                Some((_, m)) => *m += n,
                None => self.statuses.push((code, n)),
            }
        }
    }

    /// Requests sent, whatever became of them.
    pub fn total(&self) -> u64 {
        self.ok + self.non_2xx + self.bad_body + self.transport
    }

    /// Requests that did not end in a usable 2xx answer.
    pub fn failed(&self) -> u64 {
        self.non_2xx + self.bad_body + self.transport
    }

    /// Share of failed requests, 0.0..=1.0 (1.0 when nothing was sent).
    pub fn failure_ratio(&self) -> f64 {
        match self.total() {
            0 => 1.0,
            n => self.failed() as f64 / n as f64,
        }
    }
}

/// Saturating microseconds.
pub fn to_us(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// Nearest-rank percentile of `sorted` (ascending), `q` in 0.0..=1.0:
/// the smallest sample such that at least `q` of all samples are <= it.
/// `None` for no samples.
pub fn percentile(sorted: &[u32], q: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let q = q.clamp(0.0, 1.0);
    let rank = (q * sorted.len() as f64).ceil() as usize;
    let idx = rank.saturating_sub(1).min(sorted.len() - 1);
    Some(sorted[idx])
}

/// Latency summary of a run, µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub p50: u32,
    pub p99: u32,
    pub p999: u32,
    pub max: u32,
}

/// Sorts `samples` in place and summarises them.
pub fn summarise(samples: &mut [u32]) -> Option<Summary> {
    samples.sort_unstable();
    Some(Summary {
        p50: percentile(samples, 0.50)?,
        p99: percentile(samples, 0.99)?,
        p999: percentile(samples, 0.999)?,
        max: *samples.last()?,
    })
}

/// `1234` µs -> `"1.234 ms"`.
pub fn fmt_us(us: u32) -> String {
    format!("{}.{:03} ms", us / 1000, us % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_of_nothing_is_none() {
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(summarise(&mut []), None);
    }

    #[test]
    fn percentile_of_one_sample_is_that_sample() {
        for q in [0.0, 0.5, 0.99, 0.999, 1.0] {
            assert_eq!(percentile(&[42], q), Some(42));
        }
    }

    #[test]
    fn nearest_rank_on_1_to_100() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&v, 0.01), Some(1));
        assert_eq!(percentile(&v, 0.5), Some(50));
        assert_eq!(percentile(&v, 0.51), Some(51));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&v, 0.999), Some(100));
        assert_eq!(percentile(&v, 1.0), Some(100));
    }

    #[test]
    fn p999_needs_a_thousand_samples_to_differ_from_max() {
        let v: Vec<u32> = (1..=1000).collect();
        assert_eq!(percentile(&v, 0.999), Some(999));
        assert_eq!(percentile(&v, 0.99), Some(990));
        let v: Vec<u32> = (1..=10_000).collect();
        assert_eq!(percentile(&v, 0.999), Some(9990));
    }

    #[test]
    fn out_of_range_quantiles_clamp() {
        let v = [1, 2, 3];
        assert_eq!(percentile(&v, -1.0), Some(1));
        assert_eq!(percentile(&v, 2.0), Some(3));
    }

    #[test]
    fn summarise_sorts_first() {
        let mut v: Vec<u32> = (1..=1000).rev().collect();
        let s = summarise(&mut v).unwrap();
        assert_eq!(
            s,
            Summary {
                p50: 500,
                p99: 990,
                p999: 999,
                max: 1000
            }
        );
    }

    #[test]
    fn tally_counts_and_merges() {
        let mut a = Tally::default();
        a.record(Outcome::Ok, Duration::from_micros(10));
        a.record(Outcome::Status(429), Duration::from_micros(20));
        a.record(Outcome::Transport, Duration::from_secs(30));
        let mut b = Tally::default();
        b.record(Outcome::Status(429), Duration::from_micros(5));
        b.record(Outcome::BadBody, Duration::from_micros(5));
        a.merge(b);
        assert_eq!(a.total(), 5);
        assert_eq!(a.failed(), 4);
        assert_eq!(a.latencies_us.len(), 4, "transport errors have no latency");
        assert_eq!(a.statuses, vec![(429, 2)]);
        assert!((a.failure_ratio() - 0.8).abs() < 1e-9);
        assert_eq!(Tally::default().failure_ratio(), 1.0);
    }

    #[test]
    fn formats_microseconds_as_milliseconds() {
        assert_eq!(fmt_us(0), "0.000 ms");
        assert_eq!(fmt_us(1234), "1.234 ms");
        assert_eq!(fmt_us(56), "0.056 ms");
    }
}
