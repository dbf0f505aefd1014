//! `redistribute receive`: files from a channel into a directory, a
//! command or stdout, in either wire format.

use redistribute_transfer::classic::ClassicReceiver;
use redistribute_transfer::text::counted;
use redistribute_transfer::{FileSource, Receiver, Result, Sink};

use super::args::{Protocol, ReceiveArgs};
use super::progress;

pub async fn run(url: &str, prefix: &str, quiet: bool, args: ReceiveArgs) -> Result<()> {
    super::serve_metrics_of(url, prefix, "receiver", &args.source).await?;
    let sink = match (&args.out, &args.exec) {
        (Some(dir), _) => Sink::Dir(dir.clone()),
        (_, Some(command)) => Sink::Exec(command.clone()),
        _ => Sink::Stdout,
    };
    let source = &args.source;
    source.check()?;
    match source.protocol {
        // The book's receiver, resuming a file it was killed in the middle of.
        Protocol::Classic => {
            let files = ClassicReceiver::connect(url, &source.channel, &source.id).await?;
            receive_all(files, &sink, quiet, &args).await
        }
        Protocol::Native => {
            let in_order = matches!(sink, Sink::Stdout);
            let files = Receiver::connect(url, source.receive_options(prefix, in_order)).await?;
            receive_all(files, &sink, quiet, &args).await
        }
    }
}

async fn receive_all(
    mut files: impl FileSource,
    sink: &Sink,
    quiet: bool,
    args: &ReceiveArgs,
) -> Result<()> {
    let display = progress::Receiving::new(quiet);
    let received = sink
        .receive_all(&mut files, args.decode, Some(&display))
        .await;
    display.finish();
    let received = received?;
    tracing::info!("done: {} received", counted(received, "file", "files"));
    super::check_nothing_parked(&files, &args.source)
}
