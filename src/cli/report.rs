//! `redistribute report`: the top places per day, as a table, JSON, CSV or
//! an SVG chart.

use redistribute_job::report::{self, DaySelection, ReportQuery};
use redistribute_transfer::redis::Redis;
use redistribute_transfer::{Error, Result};

use super::args::ReportArgs;

/// The days asked for by `--day`, `--from`, `--to` and `--last` (clap has
/// already refused `--day` with any other).
fn days(
    day: Option<String>,
    from: Option<String>,
    to: Option<String>,
    last: Option<u32>,
) -> Result<DaySelection> {
    let usage = |message: &str| Err(Error::Usage(message.into()));
    match (day, from, to, last) {
        (Some(day), ..) => Ok(DaySelection::One(day)),
        (None, None, None, None) => Ok(DaySelection::All),
        (None, Some(from), Some(to), None) => Ok(DaySelection::Range { from, to }),
        (None, Some(from), None, Some(count)) => DaySelection::starting(&from, count),
        (None, None, Some(to), Some(count)) => DaySelection::ending(&to, count),
        (None, None, None, Some(count)) => {
            let today = jiff::ZonedDateTime::now().date().to_string();
            DaySelection::ending(&today, count)
        }
        (None, Some(_), Some(_), Some(_)) => {
            usage("--from, --to and --last together over-determine the range: give two of them")
        }
        (None, Some(_), None, None) => usage("--from needs --to or --last to end the range"),
        (None, None, Some(_), None) => usage("--to needs --from or --last to start the range"),
    }
}

pub async fn run(url: &str, namespace: String, args: ReportArgs) -> Result<()> {
    let days = days(args.day, args.from, args.to, args.last)?;
    days.check()?;
    let redis = Redis::connect(url).await?;
    let report = report::gather(
        &redis,
        &ReportQuery {
            by: args.by,
            days,
            top: args.top,
            namespace,
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
