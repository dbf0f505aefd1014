//! The `redistribute` binary: parse arguments, run, print one line on error.

mod cli;

use clap::Parser;

/// mimalloc reuses the megabyte-sized chunk buffers instead of mapping and
/// zeroing fresh pages for each one, which glibc's allocator did.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use cli::args::Cli;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let level = if cli.quiet {
        "warn"
    } else if cli.verbose {
        "debug"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("REDISTRIBUTE_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(format!("redistribute={level}"))
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .init();
    let outcome = tokio::select! {
        outcome = cli::run(cli) => outcome,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("redistribute: interrupted; unfinished work resumes when the same command runs again");
            return std::process::ExitCode::from(130);
        }
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("redistribute: {error}");
            match error {
                // Done, but not everything was delivered: distinct, so a
                // cron job can tell it from a failure to run.
                redistribute::Error::FilesParked { .. }
                | redistribute::Error::NotSupplied { .. } => std::process::ExitCode::from(3),
                _ => std::process::ExitCode::FAILURE,
            }
        }
    }
}
