//! `redistribute send`: files, directories or stdin into a channel, in
//! either wire format; `--follow` keeps watching directories.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use redistribute_transfer::classic::{self, ClassicSender};
use redistribute_transfer::files::inputs::{self, Input};
use redistribute_transfer::text::counted;
use redistribute_transfer::{Audience, Error, Result, SendOptions, Sender, Sent};

use super::args::{Protocol, SendArgs};
use super::metrics::{self, Backlog, Labels};
use super::progress;

pub async fn run(url: &str, prefix: &str, quiet: bool, args: SendArgs) -> Result<()> {
    check_workers(&args)?;
    let labels = Labels {
        channel: &args.channel,
        role: "sender",
        id: None,
    };
    let backlog = (args.protocol == Protocol::Native).then_some(Backlog { url, prefix });
    metrics::serve(args.metrics, labels, backlog).await?;
    if args.protocol == Protocol::Classic {
        return send_classic(url, quiet, args).await;
    }
    let inputs = inputs::collect(&args.paths, args.name.as_deref())?;
    if args.split.is_some() && inputs.iter().any(|input| input.path.is_none()) {
        return Err(Error::Usage(
            "pieces are cut from files, so stdin cannot be sent with --split; save it to a file first"
                .into(),
        ));
    }
    let mut sender = Sender::open(url, send_options(prefix, &args)?).await?;
    // Pieces of a compressed input carry its decoded bytes, which no size
    // on disk tells: those runs count without a total.
    let total = match args.split {
        Some(_) => 0,
        None => inputs.iter().map(|i| i.size).sum(),
    };
    let bar = progress::bytes(total, quiet, "sending");
    sender.set_progress(progress::reporter(&bar));
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
    send_all(&sender, &inputs, &bar).await?;
    sender.wait_until_done().await?;
    tracing::info!("all receivers finished; the channel's data is gone from Redis");
    check_nothing_parked(&sender, &args.channel).await
}

/// The library's options for what `args` asks.
fn send_options(prefix: &str, args: &SendArgs) -> Result<SendOptions> {
    let mut options = SendOptions::new(&args.channel, audience(args)?);
    options.prefix = prefix.to_owned();
    options.limit = args.limit;
    options.chunk_size = args.chunk_size;
    options.compress = args.compress;
    options.allow_eviction = args.allow_eviction;
    options.split = args.split;
    Ok(options)
}

/// Sends `inputs` and marks the end of input; files an earlier run sent
/// leave what `bar` counts on.
async fn send_all(sender: &Sender, inputs: &[Input], bar: &indicatif::ProgressBar) -> Result<()> {
    let started = Instant::now();
    let (mut bytes, mut count) = (0, 0);
    let mut at = 0;
    while at < inputs.len() {
        let outcomes = send_some(sender, &inputs[at..]).await?;
        for (input, outcome) in inputs[at..].iter().zip(&outcomes) {
            match outcome {
                Some(sent) => (bytes, count) = (bytes + sent, count + 1),
                // Sent by an earlier run: not part of what is left to do.
                None => bar.set_length(bar.length().unwrap_or(0).saturating_sub(input.size)),
            }
        }
        at += outcomes.len();
    }
    sender.finish().await?;
    bar.finish_and_clear();
    tracing::info!(
        "sent {} ({}) in {:.1} s; waiting for receivers to finish",
        counted(count as u64, "file", "files"),
        bytesize::ByteSize(bytes),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Fails, naming the files and who parked them, when receivers gave up on
/// any file.
async fn check_nothing_parked(sender: &Sender, channel: &str) -> Result<()> {
    let parked = sender.parked().await?;
    if parked.is_empty() {
        return Ok(());
    }
    let detail: Vec<String> = parked
        .iter()
        .map(|p| format!("{} (by {}: {})", p.file, p.receiver, p.reason))
        .collect();
    Err(Error::FilesParked {
        channel: channel.to_owned(),
        count: parked.len() as u64,
        detail: format!(": {}", detail.join("; ")),
    })
}

/// `--workers` is a switch, so in `send --workers 3 logs/` the `3` would
/// be taken for a file: say what was meant instead.
fn check_workers(args: &SendArgs) -> Result<()> {
    let Some(first) = args.paths.first().and_then(|p| p.to_str()) else {
        return Ok(());
    };
    if args.workers && first.parse::<u32>().is_ok() && !args.paths[0].exists() {
        return Err(Error::Usage(format!(
            "--workers takes no number: any number of workers may join the channel, and `{first}` is not a file; drop it (send --workers --channel C DIR)"
        )));
    }
    Ok(())
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

/// Sends the first of `inputs`, or the local files it begins with, up to
/// [`FILES_AT_ONCE`] (small ones go several a round trip); for each,
/// the bytes sent, `None` when an earlier run sent it already.
async fn send_some(sender: &Sender, inputs: &[Input]) -> Result<Vec<Option<u64>>> {
    let files: Vec<(PathBuf, String)> = inputs
        .iter()
        .take(FILES_AT_ONCE)
        .map_while(|input| Some((input.path.clone()?, input.name.clone())))
        .collect();
    if files.is_empty() {
        return Ok(vec![send_one(sender, &inputs[0]).await?]);
    }
    let outcomes = sender.send_files(&files).await?;
    Ok(files
        .iter()
        .zip(outcomes)
        .map(|((_, name), outcome)| match outcome {
            Sent::Uploaded { bytes } => {
                tracing::info!("sent {name} ({})", bytesize::ByteSize(bytes));
                Some(bytes)
            }
            Sent::AlreadySent => None,
        })
        .collect())
}

/// Local files handed to the library at once: enough to fill its steps
/// of several small files, few enough that `sent` lines come as it goes.
const FILES_AT_ONCE: usize = 64;

/// Sends one input; `None` when an earlier run sent it already.
async fn send_one(sender: &Sender, input: &Input) -> Result<Option<u64>> {
    match &input.path {
        Some(path) => match sender.send_file(path, &input.name).await? {
            Sent::Uploaded { bytes } => {
                tracing::info!("sent {} ({})", input.name, bytesize::ByteSize(bytes));
                Ok(Some(bytes))
            }
            Sent::AlreadySent => Ok(None),
        },
        None => {
            let bytes = sender.send_reader(&input.name, tokio::io::stdin()).await?;
            tracing::info!(
                "sent {} from stdin ({})",
                input.name,
                bytesize::ByteSize(bytes)
            );
            Ok(Some(bytes))
        }
    }
}

/// Watches directories and sends new or changed files once they have been
/// quiet for `settle`. Runs until interrupted. Files that vanish between
/// listing and reading (rotated away) are skipped with a warning.
async fn follow(sender: &Sender, dirs: &[PathBuf], settle: Duration) -> Result<()> {
    let mut known: HashSet<(String, u64, Option<SystemTime>)> = HashSet::new();
    let mut refused: HashSet<String> = HashSet::new();
    tracing::info!(
        "following {} for new files",
        counted(dirs.len() as u64, "directory", "directories")
    );
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
                Err(error @ Error::SourceChanged { .. }) => {
                    // Not remembered: sent again once it has settled.
                    tracing::warn!("{error}");
                    continue;
                }
                Err(error @ Error::HostileName { .. }) => {
                    tracing::warn!("{error}; skipping it");
                    refused.insert(input.name.clone());
                }
                Err(error) => return Err(error),
            }
            known.insert(identity);
        }
        // Receivers that lost files' data get them uploaded again.
        sender.resupply().await?;
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
    classic::check_sizes(&files)?;
    let Audience::Broadcast(receivers) = audience(&args)? else {
        unreachable!("--workers was refused above");
    };
    let mut sender = ClassicSender::open(url, &args.channel, receivers, args.limit).await?;
    let bar = progress::bytes(files.iter().map(|f| f.2).sum(), quiet, "sending");
    sender.set_progress(progress::reporter(&bar));
    for (path, name, _) in &files {
        sender.send_file(path, name).await?;
    }
    sender.finish().await?;
    bar.finish_and_clear();
    tracing::info!(
        "sent {} and `:done`; deleting each file once every receiver counted it",
        counted(files.len() as u64, "file", "files")
    );
    sender.wait_until_done().await
}
