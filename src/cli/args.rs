//! Argument definitions: what every command accepts, validated but not yet
//! acted on. The command modules turn these into the library's options.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;
use redistribute_job::logline::{FormatChoice, LogFormat};
use redistribute_job::report::Dimension;
use redistribute_transfer::{Compression, Decode};

mod color;
mod values;
pub use color::ColorWhen;
use values::{choice, cidr, day_count, format_choice, parse_size};

/// Distribute files through Redis to many machines and process them while
/// they stream.
#[derive(Debug, Parser)]
#[command(
    name = "redistribute",
    version,
    about,
    long_about = None,
    next_help_heading = "Global options"
)]
pub struct Cli {
    /// Redis to use: redis://[user:pass@]host:port[/db], rediss://… (TLS) or unix:///path
    #[arg(
        long,
        global = true,
        env = "REDIS_URL",
        hide_env_values = true,
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis: String,
    /// With rediss://: trust this CA (PEM) instead of the system's.
    #[arg(long, global = true, env = "REDIS_TLS_CA_CERT", value_name = "FILE")]
    pub tls_ca_cert: Option<String>,
    /// With rediss://: present this client certificate (PEM), with --tls-key.
    #[arg(long, global = true, env = "REDIS_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<String>,
    /// With rediss://: the client certificate's key (PEM).
    #[arg(long, global = true, env = "REDIS_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<String>,
    /// Prefix of every key this tool writes [default: rd]. The job's `daily:*` sorted sets are the
    /// book's and have none, unless this is given: then they are `PREFIX:daily:*`.
    #[arg(long, global = true)]
    pub prefix: Option<String>,
    /// Print only warnings and errors; no progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Print more detail about each step.
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Log lines as JSON objects with timestamps (for log collectors); no progress bars.
    #[arg(long, global = true)]
    pub log_json: bool,
    /// Color log lines and help: auto (on a terminal, unless NO_COLOR is set), always or never.
    #[arg(long, global = true, value_enum, default_value_t = ColorWhen::Auto)]
    pub color: ColorWhen,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send files or directories into a channel.
    #[command(after_help = "Examples:\n  \
        redistribute send --channel logs --receivers 3 /var/log/nginx/archive   # to receivers 0, 1, 2\n  \
        redistribute send --channel logs --receivers eu,us access.log.1         # to named receivers\n  \
        redistribute send --channel jobs --workers /data/incoming               # each file to one worker\n  \
        redistribute send --channel jobs --workers --split 64MiB access.log.gz  # pieces of one file to many\n  \
        redistribute send --channel logs --receivers 3 --follow /var/log/rotated # keep sending new files\n  \
        zcat big.gz | redistribute send --channel logs --receivers 3 --name big.log -\n\n\
        It exits once every receiver finished every file (0), or with 3 when some were parked.")]
    Send(SendArgs),
    /// Receive files from a channel and write, pipe or print each one.
    #[command(after_help = "Examples:\n  \
        redistribute receive --channel logs --id 0 --out /srv/logs        # byte-identical copies\n  \
        redistribute receive --channel logs --id 1 --stdout | grep ' 500 ' # everything, decompressed, in order\n  \
        redistribute receive --channel jobs --id \"$(hostname)\" --exec 'exec ./process.sh'\n  \
        redistribute receive --channel logs --id 0 --follow --out /srv/logs  # keep waiting for files\n\n\
        --exec runs the command once per file with the file on stdin and its name in\n\
        $REDISTRIBUTE_NAME; a file is acknowledged only after the command exits with 0.\n\
        A file sent with --split comes in pieces, one command each, with $REDISTRIBUTE_PIECE\n\
        and $REDISTRIBUTE_PIECES set; --stdout writes pieces as they complete (across workers\n\
        their order is not kept), and --out refuses them.")]
    Receive(ReceiveArgs),
    /// Show channels: who runs, files in flight, memory held, receivers' progress.
    #[command(after_help = "Examples:\n  \
        redistribute status                    # every channel\n  \
        redistribute status --active           # only channels at work\n  \
        redistribute status --channel logs --json | jq '.[0].receivers'")]
    Status(StatusArgs),
    /// Offer parked files again: the sender uploads them again for the receivers that gave up.
    #[command(after_help = "Examples:\n  \
        redistribute retry --channel logs                 # every parked file\n  \
        redistribute retry --channel logs access.log.gz   # just this one\n\n\
        A running sender uploads them at once; otherwise run the same `send` again.\n\
        Receivers that already exited must be started again to get them.")]
    Retry(RetryArgs),
    /// Delete every key of a channel.
    #[command(after_help = "Examples:\n  \
        redistribute purge --channel logs\n  \
        redistribute purge --channel logs --stale   # only chunks of finished files left behind\n\n\
        Stop its sender and receivers first: purge refuses while they run.")]
    Purge(PurgeArgs),
    /// Run the whole job end to end on a private redis-server.
    #[command(after_help = "Examples:\n  \
        redistribute demo                 # needs redis-server on the PATH\n  \
        redistribute demo --size 1GiB     # more logs\n  \
        redistribute demo --cluster       # on a private 3-master Redis Cluster")]
    Demo(DemoArgs),
    /// Count visits per day by country, region and city from logs as they arrive.
    #[command(after_help = "Examples:\n  \
        redistribute send --channel weblogs --workers /var/log/nginx/archive\n  \
        redistribute aggregate --channel weblogs --id \"$(hostname)\" --by country,region,city\n  \
        redistribute aggregate --channel weblogs --id w1 --client-ip forwarded --trusted-proxy 10.0.0.0/8\n  \
        redistribute aggregate --channel weblogs --id w1 --log-format 'nginx:$remote_addr [$time_iso8601] \"$request\"'\n  \
        redistribute report --by country\n\n\
        The log format is recognised per file (book, common, combined, vhost_combined, json);\n\
        -v says which. Without `geo import` the built-in country table is used.")]
    Aggregate(AggregateArgs),
    /// Print the top countries, regions or cities per day (table, JSON, CSV, SVG chart).
    #[command(after_help = "Examples:\n  \
        redistribute report --by country --top 10\n  \
        redistribute report --by city --day 2026-11-24 --csv\n  \
        redistribute report --last 7d --chart week.svg\n  \
        redistribute report --from 2026-11-01 --to 2026-11-30 --chart visits.svg")]
    Report(ReportArgs),
    /// Location tables for IP lookups.
    #[command(subcommand)]
    Geo(GeoCommand),
    /// Print a shell completion script.
    #[command(after_help = "Examples:\n  \
        redistribute completions bash > /etc/bash_completion.d/redistribute\n  \
        redistribute completions zsh > \"${fpath[1]}/_redistribute\"\n  \
        redistribute completions fish > ~/.config/fish/completions/redistribute.fish")]
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), or write one page per command into a directory.
    #[command(after_help = "Examples:\n  \
        redistribute man | man -l -\n  \
        redistribute man --dir /usr/local/share/man/man1   # redistribute.1, redistribute-send.1, ...")]
    Man {
        /// Write redistribute.1 and a page per command (redistribute-send.1, ...) here.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
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
    /// Serve metrics in Prometheus' text format on this address (e.g. 127.0.0.1:9187) while running.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Wire format: native, or classic (the book's, to feed its receivers).
    #[arg(long, value_enum, default_value_t = Protocol::Native)]
    pub protocol: Protocol,
    /// Broadcast to receivers 0..N-1 (a number) or to the named ones (a,b,c).
    #[arg(long)]
    pub receivers: Option<String>,
    /// Make a work queue: each file goes to exactly one of any number of workers.
    #[arg(long)]
    pub workers: bool,
    /// With --workers: cut each file at line ends into pieces of about SIZE, each a work item
    /// (.gz/.zst inputs are decoded first), so many workers share one huge file.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, requires = "workers", conflicts_with = "follow")]
    pub split: Option<u64>,
    /// Most file data the channel may hold in Redis (at most half of maxmemory).
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    pub limit: u64,
    /// Redis memory each chunk takes (native: rounded down to an allocator size class).
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    pub chunk_size: u64,
    /// Compression in transit: auto (lz4, except data compressed already), zstd (smaller, more CPU), lz4 or none.
    #[arg(long, default_value = "auto", value_name = "CODEC")]
    pub compress: Compression,
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
    /// Work even when Redis' maxmemory-policy may evict our keys (allkeys-*), which can lose files.
    #[arg(long)]
    pub allow_eviction: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("output").required(true).args(["out", "exec", "stdout"])))]
pub struct ReceiveArgs {
    #[command(flatten)]
    pub source: SourceArgs,
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
    #[arg(long, value_parser = choice::<Decode>(), default_value = "auto")]
    pub decode: Decode,
}

/// Where `receive` and `aggregate` take files from, and as whom.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Channel to receive from.
    #[arg(long)]
    pub channel: String,
    /// Serve metrics in Prometheus' text format on this address (e.g. 127.0.0.1:9187) while running.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Wire format: native, or classic (the book's, to read from its sender).
    #[arg(long, value_enum, default_value_t = Protocol::Native)]
    pub protocol: Protocol,
    /// This receiver's id: one of the sender's --receivers, or any name for a worker.
    #[arg(long)]
    pub id: String,
    /// Keep waiting for new files after the sender's end of input.
    #[arg(long)]
    pub follow: bool,
    /// Work queue: give a silent worker's file to another worker after this long.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub claim_after: Duration,
    /// Work even when Redis' maxmemory-policy may evict our keys (allkeys-*), which can lose files.
    #[arg(long)]
    pub allow_eviction: bool,
}

/// Which wire format a channel speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// Chunked, bounded, resumable; see docs/protocol.md.
    Native,
    /// *Redis in Action* section 6.6, byte for byte: one key per file (512 MB at most), one shard; see docs/classic.md.
    Classic,
}

#[derive(Debug, Args)]
pub struct AggregateArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Dimensions to count, comma-separated.
    #[arg(long, value_parser = choice::<Dimension>(), value_delimiter = ',', default_value = "country")]
    pub by: Vec<Dimension>,
    /// Log line layout: auto (recognised per file), book, common, combined, vhost_combined,
    /// json, or 'nginx:LAYOUT' in nginx's log_format syntax.
    #[arg(long, value_name = "FORMAT", value_parser = format_choice, default_value = "auto")]
    pub log_format: FormatChoice,
    /// JSON logs: the field holding the visitor's address (default: remote_addr, client_ip, ip...).
    #[arg(long, value_name = "NAME")]
    pub ip_field: Option<String>,
    /// JSON logs: the field holding the time (default: time_local, time_iso8601, timestamp...).
    #[arg(long, value_name = "NAME")]
    pub time_field: Option<String>,
    /// Which address is the visitor.
    #[arg(long, value_name = "WHICH", value_enum, default_value_t = ClientIpArg::Remote)]
    pub client_ip: ClientIpArg,
    /// With --client-ip forwarded: networks of your proxies, skipped when walking
    /// X-Forwarded-For back from the server (comma-separated CIDRs).
    #[arg(long, value_name = "CIDR", value_delimiter = ',', value_parser = cidr)]
    pub trusted_proxy: Vec<IpNet>,
    /// Read the location table from these files instead of Redis (or the built-in one).
    #[arg(long = "table", value_name = "FILE")]
    pub table: Vec<PathBuf>,
    /// Keep each day's counts this long after the day ends, then let Redis delete them
    /// (e.g. 400d); without it they stay until deleted by hand.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub keep: Option<Duration>,
}

/// `--client-ip`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientIpArg {
    /// The address that connected.
    Remote,
    /// The client a reverse proxy names in X-Forwarded-For.
    Forwarded,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// What to rank.
    #[arg(long, value_parser = choice::<Dimension>(), default_value = "country")]
    pub by: Dimension,
    /// Only this day (YYYY-MM-DD).
    #[arg(long, conflicts_with_all = ["from", "to", "last"])]
    pub day: Option<String>,
    /// First day of a range (YYYY-MM-DD), with --to or --last.
    #[arg(long)]
    pub from: Option<String>,
    /// Last day of a range (YYYY-MM-DD), with --from or --last.
    #[arg(long)]
    pub to: Option<String>,
    /// A range of N days (7d, 2w) ending today (local date), or ending on --to, or starting on --from.
    #[arg(long, value_name = "N[d|w]", value_parser = day_count)]
    pub last: Option<u32>,
    /// Rows per day (0 for all).
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Print JSON.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print CSV.
    #[arg(long)]
    pub csv: bool,
    /// Also write a chart to this SVG file: the top members day by day over a range, bars per day.
    #[arg(long, value_name = "FILE.svg")]
    pub chart: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum GeoCommand {
    /// Load a location table into Redis: range CSV, MaxMind GeoLite2 CSV, the legacy GeoLiteCity CSV or a MaxMind DB (.mmdb), gzip'd or not.
    #[command(after_help = "Examples:\n  \
        redistribute geo import GeoLite2-City-Blocks-IPv4.csv GeoLite2-City-Blocks-IPv6.csv GeoLite2-City-Locations-en.csv\n  \
        redistribute geo import GeoLite2-City.mmdb\n  \
        redistribute geo import dbip-country-ipv4.csv.gz dbip-country-ipv6.csv.gz\n\n\
        Running workers switch to the new table between files.")]
    Import(GeoImportArgs),
    /// Print country, region and city of addresses.
    #[command(after_help = "Examples:\n  \
        redistribute geo lookup 1.1.1.1 2001:4860:4860::8888\n  \
        redistribute geo lookup --table GeoLite2-Country-Blocks-IPv4.csv 8.8.8.8")]
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
    /// Hide channels whose work is finished (input ended, nothing in flight, nothing parked).
    #[arg(long, conflicts_with = "channel")]
    pub active: bool,
    /// Show it again every second (redrawn on a terminal) until interrupted.
    #[arg(long, conflicts_with = "json")]
    pub watch: bool,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    /// Channel whose parked files to offer again.
    #[arg(long)]
    pub channel: String,
    /// Names of the files (as `status` lists them); all parked files when none.
    pub files: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// Channel to delete.
    #[arg(long)]
    pub channel: String,
    /// Delete only chunks of finished files still in Redis (a failover
    /// can bring them back), and keep the channel; safe while it works.
    #[arg(long)]
    pub stale: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Start a private Redis Cluster of three masters instead of one server.
    #[arg(long)]
    pub cluster: bool,
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
    /// Line layout.
    #[arg(long, value_parser = choice::<LogFormat>(), default_value = "combined")]
    pub format: LogFormat,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every command a user can run shows examples in its `--help`.
    #[test]
    fn every_command_has_examples() {
        fn check(command: &clap::Command, path: &str) {
            for sub in command.get_subcommands().filter(|c| !c.is_hide_set()) {
                let path = format!("{path} {}", sub.get_name());
                if sub.has_subcommands() {
                    check(sub, &path);
                } else {
                    let help = sub
                        .get_after_help()
                        .map(|h| h.to_string())
                        .unwrap_or_default();
                    assert!(
                        help.contains("Examples:"),
                        "`{path} --help` shows no examples"
                    );
                }
            }
        }
        check(&super::Cli::command(), "redistribute");
    }
}
