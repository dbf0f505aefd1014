//! `redistribute aggregate`: count visits per day from logs as they arrive.

use redistribute::classic::ClassicReceiver;
use redistribute::job::aggregate::{self, AggregateOptions};
use redistribute::redis::Redis;
use redistribute::text::counted;
use redistribute::{FileSource, Receiver, Result};

use super::args::{AggregateArgs, Protocol, SourceArgs};

pub async fn run(url: &str, prefix: &str, namespace: String, args: AggregateArgs) -> Result<()> {
    super::serve_metrics(args.source.metrics)?;
    let source = &args.source;
    let options = AggregateOptions {
        prefix: prefix.to_owned(),
        channel: source.channel.clone(),
        id: source.id.clone(),
        dimensions: args.by.clone(),
        format: args.log_format,
        table_files: args.table.clone(),
        namespace,
    };
    source.check()?;
    let redis = Redis::connect(url).await?;
    match source.protocol {
        Protocol::Classic => {
            let files = ClassicReceiver::connect(url, &source.channel, &source.id).await?;
            count(&redis, files, &options, source).await
        }
        Protocol::Native => {
            let files = Receiver::connect(url, source.receive_options(prefix)).await?;
            count(&redis, files, &options, source).await
        }
    }
}

async fn count(
    redis: &Redis,
    mut files: impl FileSource,
    options: &AggregateOptions,
    source: &SourceArgs,
) -> Result<()> {
    let files_counted = aggregate::run(redis, &mut files, options).await?;
    super::check_nothing_parked(&files, source)?;
    tracing::info!("done: counted {}", counted(files_counted, "file", "files"));
    Ok(())
}
