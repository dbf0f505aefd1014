//! `redistribute aggregate`: count visits per day from logs as they arrive.

use redistribute_job::aggregate::{self, AggregateOptions};
use redistribute_job::logline::{ClientIp, FormatChoice, LineOptions, LogFormat};
use redistribute_transfer::classic::ClassicReceiver;
use redistribute_transfer::redis::Redis;
use redistribute_transfer::text::counted;
use redistribute_transfer::{Error, FileSource, Receiver, Result};

use super::args::{AggregateArgs, ClientIpArg, Protocol, SourceArgs};

pub async fn run(url: &str, prefix: &str, namespace: String, args: AggregateArgs) -> Result<()> {
    super::serve_metrics_of(url, prefix, "aggregate", &args.source).await?;
    let source = &args.source;
    let options = AggregateOptions {
        prefix: prefix.to_owned(),
        dimensions: args.by.clone(),
        lines: line_options(&args)?,
        table_files: args.table.clone(),
        namespace,
        keep: args.keep,
    };
    source.check()?;
    let redis = Redis::connect(url).await?;
    match source.protocol {
        Protocol::Classic => {
            let files = ClassicReceiver::connect(url, &source.channel, &source.id).await?;
            count(&redis, files, &options, source).await
        }
        Protocol::Native => {
            let files = Receiver::connect(url, source.receive_options(prefix, false)).await?;
            count(&redis, files, &options, source).await
        }
    }
}

/// How `args` asks for log lines to be read.
fn line_options(args: &AggregateArgs) -> Result<LineOptions> {
    let client_ip = match args.client_ip {
        ClientIpArg::Forwarded => ClientIp::Forwarded {
            trusted: args.trusted_proxy.clone(),
        },
        ClientIpArg::Remote if !args.trusted_proxy.is_empty() => {
            return Err(Error::Usage(
                "--trusted-proxy is for --client-ip forwarded: pass both".into(),
            ));
        }
        ClientIpArg::Remote => ClientIp::Remote,
    };
    let json_possible = matches!(
        args.log_format,
        FormatChoice::Auto | FormatChoice::Named(LogFormat::Json)
    );
    if !json_possible && (args.ip_field.is_some() || args.time_field.is_some()) {
        return Err(Error::Usage(
            "--ip-field and --time-field name JSON fields: use them with --log-format json or auto"
                .into(),
        ));
    }
    Ok(LineOptions {
        format: args.log_format.clone(),
        client_ip,
        ip_field: args.ip_field.clone(),
        time_field: args.time_field.clone(),
    })
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
