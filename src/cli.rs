//! The command line: argument parsing and one function per command.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use clap::{Args, Parser, Subcommand};

use crate::connection::Redis;
use crate::error::{Error, Result};
use crate::inputs::{self, Input};
use crate::logline::LogFormat;
use crate::protocol::Audience;
use crate::receiver::{Failure, ReceiveOptions, Receiver};
use crate::report::{DaySelection, Dimension, ReportQuery};
use crate::sender::{SendOptions, Sender, Sent};
use crate::sink::Sink;
use crate::status::{self, ChannelStatus};
use crate::{Decode, demo, loggen, progress};

/// Distribute files through Redis to many machines and process them while
/// they stream.
#[derive(Debug, Parser)]
#[command(name = "redistribute", version, about, long_about = None)]
pub struct Cli {
    /// Redis to use: redis://[user:pass@]host:port[/db], rediss://… (TLS) or unix:///path
    #[arg(
        long,
        global = true,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis: String,
    /// Prefix of every key this tool writes.
    #[arg(long, global = true, default_value = "rd")]
    pub prefix: String,
    /// Print only warnings and errors; no progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Print more detail about each step.
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send files or directories into a channel.
    Send(SendArgs),
    /// Receive files from a channel and write, pipe or print each one.
    Receive(ReceiveArgs),
    /// Show channels: files in flight, memory held, receivers' progress.
    Status(StatusArgs),
    /// Delete every key of a channel.
    Purge(PurgeArgs),
    /// Run the whole job end to end on a private redis-server.
    Demo(DemoArgs),
    /// Count visits per day by country, region and city from logs as they arrive.
    Aggregate(AggregateArgs),
    /// Print the top countries, regions or cities per day (table, JSON, CSV, SVG chart).
    Report(ReportArgs),
    /// Location tables for IP lookups.
    #[command(subcommand)]
    Geo(GeoCommand),
    /// Write sample access logs (for benchmarks).
    #[command(hide = true)]
    GenerateLogs(GenerateArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("audience").required(true).args(["receivers", "workers"])))]
pub struct SendArgs {
    /// Channel to send into.
    #[arg(long)]
    pub channel: String,
    /// Wire format: native, or classic (the book's, to feed its receivers).
    #[arg(long, value_enum, default_value_t = Protocol::Native)]
    pub protocol: Protocol,
    /// Broadcast to receivers 0..N-1 (a number) or to the named ones (a,b,c).
    #[arg(long)]
    pub receivers: Option<String>,
    /// Make a work queue: each file goes to exactly one of any number of workers.
    #[arg(long)]
    pub workers: bool,
    /// Most file data the channel may hold in Redis (at most half of maxmemory).
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    pub limit: u64,
    /// Size of each chunk stored in Redis.
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    pub chunk_size: u64,
    /// Keep watching directories for new files (log rotation); never ends the input.
    #[arg(long)]
    pub follow: bool,
    /// With --follow: send a file once it has not changed for this long.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub settle: Duration,
    /// Name of the file read from stdin (`-`).
    #[arg(long)]
    pub name: Option<String>,
    /// Files, directories (sent recursively, named relative to the directory) or `-` for stdin.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("output").required(true).args(["out", "exec", "stdout"])))]
pub struct ReceiveArgs {
    /// Channel to receive from.
    #[arg(long)]
    pub channel: String,
    /// Wire format: native, or classic (the book's, to read from its sender).
    #[arg(long, value_enum, default_value_t = Protocol::Native)]
    pub protocol: Protocol,
    /// This receiver's id: one of the sender's --receivers, or any name for a worker.
    #[arg(long)]
    pub id: String,
    /// Write byte-identical copies under DIR (original bytes, never decoded).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Run `sh -c CMD` per file with its contents on stdin and its name in $REDISTRIBUTE_NAME.
    #[arg(long, value_name = "CMD")]
    pub exec: Option<String>,
    /// Write contents to stdout, file after file.
    #[arg(long)]
    pub stdout: bool,
    /// Decompress .gz and .zst files for --exec and --stdout (auto) or not (none).
    #[arg(long, value_enum, default_value_t = Decode::Auto)]
    pub decode: Decode,
    /// Keep waiting for new files after the sender's end of input.
    #[arg(long)]
    pub follow: bool,
    /// Work queue: give a silent worker's file to another worker after this long.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub claim_after: Duration,
}

/// Which wire format a channel speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// Chunked, bounded, resumable; see docs/protocol.md.
    Native,
    /// *Redis in Action* section 6.6, byte for byte: one key per file (512 MB at most), one shard.
    Classic,
}

#[derive(Debug, Args)]
pub struct AggregateArgs {
    /// Channel to receive logs from.
    #[arg(long)]
    pub channel: String,
    /// This receiver's id, as for `receive`.
    #[arg(long)]
    pub id: String,
    /// Dimensions to count, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "country")]
    pub by: Vec<Dimension>,
    /// Log line layout: book (`IP DAY ...`) or combined (Apache/nginx).
    #[arg(long, value_enum, default_value_t = LogFormat::Book)]
    pub log_format: LogFormat,
    /// Read the location table from these files instead of Redis (or the built-in one).
    #[arg(long = "table", value_name = "FILE")]
    pub table: Vec<PathBuf>,
    /// Wire format of the channel.
    #[arg(long, value_enum, default_value_t = Protocol::Native)]
    pub protocol: Protocol,
    /// Keep waiting for new files after the sender's end of input.
    #[arg(long)]
    pub follow: bool,
    /// Work queue: give a silent worker's file to another worker after this long.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub claim_after: Duration,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// What to rank.
    #[arg(long, value_enum, default_value_t = Dimension::Country)]
    pub by: Dimension,
    /// Only this day (YYYY-MM-DD).
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub day: Option<String>,
    /// First day of a range (YYYY-MM-DD), with --to.
    #[arg(long, requires = "to")]
    pub from: Option<String>,
    /// Last day of a range (YYYY-MM-DD), with --from.
    #[arg(long, requires = "from")]
    pub to: Option<String>,
    /// Rows per day (0 for all).
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Print JSON.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print CSV.
    #[arg(long)]
    pub csv: bool,
    /// Also write a bar chart to this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub chart: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum GeoCommand {
    /// Load a location table into Redis: range CSV, MaxMind GeoLite2 CSV or the legacy GeoLiteCity CSV (.gz accepted).
    Import(GeoImportArgs),
    /// Print country, region and city of addresses.
    Lookup(GeoLookupArgs),
}

#[derive(Debug, Args)]
pub struct GeoImportArgs {
    /// Fill the book's `ip2cityid:` and `cityid2city:` keys exactly as its section 5.3 does
    /// (FILES: GeoLiteCity-Blocks.csv then GeoLiteCity-Location.csv).
    #[arg(long)]
    pub classic: bool,
    /// The table's files, format detected from their contents.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GeoLookupArgs {
    /// Read the table from these files instead of Redis (or the built-in one).
    #[arg(long = "table", value_name = "FILE")]
    pub table: Vec<PathBuf>,
    /// Addresses to look up (IPv4 or IPv6).
    #[arg(required = true)]
    pub addresses: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Show only this channel.
    #[arg(long)]
    pub channel: Option<String>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// Channel to delete.
    #[arg(long)]
    pub channel: String,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Uncompressed size of the generated logs.
    #[arg(long, default_value = "400MiB", value_parser = parse_size)]
    pub size: u64,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Directory to write the logs into.
    pub dir: PathBuf,
    /// Uncompressed size of the logs.
    #[arg(long, default_value = "512MiB", value_parser = parse_size)]
    pub size: u64,
    /// Number of files.
    #[arg(long, default_value_t = 8)]
    pub files: u32,
}

/// Parses sizes such as `64MiB`, `1GiB`, `1.5GB` or `131072`.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|_| format!("{text:?} is not a size (examples: 131072, 64MiB, 1GiB)"))
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> Result<()> {
    let quiet = cli.quiet;
    match cli.command {
        Command::Send(args) => send(&cli.redis, &cli.prefix, quiet, args).await,
        Command::Receive(args) => receive(&cli.redis, &cli.prefix, quiet, args).await,
        Command::Status(args) => show_status(&cli.redis, &cli.prefix, args).await,
        Command::Purge(args) => {
            let redis = Redis::connect(&cli.redis).await?;
            let deleted = status::purge(&redis, &cli.prefix, &args.channel).await?;
            tracing::info!("purged channel {}: {deleted} keys deleted", args.channel);
            Ok(())
        }
        Command::Demo(args) => {
            // The demo talks to a private server unless --redis names one;
            // an exported REDIS_URL (production, perhaps) does not count.
            let explicit = std::env::args().any(|a| a == "--redis" || a.starts_with("--redis="));
            demo::run(demo::DemoOptions {
                redis_url: explicit.then_some(cli.redis),
                size: args.size,
                prefix: cli.prefix,
                receivers: 3,
                quiet,
            })
            .await
        }
        Command::Aggregate(args) => aggregate(&cli.redis, &cli.prefix, args).await,
        Command::Report(args) => report(&cli.redis, args).await,
        Command::Geo(GeoCommand::Import(args)) => geo_import(&cli.redis, &cli.prefix, args).await,
        Command::Geo(GeoCommand::Lookup(args)) => geo_lookup(&cli.redis, &cli.prefix, args).await,
        Command::GenerateLogs(args) => loggen::write_log_dir(&args.dir, args.size, args.files)
            .map(|_| ())
            .map_err(|e| Error::io(&args.dir, e)),
    }
}

async fn aggregate(url: &str, prefix: &str, args: AggregateArgs) -> Result<()> {
    if args.protocol == Protocol::Classic && args.follow {
        return Err(Error::Usage(
            "--protocol classic does not support --follow (the book's receivers stop at `:done`)"
                .into(),
        ));
    }
    let mut receive = ReceiveOptions::new(&args.channel, &args.id);
    receive.prefix = prefix.to_owned();
    receive.follow = args.follow;
    receive.claim_after = args.claim_after;
    let options = crate::aggregate::AggregateOptions {
        receive,
        dimensions: args.by,
        format: args.log_format,
        table_files: args.table,
        classic: args.protocol == Protocol::Classic,
    };
    let files = crate::aggregate::run(url, &options).await?;
    tracing::info!("done: counted {files} files");
    Ok(())
}

async fn report(url: &str, args: ReportArgs) -> Result<()> {
    let days = match (args.day, args.from, args.to) {
        (Some(day), _, _) => DaySelection::One(day),
        (None, Some(from), Some(to)) => DaySelection::Range { from, to },
        _ => DaySelection::All,
    };
    days.check()?;
    let redis = Redis::connect(url).await?;
    let report = crate::report::gather(
        &redis,
        &ReportQuery {
            by: args.by,
            days,
            top: args.top,
        },
    )
    .await?;
    if let Some(path) = &args.chart {
        std::fs::write(path, report.to_svg()).map_err(|e| Error::io(path, e))?;
        tracing::info!("wrote the chart to {}", path.display());
    }
    let text = if args.json {
        report.to_json()
    } else if args.csv {
        report.to_csv()
    } else {
        report.to_table()
    };
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    Ok(())
}

async fn geo_import(url: &str, prefix: &str, args: GeoImportArgs) -> Result<()> {
    let redis = Redis::connect(url).await?;
    if args.classic {
        let [blocks, locations] = args.files.as_slice() else {
            return Err(Error::Usage(
                "geo import --classic takes GeoLiteCity-Blocks.csv and GeoLiteCity-Location.csv"
                    .into(),
            ));
        };
        let imported = crate::geo_classic::import(&redis, blocks, locations).await?;
        tracing::info!(
            "loaded {} address ranges into ip2cityid: and {} locations into cityid2city:",
            imported.ranges,
            imported.cities
        );
        return Ok(());
    }
    let table = crate::geo::GeoTable::from_files(&args.files)?;
    let version = crate::geo::store(&redis, prefix, &table).await?;
    tracing::info!(
        "stored location table version {version}: {} IPv4 and {} IPv6 ranges, {} places; running jobs switch to it between files",
        table.ipv4_range_count(),
        table.ipv6_range_count(),
        table.places().len()
    );
    Ok(())
}

async fn geo_lookup(url: &str, prefix: &str, args: GeoLookupArgs) -> Result<()> {
    let table = if !args.table.is_empty() {
        crate::geo::GeoTable::from_files(&args.table)?
    } else {
        let redis = Redis::connect(url).await?;
        match crate::geo::load(&redis, prefix).await? {
            Some((_, table)) => table,
            None => crate::geo::GeoTable::builtin()?,
        }
    };
    for text in &args.addresses {
        let address: std::net::IpAddr = text
            .trim()
            .parse()
            .map_err(|_| Error::Usage(format!("{text:?} is not an IPv4 or IPv6 address")))?;
        match table.lookup(address) {
            Some(place) => println!(
                "{text}\t{}\t{}\t{}",
                or_dash(&place.country),
                or_dash(&place.region),
                or_dash(&place.city)
            ),
            None => println!("{text}\t{}", crate::aggregate::UNKNOWN),
        }
    }
    Ok(())
}

fn or_dash(text: &str) -> &str {
    if text.is_empty() { "-" } else { text }
}

fn audience(args: &SendArgs) -> Result<Audience> {
    if args.workers {
        return Ok(Audience::Workers);
    }
    let list = args.receivers.as_deref().unwrap_or_default();
    if let Ok(count) = list.parse::<u32>() {
        if count == 0 {
            return Err(Error::Usage("--receivers must be at least 1".into()));
        }
        return Ok(Audience::Broadcast(
            (0..count).map(|i| i.to_string()).collect(),
        ));
    }
    let ids: Vec<String> = list.split(',').map(|s| s.trim().to_owned()).collect();
    if ids.iter().any(String::is_empty) {
        return Err(Error::Usage(format!(
            "--receivers {list:?}: expected a count or names like a,b,c"
        )));
    }
    Ok(Audience::Broadcast(ids))
}

async fn send(url: &str, prefix: &str, quiet: bool, args: SendArgs) -> Result<()> {
    if args.protocol == Protocol::Classic {
        return send_classic(url, quiet, args).await;
    }
    let inputs = inputs::collect(&args.paths, args.name.as_deref())?;
    let mut options = SendOptions::new(&args.channel, audience(&args)?);
    options.prefix = prefix.to_owned();
    options.limit = args.limit;
    options.chunk_size = args.chunk_size;
    let mut sender = Sender::open(url, options).await?;
    let total = inputs.iter().map(|i| i.size).sum();
    let bar = progress::bytes(total, quiet, "sending");
    sender.set_progress(bar.clone());
    let started = Instant::now();
    let count = inputs.len();
    if args.follow {
        // Named files and stdin go now; directories' files once they settle.
        let (dirs, others): (Vec<PathBuf>, Vec<PathBuf>) =
            args.paths.iter().cloned().partition(|p| p.is_dir());
        for input in inputs::collect(&others, args.name.as_deref())? {
            send_one(&sender, &input).await?;
        }
        bar.finish_and_clear();
        return follow(&sender, &dirs, args.settle).await;
    }
    let mut bytes = 0;
    for input in &inputs {
        bytes += send_one(&sender, input).await?;
    }
    sender.finish().await?;
    bar.finish_and_clear();
    tracing::info!(
        "sent {count} files ({}) in {:.1} s; waiting for receivers to finish",
        bytesize::ByteSize(bytes),
        started.elapsed().as_secs_f64()
    );
    sender.wait_until_done().await?;
    tracing::info!("all receivers finished; the channel's data is gone from Redis");
    Ok(())
}

async fn send_one(sender: &Sender, input: &Input) -> Result<u64> {
    match &input.path {
        Some(path) => match sender.send_file(path, &input.name).await? {
            Sent::Uploaded { bytes } => {
                tracing::info!("sent {} ({})", input.name, bytesize::ByteSize(bytes));
                Ok(bytes)
            }
            Sent::AlreadySent => Ok(0),
        },
        None => {
            let bytes = sender.send_reader(&input.name, tokio::io::stdin()).await?;
            tracing::info!(
                "sent {} from stdin ({})",
                input.name,
                bytesize::ByteSize(bytes)
            );
            Ok(bytes)
        }
    }
}

/// Watches directories and sends new or changed files once they have been
/// quiet for `settle`. Runs until interrupted. Files that vanish between
/// listing and reading (rotated away) are skipped with a warning.
async fn follow(sender: &Sender, dirs: &[PathBuf], settle: Duration) -> Result<()> {
    let mut known: HashSet<(String, u64, Option<SystemTime>)> = HashSet::new();
    let mut refused: HashSet<String> = HashSet::new();
    tracing::info!("following {} directories for new files", dirs.len());
    loop {
        let listed = inputs::list(dirs, None).unwrap_or_else(|error| {
            tracing::warn!("{error}; listing again shortly");
            Vec::new()
        });
        for input in listed {
            let settled = input
                .modified
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age >= settle);
            let identity = (input.name.clone(), input.size, input.modified);
            if !settled || known.contains(&identity) || refused.contains(&input.name) {
                continue;
            }
            match send_one(sender, &input).await {
                Ok(_) => {}
                Err(Error::Io { path, source })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    tracing::warn!(
                        "{} vanished before it could be sent; skipping it",
                        path.display()
                    );
                }
                Err(error @ Error::HostileName { .. }) => {
                    tracing::warn!("{error}; skipping it");
                    refused.insert(input.name.clone());
                }
                Err(error) => return Err(error),
            }
            known.insert(identity);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `send --protocol classic`: the book's sender, without its defects.
async fn send_classic(url: &str, quiet: bool, args: SendArgs) -> Result<()> {
    let unsupported = if args.workers {
        Some("--workers (the book's format only broadcasts)")
    } else if args.follow {
        Some("--follow (the book's sender ends with `:done`)")
    } else if args.paths.iter().any(|p| p.as_os_str() == "-") {
        Some("stdin (the book's sender reads a directory)")
    } else {
        None
    };
    if let Some(what) = unsupported {
        return Err(Error::Usage(format!(
            "--protocol classic does not support {what}"
        )));
    }
    let mut files = Vec::new();
    for path in &args.paths {
        let listed = inputs::collect(std::slice::from_ref(path), None)?;
        for input in listed {
            if input.name.contains('/') {
                tracing::warn!(
                    "skipping {}: the classic protocol sends a directory's own files only",
                    input.name
                );
                continue;
            }
            files.push((
                input.path.expect("files have paths"),
                input.name,
                input.size,
            ));
        }
    }
    crate::classic::check_sizes(&files)?;
    let Audience::Broadcast(receivers) = audience(&args)? else {
        unreachable!("--workers was refused above");
    };
    let mut sender =
        crate::classic::ClassicSender::open(url, &args.channel, receivers, args.limit).await?;
    let bar = progress::bytes(files.iter().map(|f| f.2).sum(), quiet, "sending");
    sender.set_progress(bar.clone());
    for (path, name, _) in &files {
        sender.send_file(path, name).await?;
    }
    sender.finish().await?;
    bar.finish_and_clear();
    tracing::info!(
        "sent {} files and `:done`; deleting each file once every receiver counted it",
        files.len()
    );
    sender.wait_until_done().await
}

/// `receive --protocol classic`: the book's receiver, resuming a file it
/// was killed in the middle of.
async fn receive_classic(url: &str, sink: Sink, args: &ReceiveArgs) -> Result<()> {
    if args.follow {
        return Err(Error::Usage(
            "--protocol classic does not support --follow (the book's receivers stop at `:done`)"
                .into(),
        ));
    }
    let mut receiver =
        crate::classic::ClassicReceiver::connect(url, &args.channel, &args.id).await?;
    let mut files = 0u64;
    while let Some(mut file) = receiver.next_file().await? {
        let name = file.name().to_owned();
        sink.process(&mut file, args.decode).await?;
        receiver.ack(file).await?;
        files += 1;
        tracing::info!("received {name}");
    }
    tracing::info!("done: {files} files received");
    match receiver.refused() {
        0 => Ok(()),
        refused => Err(Error::Usage(format!(
            "{refused} files were refused for their names and not counted as done"
        ))),
    }
}

async fn receive(url: &str, prefix: &str, quiet: bool, args: ReceiveArgs) -> Result<()> {
    let sink = match (&args.out, &args.exec) {
        (Some(dir), _) => Sink::Dir(dir.clone()),
        (_, Some(command)) => Sink::Exec(command.clone()),
        _ => Sink::Stdout,
    };
    if args.protocol == Protocol::Classic {
        return receive_classic(url, sink, &args).await;
    }
    let mut options = ReceiveOptions::new(&args.channel, &args.id);
    options.prefix = prefix.to_owned();
    options.follow = args.follow;
    options.claim_after = args.claim_after;
    let mut receiver = Receiver::connect(url, options).await?;
    let bar = progress::bytes(0, quiet, "receiving");
    let mut files = 0u64;
    while let Some(mut file) = receiver.next_file().await? {
        let name = file.name().to_owned();
        match sink.process(&mut file, args.decode).await {
            Ok(()) => {
                let bytes = file.received();
                receiver.ack(file).await?;
                files += 1;
                bar.inc(bytes);
                bar.set_prefix(format!("{files} files"));
                tracing::info!("received {name} ({})", bytesize::ByteSize(bytes));
            }
            Err(error) => match receiver.fail(file, &error.to_string()).await? {
                Failure::WillRetry => tracing::warn!("{error}; will try again"),
                Failure::Parked => {
                    tracing::error!(
                        "{error}; parked after {} attempts",
                        crate::receiver::MAX_FAILURES
                    )
                }
            },
        }
    }
    bar.finish_and_clear();
    tracing::info!("done: {files} files received");
    let parked = receiver.parked();
    if parked > 0 {
        return Err(Error::Usage(format!(
            "{parked} files failed repeatedly and were parked; see `redistribute status --channel {}`",
            args.channel
        )));
    }
    Ok(())
}

async fn show_status(url: &str, prefix: &str, args: StatusArgs) -> Result<()> {
    let redis = Redis::connect(url).await?;
    let names = match &args.channel {
        Some(name) => vec![name.clone()],
        None => status::channels(&redis, prefix).await?,
    };
    let mut found = Vec::new();
    for name in &names {
        match status::channel_status(&redis, prefix, name).await? {
            Some(status) => found.push(status),
            None if args.channel.is_some() => {
                return Err(Error::Usage(format!(
                    "no channel named {name:?} under prefix {prefix:?}"
                )));
            }
            None => {}
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&found).expect("status serializes")
        );
    } else if found.is_empty() {
        println!("no channels");
    } else {
        for status in &found {
            print_status(status);
        }
    }
    Ok(())
}

fn print_status(s: &ChannelStatus) {
    use std::io::IsTerminal;
    let size = |b: u64| bytesize::ByteSize(b).to_string();
    println!(
        "channel {}: {}{}, {} announced, {} finished, {} in flight, {} held of {} limit",
        s.channel,
        s.mode,
        if s.ended { ", input ended" } else { "" },
        s.files_announced,
        s.files_finished,
        s.files_in_flight,
        size(s.bytes_held),
        size(s.limit),
    );
    let bars = std::io::stdout().is_terminal();
    println!(
        "  {:<12} {:>7} {:>11} {:>7} {:>7} {:>9}  last file",
        "receiver", "done", "bytes", "behind", "parked", "unparsed"
    );
    for r in &s.receivers {
        let behind = r.files_behind.map_or("-".to_owned(), |b| b.to_string());
        let bar = match (bars, r.files_behind) {
            (true, Some(behind)) => {
                let total = (r.files_done + behind).max(1);
                let filled = (20 * r.files_done / total) as usize;
                format!("[{}{}] ", "#".repeat(filled), ".".repeat(20 - filled))
            }
            _ => String::new(),
        };
        println!(
            "  {:<12} {:>7} {:>11} {:>7} {:>7} {:>9}  {bar}{}",
            r.id,
            r.files_done,
            size(r.bytes_done),
            behind,
            r.files_parked,
            r.lines_unparsed,
            r.last_file.as_deref().unwrap_or("-"),
        );
    }
    for p in &s.parked {
        println!(
            "  parked: {} (receiver {}): {}",
            p.file, p.receiver, p.reason
        );
    }
}
