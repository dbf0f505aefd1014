//! Progress bars, drawn only on a terminal.
//!
//! indicatif's stderr target draws nothing when stderr is not a terminal,
//! so scripts and CI logs get plain log lines only. On a terminal, log
//! lines are written while the bars are lifted off the screen
//! ([`LogLines`]), so the scrollback holds no frozen copies of a bar.

use std::io::Write;
use std::sync::LazyLock;

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

/// Reports a sender's or receiver's bytes to `bar`.
pub fn reporter(bar: &ProgressBar) -> std::sync::Arc<dyn redistribute::Progress> {
    let bar = bar.clone();
    std::sync::Arc::new(move |bytes| bar.inc(bytes))
}
