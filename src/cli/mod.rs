//! The command line: argument definitions in [`args`], one module per
//! command. Each command turns its arguments into the library's options,
//! calls the library, and reports what happened; nothing here is reusable.

mod aggregate;
pub mod args;
mod demo;
mod geo;
mod loggen;
mod man;
mod metrics;
pub mod progress;
mod purge;
mod receive;
mod report;
mod retry;
mod send;
mod status;

use redistribute_transfer::{Error, FileSource, ReceiveOptions, Result};

use args::{Cli, Command, GeoCommand, Protocol, SourceArgs};

/// The URL with the `--tls-*` files added as the parameters the library
/// reads (`tls_ca_cert`, `tls_cert`, `tls_key`), for each node of a
/// comma-separated list.
fn with_tls_files(cli: &Cli) -> String {
    let files = [
        ("tls_ca_cert", &cli.tls_ca_cert),
        ("tls_cert", &cli.tls_cert),
        ("tls_key", &cli.tls_key),
    ];
    let parameters: Vec<String> = files
        .iter()
        .filter_map(|(key, file)| file.as_ref().map(|file| format!("{key}={file}")))
        .collect();
    if parameters.is_empty() {
        return cli.redis.clone();
    }
    cli.redis
        .split(',')
        .map(|node| {
            let joint = if node.contains('?') { '&' } else { '?' };
            format!("{}{joint}{}", node.trim(), parameters.join("&"))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// What channel and table keys start with when `--prefix` is not given.
const DEFAULT_PREFIX: &str = "rd";

/// Runs the parsed command.
pub async fn run(cli: Cli) -> Result<()> {
    // Progress bars and log lines share stderr: JSON lines go without bars.
    let quiet = cli.quiet || cli.log_json;
    let url = &with_tls_files(&cli);
    let prefix = cli.prefix.as_deref().unwrap_or(DEFAULT_PREFIX);
    // The job's keys are the book's unless a prefix was asked for.
    let namespace = cli
        .prefix
        .as_ref()
        .map(|p| format!("{p}:"))
        .unwrap_or_default();
    match cli.command {
        Command::Send(args) => send::run(url, prefix, quiet, args).await,
        Command::Receive(args) => receive::run(url, prefix, quiet, args).await,
        Command::Status(args) => status::run(url, prefix, args).await,
        Command::Retry(args) => retry::run(url, prefix, args).await,
        Command::Purge(args) => purge::run(url, prefix, args).await,
        Command::Demo(args) => {
            // The demo talks to a private server unless --redis names one;
            // an exported REDIS_URL (production, perhaps) does not count.
            let explicit = std::env::args().any(|a| a == "--redis" || a.starts_with("--redis="));
            demo::run(demo::DemoOptions {
                redis_url: explicit.then(|| url.to_owned()),
                size: args.size,
                cluster: args.cluster,
                prefix: prefix.to_owned(),
                receivers: 3,
                quiet,
            })
            .await
        }
        Command::Aggregate(args) => aggregate::run(url, prefix, namespace, args).await,
        Command::Report(args) => report::run(url, namespace, args).await,
        Command::Geo(GeoCommand::Import(args)) => geo::import(url, prefix, args).await,
        Command::Geo(GeoCommand::Lookup(args)) => geo::lookup(url, prefix, args).await,
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "redistribute", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { dir } => man::run(dir.as_deref()),
        Command::GenerateLogs(args) => {
            loggen::write_log_dir(&args.dir, args.size, args.files, args.format)
                .map(|_| ())
                .map_err(|e| Error::io(&args.dir, e))
        }
    }
}

impl SourceArgs {
    /// Refuses what the chosen wire format cannot do, before connecting.
    fn check(&self) -> Result<()> {
        if self.protocol == Protocol::Classic && self.follow {
            return Err(Error::Usage(
                "--protocol classic does not support --follow (the book's receivers stop at `:done`)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The native receiver's options; `in_order` for an output that
    /// cannot take back what it wrote (stdout).
    fn receive_options(&self, prefix: &str, in_order: bool) -> ReceiveOptions {
        let mut options = ReceiveOptions::new(&self.channel, &self.id);
        options.prefix = prefix.to_owned();
        options.follow = self.follow;
        options.claim_after = self.claim_after;
        options.allow_eviction = self.allow_eviction;
        options.in_order = in_order;
        options
    }
}

/// A run that set files aside did not do all its work: say so, and how to
/// see which.
fn check_nothing_parked(files: &impl FileSource, source: &SourceArgs) -> Result<()> {
    let (protocol, channel) = (source.protocol, &source.channel);
    let parked = files.parked();
    if parked == 0 {
        return Ok(());
    }
    Err(match protocol {
        Protocol::Native => Error::FilesParked {
            channel: channel.to_owned(),
            count: parked,
            detail: String::new(),
        },
        Protocol::Classic => Error::FilesRefused {
            channel: channel.to_owned(),
            count: parked,
        },
    })
}

/// `--metrics` of a receiving command (`receive`, `aggregate`), labelled
/// with its channel, `role` and id.
async fn serve_metrics_of(
    url: &str,
    prefix: &str,
    role: &'static str,
    source: &SourceArgs,
) -> Result<()> {
    let labels = metrics::Labels {
        channel: &source.channel,
        role,
        id: Some(&source.id),
    };
    let backlog = (source.protocol == Protocol::Native).then_some(metrics::Backlog { url, prefix });
    metrics::serve(source.metrics, labels, backlog).await
}
