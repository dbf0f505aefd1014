//! `redistribute aggregate`: count visits per day from logs as they arrive.

use redistribute::classic::ClassicReceiver;
use redistribute::job::aggregate::{self, AggregateOptions};
use redistribute::redis::Redis;
use redistribute::{Error, FileSource, ReceiveOptions, Receiver, Result};

use super::args::{AggregateArgs, Protocol};

pub async fn run(url: &str, prefix: &str, args: AggregateArgs) -> Result<()> {
    let options = AggregateOptions {
        prefix: prefix.to_owned(),
        channel: args.channel.clone(),
        id: args.id.clone(),
        dimensions: args.by.clone(),
        format: args.log_format,
        table_files: args.table.clone(),
    };
    if args.protocol == Protocol::Classic && args.follow {
        return Err(Error::Usage(
            "--protocol classic does not support --follow (the book's receivers stop at `:done`)"
                .into(),
        ));
    }
    let redis = Redis::connect(url).await?;
    match args.protocol {
        Protocol::Classic => {
            let files = ClassicReceiver::connect(url, &args.channel, &args.id).await?;
            count(&redis, files, &options, args.protocol).await
        }
        Protocol::Native => {
            let mut receive = ReceiveOptions::new(&args.channel, &args.id);
            receive.prefix = prefix.to_owned();
            receive.follow = args.follow;
            receive.claim_after = args.claim_after;
            receive.allow_eviction = args.allow_eviction;
            let files = Receiver::connect(url, receive).await?;
            count(&redis, files, &options, args.protocol).await
        }
    }
}

async fn count(
    redis: &Redis,
    mut files: impl FileSource,
    options: &AggregateOptions,
    protocol: Protocol,
) -> Result<()> {
    let counted = aggregate::run(redis, &mut files, options).await?;
    super::check_nothing_parked(&files, protocol, &options.channel)?;
    tracing::info!("done: counted {counted} files");
    Ok(())
}
