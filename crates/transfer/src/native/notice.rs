//! Waits that speak: a line when a wait has gone on long enough to matter,
//! and another every 30 s while it lasts, naming what is awaited. Short
//! waits (a budget that frees up within a second, as backpressure does all
//! the time) say nothing.

use std::time::{Duration, Instant};

/// How long a wait goes on before it is mentioned.
const SAY_AFTER: Duration = Duration::from_secs(1);
/// How often a wait that lasts is mentioned again.
const REPEAT_EVERY: Duration = Duration::from_secs(30);

/// Tracks one kind of wait.
pub(crate) struct WaitNotice {
    say_after: Duration,
    /// When the current wait began, if one is going on.
    began: Option<Instant>,
    /// When this wait was last mentioned.
    said: Option<Instant>,
}

impl WaitNotice {
    /// For waits worth mentioning only once they lasted a second.
    pub(crate) fn new() -> Self {
        WaitNotice {
            say_after: SAY_AFTER,
            began: None,
            said: None,
        }
    }

    /// For waits worth mentioning at once.
    pub(crate) fn at_once() -> Self {
        WaitNotice {
            say_after: Duration::ZERO,
            ..WaitNotice::new()
        }
    }

    /// Called on each round of a wait: whether to say so now.
    pub(crate) fn due(&mut self) -> bool {
        let now = Instant::now();
        let began = *self.began.get_or_insert(now);
        let due = now.duration_since(began) >= self.say_after
            && self
                .said
                .is_none_or(|said| now.duration_since(said) >= REPEAT_EVERY);
        if due {
            self.said = Some(now);
        }
        due
    }

    /// The wait is over; the next one starts afresh, but is not mentioned
    /// sooner than 30 s after the last mention. Returns whether a wait was
    /// going on.
    pub(crate) fn over(&mut self) -> bool {
        self.began.take().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_is_mentioned_once_it_lasted_and_then_every_30_seconds() {
        let mut notice = WaitNotice::new();
        assert!(!notice.due(), "a wait that just began");
        notice.began = Some(Instant::now() - SAY_AFTER);
        assert!(notice.due());
        assert!(!notice.due(), "said a moment ago");
        notice.said = Some(Instant::now() - REPEAT_EVERY);
        assert!(notice.due());
        notice.over();
        notice.began = Some(Instant::now() - SAY_AFTER);
        assert!(!notice.due(), "a new wait soon after the last mention");
        assert!(WaitNotice::at_once().due());
    }
}
