//! A receiver's pace: bytes passed on over the last minute, which `status`
//! shows and divides what is left by.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How far back the rate looks.
const WINDOW: Duration = Duration::from_secs(60);

/// Running totals of bytes passed on, sampled at each progress report.
#[derive(Default)]
pub(crate) struct RateMeter {
    /// `(when, total bytes so far)`, oldest first, one sample at or before
    /// the window's start kept as its base.
    samples: Mutex<VecDeque<(Instant, u64)>>,
}

impl RateMeter {
    /// Adds `bytes` passed on since the last call; returns the bytes a
    /// second over the last minute (0 until a second has passed).
    pub(crate) fn add(&self, bytes: u64) -> u64 {
        self.add_at(Instant::now(), bytes)
    }

    fn add_at(&self, now: Instant, bytes: u64) -> u64 {
        let mut samples = self.samples.lock().expect("rate samples");
        let total = samples.back().map_or(0, |&(_, total)| total) + bytes;
        samples.push_back((now, total));
        while samples
            .get(1)
            .is_some_and(|&(at, _)| now.duration_since(at) >= WINDOW)
        {
            samples.pop_front();
        }
        let (since, base) = samples[0];
        let seconds = now.duration_since(since).as_secs_f64();
        if seconds < 1.0 {
            return 0;
        }
        ((total - base) as f64 / seconds) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_covers_the_last_minute_only() {
        let meter = RateMeter::default();
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        assert_eq!(meter.add_at(at(0), 0), 0);
        assert_eq!(meter.add_at(at(10), 1000), 100);
        assert_eq!(meter.add_at(at(20), 1000), 100);
        // A burst long ago no longer counts once it is out of the window.
        assert_eq!(meter.add_at(at(100), 600), 600 / 80);
        assert_eq!(meter.add_at(at(160), 6000), 6000 / 60);
        assert_eq!(meter.add_at(at(170), 0), 6000 / 70);
    }
}
