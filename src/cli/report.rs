//! `redistribute report`: the top places per day, as a table, JSON, CSV or
//! an SVG chart.

use redistribute::job::report::{self, DaySelection, ReportQuery};
use redistribute::redis::Redis;
use redistribute::{Error, Result};

use super::args::ReportArgs;

pub async fn run(url: &str, namespace: String, args: ReportArgs) -> Result<()> {
    let days = match (args.day, args.from, args.to) {
        (Some(day), _, _) => DaySelection::One(day),
        (None, Some(from), Some(to)) => DaySelection::Range { from, to },
        _ => DaySelection::All,
    };
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
