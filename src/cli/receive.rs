//! `redistribute receive`: files from a channel into a directory, a
//! command or stdout, in either wire format.

use redistribute::classic::ClassicReceiver;
use redistribute::{Error, FileSource, ReceiveOptions, Receiver, Result, Sink};

use super::args::{Protocol, ReceiveArgs};
use super::progress;

pub async fn run(url: &str, prefix: &str, quiet: bool, args: ReceiveArgs) -> Result<()> {
    let sink = match (&args.out, &args.exec) {
        (Some(dir), _) => Sink::Dir(dir.clone()),
        (_, Some(command)) => Sink::Exec(command.clone()),
        _ => Sink::Stdout,
    };
    match args.protocol {
        Protocol::Classic if args.follow => Err(Error::Usage(
            "--protocol classic does not support --follow (the book's receivers stop at `:done`)"
                .into(),
        )),
        // The book's receiver, resuming a file it was killed in the middle of.
        Protocol::Classic => {
            let files = ClassicReceiver::connect(url, &args.channel, &args.id).await?;
            receive_all(files, &sink, quiet, &args).await
        }
        Protocol::Native => {
            let mut options = ReceiveOptions::new(&args.channel, &args.id);
            options.prefix = prefix.to_owned();
            options.follow = args.follow;
            options.claim_after = args.claim_after;
            options.allow_eviction = args.allow_eviction;
            let files = Receiver::connect(url, options).await?;
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
    let bar = progress::bytes(0, quiet, "receiving");
    let received = sink
        .receive_all(
            &mut files,
            args.decode,
            Some(progress::reporter(&bar).as_ref()),
        )
        .await?;
    bar.finish_and_clear();
    tracing::info!("done: {received} files received");
    super::check_nothing_parked(&files, args.protocol, &args.channel)
}
