//! Progress bars, drawn only on a terminal.
//!
//! indicatif's stderr target draws nothing when stderr is not a terminal,
//! so scripts and CI logs get plain log lines only. On a terminal, log
//! lines are written while the bars are lifted off the screen
//! ([`LogLines`]), so the scrollback holds no frozen copies of a bar.

use std::io::Write;
use std::sync::{LazyLock, Mutex};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

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
    let bar = if total > 0 {
        ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template(
                "{msg:12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        )
    } else {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template(
                "{msg:12} {spinner} {bytes} {binary_bytes_per_sec} {prefix}",
            )
            .expect("valid template"),
        )
    };
    bar.set_message(message.to_owned());
    BARS.add(bar)
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
        redistribute::Progress::file_ended(self);
        self.all.finish_and_clear();
    }
}

impl redistribute::Progress for Receiving {
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

/// `name` in at most `max` characters, cut in the middle, where file
/// names differ least (`access.log.2026-11-30.gz`).
fn shortened(name: &str, max: usize) -> String {
    let count = name.chars().count();
    if count <= max {
        return name.to_owned();
    }
    let tail = (max - 1) / 2;
    let head: String = name.chars().take(max - 1 - tail).collect();
    let end: String = name.chars().skip(count - tail).collect();
    format!("{head}…{end}")
}

/// Reports a sender's or receiver's bytes to `bar`.
pub fn reporter(bar: &ProgressBar) -> std::sync::Arc<dyn redistribute::Progress> {
    let bar = bar.clone();
    std::sync::Arc::new(move |bytes| bar.inc(bytes))
}
