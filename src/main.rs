//! The `redistribute` binary: parse arguments, run, print one line on error.

mod cli;

use clap::{CommandFactory, FromArgMatches};

/// mimalloc reuses the megabyte-sized chunk buffers instead of mapping and
/// zeroing fresh pages for each one, which glibc's allocator did.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use cli::args::{Cli, ColorWhen};

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_e` (v3, the version
/// `libmimalloc-sys` builds; its bindings lack the name).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Memory freed and unused for 100 ms goes back to the system, instead
    // of after mimalloc's default of seconds: buffers travel between the
    // blocking pool's threads, each with its own heap, and a receiver's
    // peak RSS varied from 54 to 95 MiB with the default, 47 to 62 MiB
    // with this, at the same speed (`scripts/bench`). Purging at once
    // (0) saves a little more memory but costs a tenth of the speed.
    // SAFETY: sets an option mimalloc reads on each purge; no memory is
    // touched.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 100) };
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let color = ColorWhen::from_args(&args);
    let command = Cli::command().color(color.for_clap());
    let cli = match Cli::from_arg_matches(&command.get_matches_from(args)) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let json = cli.log_json;
    init_logging(&cli, color);
    let Ok(mut terminate) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        eprintln!("redistribute: cannot handle SIGTERM (no signal support in this environment)");
        return std::process::ExitCode::FAILURE;
    };
    // Either signal drops the command's future: a file in progress is
    // abandoned (its temporary copy removed, its command killed), never
    // acknowledged, and delivered again to the next run.
    let outcome = tokio::select! {
        outcome = cli::run(cli) => outcome,
        _ = tokio::signal::ctrl_c() => {
            last_word(json, "interrupted; unfinished work resumes when the same command runs again");
            return std::process::ExitCode::from(130);
        }
        _ = terminate.recv() => {
            // A service manager asked: stopping is success.
            last_word(json, "stopped by SIGTERM; a file in progress, if any, was abandoned and is delivered again when the same command runs again");
            return std::process::ExitCode::SUCCESS;
        }
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            last_word(json, &error.to_string());
            match error {
                // Done, but not everything was delivered: distinct, so a
                // cron job can tell it from a failure to run.
                redistribute_transfer::Error::FilesParked { .. }
                | redistribute_transfer::Error::FilesRefused { .. }
                | redistribute_transfer::Error::NotSupplied { .. } => {
                    std::process::ExitCode::from(3)
                }
                // As clap does for the command lines it rejects itself.
                redistribute_transfer::Error::Usage(_) => std::process::ExitCode::from(2),
                _ => std::process::ExitCode::FAILURE,
            }
        }
    }
}

/// Log lines on stderr: plain (`-q`, `-v`, colored per `--color`), or one
/// JSON object a line with a timestamp (`--log-json`); `REDISTRIBUTE_LOG`
/// overrides the level.
fn init_logging(cli: &Cli, color: ColorWhen) {
    let level = if cli.quiet {
        "warn"
    } else if cli.verbose {
        "debug"
    } else {
        "info"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("REDISTRIBUTE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("redistribute={level}")));
    let lines = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| cli::progress::LogLines)
        .with_target(false);
    if cli.log_json {
        lines.json().init();
    } else {
        lines.with_ansi(color.for_stderr()).without_time().init();
    }
}

/// The line a run ends with when it did not succeed: `redistribute: WHY`,
/// or with `--log-json` an error event like every other line.
fn last_word(json: bool, message: &str) {
    if json {
        tracing::error!("{message}");
    } else {
        eprintln!("redistribute: {message}");
    }
}
