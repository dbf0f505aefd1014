//! Progress bars, drawn only on a terminal.
//!
//! indicatif's stderr target draws nothing when stderr is not a terminal,
//! so scripts and CI logs get plain log lines only. On a terminal, log
//! lines are written while the bars are lifted off the screen
//! ([`LogLines`]), so the scrollback holds no frozen copies of a bar.

use std::collections::VecDeque;
use std::fmt;
use std::io::Write;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use indicatif::style::ProgressTracker;
use indicatif::{
    HumanBytes, HumanDuration, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState,
    ProgressStyle,
};
use redistribute_transfer::text::shortened;

/// Every bar of this process.
static BARS: LazyLock<MultiProgress> =
    LazyLock::new(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));

/// Where log lines go: stderr, around the bars.
pub struct LogLines;

impl Write for LogLines {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        BARS.suspend(|| std::io::stderr().write(line))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// A bar counting bytes towards `total` (or a spinner when `total` is 0).
pub fn bytes(total: u64, quiet: bool, message: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let template = if total > 0 {
        "{msg:12} [{bar:30}] {bytes}/{total_bytes} {pace} eta {left}"
    } else {
        "{msg:12} {spinner} {bytes} {pace} {prefix}"
    };
    let style = ProgressStyle::with_template(template)
        .expect("valid template")
        .progress_chars("=> ")
        .with_key("pace", Pace::new(Shows::Rate))
        .with_key("left", Pace::new(Shows::TimeLeft));
    let bar =
        ProgressBar::with_draw_target((total > 0).then_some(total), ProgressDrawTarget::stderr())
            .with_style(style);
    bar.set_message(message.to_owned());
    // Redrawn every second even when nothing moves: a sender waiting for
    // room shows its pace falling instead of the last burst's, frozen.
    bar.enable_steady_tick(Duration::from_secs(1));
    BARS.add(bar)
}

/// How far back a bar's rate looks.
const PACE_WINDOW: Duration = Duration::from_secs(10);

/// A bar's rate, or the time left at that rate, over the last
/// [`PACE_WINDOW`]. indicatif's own estimate weighs the burst a sender
/// makes while the budget has room as much as the pace it settles to once
/// throttled by it, so its ETA said "0s" for minutes.
#[derive(Clone)]
struct Pace {
    /// `(when, position)` at each update, oldest first.
    samples: VecDeque<(Instant, u64)>,
    shows: Shows,
}

#[derive(Clone, Copy)]
enum Shows {
    Rate,
    TimeLeft,
}

impl Pace {
    fn new(shows: Shows) -> Self {
        Pace {
            samples: VecDeque::new(),
            shows,
        }
    }

    /// Bytes a second from the oldest sample in the window to `pos` now;
    /// `None` in the first second.
    fn per_sec(&self, pos: u64) -> Option<f64> {
        let now = Instant::now();
        let (since, base) = self
            .samples
            .iter()
            .find(|(at, _)| now.duration_since(*at) <= PACE_WINDOW)
            .or(self.samples.back())?;
        let seconds = now.duration_since(*since).as_secs_f64();
        (seconds >= 1.0).then(|| pos.saturating_sub(*base) as f64 / seconds)
    }
}

impl ProgressTracker for Pace {
    fn clone_box(&self) -> Box<dyn ProgressTracker> {
        Box::new(self.clone())
    }

    fn tick(&mut self, state: &ProgressState, now: Instant) {
        self.samples.push_back((now, state.pos()));
        while self
            .samples
            .get(1)
            .is_some_and(|(at, _)| now.duration_since(*at) > PACE_WINDOW)
        {
            self.samples.pop_front();
        }
    }

    fn reset(&mut self, _: &ProgressState, _: Instant) {
        self.samples.clear();
    }

    fn write(&self, state: &ProgressState, w: &mut dyn fmt::Write) {
        let per_sec = self.per_sec(state.pos()).unwrap_or_else(|| state.per_sec());
        let _ = match self.shows {
            Shows::Rate => write!(w, "{}/s", HumanBytes(per_sec as u64)),
            Shows::TimeLeft => {
                let left = state.len().unwrap_or(0).saturating_sub(state.pos());
                match left as f64 / per_sec {
                    seconds if seconds.is_finite() => {
                        write!(w, "{:#}", HumanDuration(Duration::from_secs_f64(seconds)))
                    }
                    _ => write!(w, "-"),
                }
            }
        };
    }
}

/// A receiver's display: a line for all it received, and under it a bar
/// for the file it reads, with the file's total and an ETA when the sender
/// knew its size (a spinner for a stream).
pub struct Receiving {
    all: ProgressBar,
    file: Mutex<Option<ProgressBar>>,
    quiet: bool,
}

impl Receiving {
    pub fn new(quiet: bool) -> Self {
        Receiving {
            all: bytes(0, quiet, "receiving"),
            file: Mutex::new(None),
            quiet,
        }
    }

    pub fn finish(&self) {
        redistribute_transfer::Progress::file_ended(self);
        self.all.finish_and_clear();
    }
}

impl redistribute_transfer::Progress for Receiving {
    fn advance(&self, bytes: u64) {
        self.all.inc(bytes);
        if let Some(bar) = &*self.file.lock().expect("file bar") {
            bar.inc(bytes);
        }
    }

    fn file_started(&self, name: &str, size: Option<u64>) {
        let bar = self::bytes(size.unwrap_or(0), self.quiet, &shortened(name, 24));
        if let Some(old) = self.file.lock().expect("file bar").replace(bar) {
            old.finish_and_clear();
        }
    }

    fn file_ended(&self) {
        if let Some(bar) = self.file.lock().expect("file bar").take() {
            bar.finish_and_clear();
        }
    }
}

/// Reports a sender's or receiver's bytes to `bar`.
pub fn reporter(bar: &ProgressBar) -> std::sync::Arc<dyn redistribute_transfer::Progress> {
    let bar = bar.clone();
    std::sync::Arc::new(move |bytes| bar.inc(bytes))
}
