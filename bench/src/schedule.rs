//! The open-loop schedule: request `i` is due at `i / rate` seconds after
//! the start, whatever became of the earlier ones. Latency is measured
//! from that due time, so a stalled server is charged for the requests it
//! kept from being sent (no coordinated omission).

use std::time::Duration;

/// Fixed-interval schedule of `rate` requests per second for `duration`.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    rate: f64,
    duration: Duration,
}

impl Schedule {
    /// `None` unless `rate` is finite and positive.
    pub fn new(rate: f64, duration: Duration) -> Option<Self> {
        (rate.is_finite() && rate > 0.0).then_some(Self { rate, duration })
    }

    /// Due time of request `i` (from 0), as an offset from the start;
    /// `None` once it falls at or past the end of the run.
    pub fn due(&self, i: u64) -> Option<Duration> {
        let secs = i as f64 / self.rate;
        let at = Duration::try_from_secs_f64(secs).ok()?;
        (at < self.duration).then_some(at)
    }

    /// How many requests the schedule holds.
    pub fn len(&self) -> u64 {
        // ceil(rate * duration), minus one if the last lands exactly on the end.
        let n = (self.rate * self.duration.as_secs_f64()).ceil() as u64;
        match n.checked_sub(1) {
            Some(last) if self.due(last).is_none() => last,
            _ => n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_rates() {
        let d = Duration::from_secs(1);
        assert!(Schedule::new(0.0, d).is_none());
        assert!(Schedule::new(-5.0, d).is_none());
        assert!(Schedule::new(f64::NAN, d).is_none());
        assert!(Schedule::new(f64::INFINITY, d).is_none());
    }

    #[test]
    fn fixed_intervals() {
        let s = Schedule::new(100.0, Duration::from_secs(1)).unwrap();
        assert_eq!(s.due(0), Some(Duration::ZERO));
        assert_eq!(s.due(1), Some(Duration::from_millis(10)));
        assert_eq!(s.due(50), Some(Duration::from_millis(500)));
        assert_eq!(s.due(99), Some(Duration::from_millis(990)));
        assert_eq!(s.due(100), None, "the end of the run is exclusive");
        assert_eq!(s.len(), 100);
    }

    #[test]
    fn intervals_do_not_drift() {
        // 3 req/s: due times are i/3 s exactly, not an accumulated 333 ms.
        let s = Schedule::new(3.0, Duration::from_secs(10)).unwrap();
        let d = s.due(29).unwrap();
        assert!((d.as_secs_f64() - 29.0 / 3.0).abs() < 1e-9);
        assert_eq!(s.len(), 30);
        assert_eq!(s.due(30), None);
    }

    #[test]
    fn len_matches_due() {
        for (rate, ms) in [
            (1.0, 999),
            (1.0, 1000),
            (7.5, 3000),
            (1000.0, 250),
            (0.5, 10_000),
        ] {
            let s = Schedule::new(rate, Duration::from_millis(ms)).unwrap();
            let n = s.len();
            if n > 0 {
                assert!(s.due(n - 1).is_some(), "rate {rate} ms {ms}");
            }
            assert!(s.due(n).is_none(), "rate {rate} ms {ms}");
        }
    }

    #[test]
    fn fractional_rates() {
        let s = Schedule::new(0.5, Duration::from_secs(5)).unwrap();
        assert_eq!(s.due(1), Some(Duration::from_secs(2)));
        assert_eq!(s.due(2), Some(Duration::from_secs(4)));
        assert_eq!(s.due(3), None);
        assert_eq!(s.len(), 3);
    }
}
