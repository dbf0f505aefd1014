//! `--metrics ADDR`: the libraries' counters (`redistribute_transfer::
//! telemetry`, `redistribute_job::telemetry`) served in Prometheus' text
//! format, labelled with the process's channel, role and id, present
//! from the first scrape, with gauges of the channel's backlog beside
//! them.

use std::net::SocketAddr;
use std::time::Duration;

use metrics::gauge;
use redistribute_transfer::native::status;
use redistribute_transfer::redis::Redis;
use redistribute_transfer::{Error, Result};

/// How often the backlog gauges are read from Redis.
const BACKLOG_EVERY: Duration = Duration::from_secs(5);

/// Who this process is, on every sample.
pub struct Labels<'a> {
    pub channel: &'a str,
    /// `sender`, `receiver` or `aggregate`.
    pub role: &'static str,
    /// The receiver's or worker's id; none for a sender.
    pub id: Option<&'a str>,
}

/// Where the backlog gauges come from: a native channel's status.
pub struct Backlog<'a> {
    pub url: &'a str,
    pub prefix: &'a str,
}

/// Serves the metrics on `address`, if given; with `backlog`, also keeps
/// the backlog gauges current.
pub async fn serve(
    address: Option<SocketAddr>,
    labels: Labels<'_>,
    backlog: Option<Backlog<'_>>,
) -> Result<()> {
    let Some(address) = address else {
        return Ok(());
    };
    let mut builder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(address)
        .add_global_label("channel", labels.channel)
        .add_global_label("role", labels.role);
    if let Some(id) = labels.id {
        builder = builder.add_global_label("id", id);
    }
    builder
        .install()
        .map_err(|e| Error::Usage(format!("--metrics {address}: {e}")))?;
    redistribute_transfer::telemetry::describe();
    redistribute_job::telemetry::describe();
    if let Some(backlog) = backlog {
        let redis = Redis::connect(backlog.url)
            .await?
            .with_patience(Duration::from_secs(3));
        let (prefix, channel) = (backlog.prefix.to_owned(), labels.channel.to_owned());
        tokio::spawn(async move { keep_backlog_current(redis, prefix, channel).await });
    }
    tracing::info!("serving metrics on http://{address}/metrics");
    Ok(())
}

/// Sets the backlog gauges from the channel's status every few seconds; a
/// read that fails leaves them as they were (`status` says why).
async fn keep_backlog_current(redis: Redis, prefix: String, channel: String) {
    metrics::describe_gauge!(
        "redistribute_channel_bytes_held",
        "Bytes of the channel's chunks in Redis, counted against its limit"
    );
    metrics::describe_gauge!(
        "redistribute_channel_files_in_flight",
        "Files announced and not yet finished by everyone"
    );
    metrics::describe_gauge!(
        "redistribute_receiver_files_behind",
        "Files announced that this receiver has not finished"
    );
    metrics::describe_gauge!(
        "redistribute_receiver_bytes_behind",
        "Bytes announced that this receiver has not read"
    );
    metrics::describe_gauge!(
        "redistribute_receiver_seconds_behind",
        "How long this receiver needs for its backlog at its pace"
    );
    loop {
        if let Ok(Some(status)) = status::channel_backlog(&redis, &prefix, &channel).await {
            gauge!("redistribute_channel_bytes_held").set(status.bytes_held as f64);
            gauge!("redistribute_channel_files_in_flight").set(status.files_in_flight as f64);
            for receiver in &status.receivers {
                let id = receiver.id.clone();
                let behind = |value: Option<u64>| value.unwrap_or(0) as f64;
                gauge!("redistribute_receiver_files_behind", "receiver" => id.clone())
                    .set(behind(receiver.files_behind));
                gauge!("redistribute_receiver_bytes_behind", "receiver" => id.clone())
                    .set(behind(receiver.bytes_behind));
                gauge!("redistribute_receiver_seconds_behind", "receiver" => id)
                    .set(behind(receiver.eta_seconds));
            }
        }
        tokio::time::sleep(BACKLOG_EVERY).await;
    }
}
