//! `redistribute demo`: the whole job end to end on a private Redis.
//!
//! Generates a day-per-file set of access logs (some gzip'd, one in two
//! gzip members), broadcasts them to three receivers writing copies,
//! verifies every copy byte for byte and reports the throughput; then
//! counts visits per day and country with the aggregation job and the
//! built-in table, and prints the top countries per day.

use std::path::{Path, PathBuf};
use std::time::Instant;

use redistribute_job::aggregate::{self, AggregateOptions};
use redistribute_job::logline::{FormatChoice, LineOptions, LogFormat};
use redistribute_job::report::{self, DaySelection, Dimension, ReportQuery};
use redistribute_transfer::files::inputs;
use redistribute_transfer::native::purge::purge;
use redistribute_transfer::native::status;
use redistribute_transfer::redis::{
    LocalCluster, LocalClusterOptions, LocalRedis, LocalRedisOptions, Redis,
};
use redistribute_transfer::text::counted;
use redistribute_transfer::{
    Audience, Decode, Error, ReceiveOptions, Receiver, Result, SendOptions, Sender, Sink,
};

use super::{loggen, progress};

/// Settings of one demo run.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Use this Redis instead of starting a private one.
    pub redis_url: Option<String>,
    /// Uncompressed bytes of logs to generate.
    pub size: u64,
    /// Start a private three-master cluster instead of one server.
    pub cluster: bool,
    /// Key prefix, as `--prefix`.
    pub prefix: String,
    pub receivers: u32,
    pub quiet: bool,
}

/// Runs the demo and prints what it did.
pub async fn run(options: DemoOptions) -> Result<()> {
    let (url, _private) = private_redis(&options)?;
    let work = tempfile::Builder::new()
        .prefix("redistribute-demo-")
        .tempdir()
        .map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let source = work.path().join("logs");
    let files = generate_logs(&options, &source).await?;
    let channel = format!("demo-{}", std::process::id());
    let ids: Vec<String> = (0..options.receivers).map(|i| i.to_string()).collect();
    let started = Instant::now();
    broadcast(&url, &options, &channel, &ids, &files, work.path()).await?;
    let elapsed = started.elapsed();
    verify_copies(work.path(), &ids, &files)?;
    report_broadcast(&url, &options, &channel, ids.len(), &files, elapsed).await?;
    if options.redis_url.is_some() {
        // The job writes the book's daily:* keys, which carry no prefix: on
        // someone's own Redis they could mix with real counts.
        say(
            &options,
            "skipping the aggregation part on a Redis the demo did not start",
        );
        return Ok(());
    }
    aggregate_by_country(&url, &options, &source, files.len()).await
}

/// A Redis the demo started, stopped when this is dropped.
enum PrivateRedis {
    Server { _running: LocalRedis },
    Cluster { _running: LocalCluster },
}

/// The URL of the Redis to use: the one given, or a private server or
/// cluster started now.
fn private_redis(options: &DemoOptions) -> Result<(String, Option<PrivateRedis>)> {
    if let Some(url) = &options.redis_url {
        return Ok((url.clone(), None));
    }
    if options.cluster {
        let cluster = LocalCluster::start(LocalClusterOptions::default())
            .map_err(|e| Error::io("redis-server", e))?;
        let ports: Vec<String> = cluster
            .nodes()
            .iter()
            .map(|n| n.port().to_string())
            .collect();
        say(
            options,
            &format!(
                "started a private Redis Cluster of three masters on ports {}",
                ports.join(", ")
            ),
        );
        return Ok((
            cluster.url(),
            Some(PrivateRedis::Cluster { _running: cluster }),
        ));
    }
    let redis = LocalRedis::start(LocalRedisOptions::default())
        .map_err(|e| Error::io("redis-server", e))?;
    say(
        options,
        &format!("started a private redis-server on port {}", redis.port()),
    );
    Ok((redis.url(), Some(PrivateRedis::Server { _running: redis })))
}

/// Writes a day-per-file set of access logs under `source`.
async fn generate_logs(options: &DemoOptions, source: &Path) -> Result<Vec<inputs::Input>> {
    say(
        options,
        &format!(
            "generating {} of access logs, some of them gzip'd",
            bytesize::ByteSize(options.size)
        ),
    );
    let (dir, size) = (source.to_owned(), options.size);
    tokio::task::spawn_blocking(move || loggen::write_log_dir(&dir, size, 8, LogFormat::Combined))
        .await
        .map_err(|e| Error::io(source, std::io::Error::other(e)))?
        .map_err(|e| Error::io(source, e))?;
    let files = inputs::collect(&[source.to_owned()], None)?;
    let on_disk: u64 = files.iter().map(|file| file.size).sum();
    say(
        options,
        &format!(
            "{} of logs take {} on disk in {}",
            bytesize::ByteSize(options.size),
            bytesize::ByteSize(on_disk),
            counted(files.len() as u64, "file", "files")
        ),
    );
    Ok(files)
}

/// Sends `files` to receivers `ids`, each writing copies under
/// `work/copy-ID`, until all of them have them.
async fn broadcast(
    url: &str,
    options: &DemoOptions,
    channel: &str,
    ids: &[String],
    files: &[inputs::Input],
    work: &Path,
) -> Result<()> {
    // The sender first: it creates the channel, which receivers started
    // earlier would say they wait for.
    let mut send = SendOptions::new(channel, Audience::Broadcast(ids.to_vec()));
    send.prefix = options.prefix.clone();
    let mut sender = Sender::open(url, send).await?;
    let mut receivers = Vec::new();
    for id in ids {
        let mut receive = ReceiveOptions::new(channel, id);
        receive.prefix = options.prefix.clone();
        let receiver = Receiver::connect(url, receive).await?;
        receivers.push(tokio::spawn(receive_all(
            receiver,
            work.join(format!("copy-{id}")),
        )));
    }
    let total: u64 = files.iter().map(|f| f.size).sum();
    sender.set_progress(progress::reporter(&progress::bytes(
        total,
        options.quiet,
        "sending",
    )));
    say(
        options,
        &format!(
            "sending {} ({}) to receivers {}",
            counted(files.len() as u64, "file", "files"),
            bytesize::ByteSize(total),
            ids.join(", ")
        ),
    );
    deliver(&sender, files, receivers, "receiver").await
}

/// Checks every receiver's copy of every file against the original.
fn verify_copies(work: &Path, ids: &[String], files: &[inputs::Input]) -> Result<()> {
    for id in ids {
        let copy = work.join(format!("copy-{id}"));
        for file in files {
            let original = file.path.as_deref().expect("demo inputs are files");
            if digest(original)? != digest(&copy.join(&file.name))? {
                return Err(Error::Corrupt {
                    name: file.name.clone(),
                    reason: format!("receiver {id}'s copy differs from the original"),
                });
            }
        }
    }
    Ok(())
}

/// Prints what the broadcast took, and purges its channel.
async fn report_broadcast(
    url: &str,
    options: &DemoOptions,
    channel: &str,
    receivers: usize,
    files: &[inputs::Input],
    elapsed: std::time::Duration,
) -> Result<()> {
    let redis = Redis::connect(url).await?;
    let stored = status::channel_status(&redis, &options.prefix, channel)
        .await?
        .map_or(0, |s| s.bytes_stored);
    let leftover = purge(&redis, &options.prefix, channel).await?;
    let total: u64 = files.iter().map(|f| f.size).sum();
    let seconds = elapsed.as_secs_f64();
    println!(
        "demo: {}, {} sent once (stored in Redis as {}: plain logs compressed, gzip'd ones as they are) and received {} times in {:.2} s: {}/s in, {}/s out; all {} copies verified (BLAKE3); {} small channel records purged",
        counted(files.len() as u64, "file", "files"),
        bytesize::ByteSize(total),
        bytesize::ByteSize(stored),
        receivers,
        seconds,
        bytesize::ByteSize((total as f64 / seconds) as u64),
        bytesize::ByteSize((total as f64 * receivers as f64 / seconds) as u64),
        files.len() * receivers,
        leftover,
    );
    Ok(())
}

/// The flagship job on the same logs: two aggregation workers share the
/// files, look each visitor up in the built-in country table, and the
/// report prints the top countries per day.
async fn aggregate_by_country(
    url: &str,
    options: &DemoOptions,
    source: &Path,
    days: usize,
) -> Result<()> {
    let channel = format!("demo-aggregate-{}", std::process::id());
    let started = Instant::now();
    let mut send = SendOptions::new(&channel, Audience::Workers);
    send.prefix = options.prefix.clone();
    let sender = Sender::open(url, send).await?;
    let mut workers = Vec::new();
    for id in ["worker-a", "worker-b"] {
        let mut receive = ReceiveOptions::new(&channel, id);
        receive.prefix = options.prefix.clone();
        let job = AggregateOptions {
            prefix: options.prefix.clone(),
            dimensions: vec![Dimension::Country],
            lines: LineOptions {
                format: FormatChoice::Named(LogFormat::Combined),
                ..LineOptions::default()
            },
            table_files: Vec::new(),
            namespace: String::new(),
            keep: None,
        };
        let redis = Redis::connect(url).await?;
        let mut files = Receiver::connect(url, receive).await?;
        workers.push(tokio::spawn(async move {
            aggregate::run(&redis, &mut files, &job).await
        }));
    }
    say(
        options,
        "counting visits per day and country with two aggregation workers",
    );
    let files = inputs::collect(&[source.to_owned()], None)?;
    deliver(&sender, &files, workers, "aggregation worker").await?;
    let seconds = started.elapsed().as_secs_f64();
    let redis = Redis::connect(url).await?;
    purge(&redis, &options.prefix, &channel).await?;
    let query = ReportQuery {
        by: Dimension::Country,
        days: DaySelection::Range {
            from: "2026-11-01".into(),
            to: format!("2026-11-{days:02}"),
        },
        top: 5,
        namespace: String::new(),
    };
    let report = report::gather(&redis, &query).await?;
    let visits: u64 = report.days.iter().map(|d| d.total).sum();
    println!(
        "demo: {visits} visits counted per day and country in {seconds:.2} s ({:.1} million lines/s); top 5 per day:\n",
        visits as f64 / seconds / 1e6
    );
    print!("{}", report.to_table());
    Ok(())
}

/// Sends `files`, marks the end of input, waits until everyone finished,
/// and collects the tasks that received them.
async fn deliver<T>(
    sender: &Sender,
    files: &[inputs::Input],
    tasks: Vec<tokio::task::JoinHandle<Result<T>>>,
    what: &str,
) -> Result<()> {
    for file in files {
        let path = file.path.as_deref().expect("demo inputs are files");
        sender.send_file(path, &file.name).await?;
    }
    sender.finish().await?;
    sender.wait_until_done().await?;
    for task in tasks {
        task.await
            .map_err(|e| Error::io(what, std::io::Error::other(e)))??;
    }
    Ok(())
}

async fn receive_all(mut receiver: Receiver, out: PathBuf) -> Result<u64> {
    Sink::Dir(out)
        .receive_all(&mut receiver, Decode::None, None)
        .await
}

fn digest(path: &Path) -> Result<blake3::Hash> {
    let mut hasher = blake3::Hasher::new();
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    hasher.update_reader(file).map_err(|e| Error::io(path, e))?;
    Ok(hasher.finalize())
}

fn say(options: &DemoOptions, message: &str) {
    if !options.quiet {
        eprintln!("demo: {message}");
    }
}
