//! What a range of days is for, seeing what grows and what shrinks: the
//! visits of all members with their trend, then the followed members one
//! line each, labelled at their ends rather than through a legend. Days sit
//! at their place on the calendar, so days without visits show as a longer
//! segment instead of vanishing.

use std::fmt::Write;

use jiff::civil::Date;

use super::super::Report;
use super::super::days::parse_day;
use super::{CHAR_WIDTH, Chart, GAP, HEADING, INK, MARGIN, MUTED, RULE, SMALL_NOTE, SUMMARY};
use super::{WIDTH, escape, label};
use redistribute_transfer::text::thousands;

const TOTALS_HEIGHT: f64 = 110.0;
const MEMBERS_HEIGHT: f64 = 210.0;
/// Room left of a plot for its value labels.
const AXIS_WIDTH: f64 = 52.0;
const MAX_LABEL_CHARS: usize = 24;
/// Closest two end labels may sit, baseline to baseline.
const LABEL_SPACING: f64 = 15.0;
/// Up to this many days, each day's value gets a dot (with a tooltip).
const MAX_DOTS: usize = 62;
const GRID: &str = "#eeeeee";

/// The horizontal layout both plots share.
struct Days {
    /// Each report day's distance in days from the first.
    offsets: Vec<i64>,
    first: Date,
    /// Days from the first to the last, at least 1.
    span: i64,
    left: f64,
    right: f64,
}

impl Days {
    fn x(&self, offset: i64) -> f64 {
        self.left + (self.right - self.left) * offset as f64 / self.span as f64
    }
}

/// One plot's vertical scale.
struct Plot {
    top: f64,
    height: f64,
    /// The value at the top edge: a round number at or above the largest.
    ceiling: f64,
}

impl Plot {
    fn new(top: f64, height: f64, largest: u64) -> (Plot, f64) {
        let step = round_step(largest.max(1) as f64 / 6.0);
        let ceiling = (largest.max(1) as f64 / step).ceil() * step;
        (
            Plot {
                top,
                height,
                ceiling,
            },
            step,
        )
    }

    fn y(&self, value: f64) -> f64 {
        self.top + self.height * (1.0 - value / self.ceiling)
    }
}

/// Draws both sections from `top` down; returns where the next starts.
pub(super) fn draw(chart: &mut Chart, top: f64) -> f64 {
    let Some(days) = days(chart.report) else {
        return top;
    };
    let y = draw_totals(chart, &days, top) + GAP;
    draw_followed(chart, &days, y) + GAP
}

/// The visits of all members day by day, with their trend; returns
/// where it ends.
fn draw_totals(chart: &mut Chart, days: &Days, top: f64) -> f64 {
    let report = chart.report;
    let totals: Vec<u64> = report.days.iter().map(|day| day.total).collect();
    let heading = format!("Visits of all {}", report.by.plural());
    chart.text(MARGIN, top + 16.0, &HEADING, "section", &heading);
    if let Some(trend) = trend(days, &totals) {
        chart.text(
            WIDTH - MARGIN,
            top + 16.0,
            &SUMMARY,
            "trend",
            &trend.summary,
        );
        let (plot, step) = Plot::new(
            top + 40.0,
            TOTALS_HEIGHT,
            *totals.iter().max().unwrap_or(&0),
        );
        grid(chart, days, &plot, step);
        polyline(chart, days, &plot, &totals, INK, "trend-total", "all");
        let _ = writeln!(
            chart.body,
            r#"<line class="trend-fit" x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{MUTED}" stroke-width="1.5" stroke-dasharray="5 4"/>"#,
            days.x(0),
            plot.y(trend.first),
            days.x(days.span),
            plot.y(trend.last),
        );
        dots(chart, days, &plot, &totals, INK, "all");
    }
    x_labels(chart, days, top + 40.0 + TOTALS_HEIGHT)
}

/// The visits of the members followed, one line each; returns where it
/// ends.
fn draw_followed(chart: &mut Chart, days: &Days, y: f64) -> f64 {
    let report = chart.report;
    let heading = match report.series.len() {
        1 => format!("The {} with the most visits", report.by.key()),
        n => format!("The {n} {} with the most visits", report.by.plural()),
    };
    chart.text(MARGIN, y + 16.0, &HEADING, "section", &heading);
    let largest = report
        .series
        .iter()
        .flat_map(|series| &series.visits)
        .max()
        .copied()
        .unwrap_or(0);
    let (plot, step) = Plot::new(y + 40.0, MEMBERS_HEIGHT, largest);
    grid(chart, days, &plot, step);
    // The least visited first, so the biggest lines are drawn on top.
    for series in report.series.iter().rev() {
        let color = chart.color_of(&series.member).to_owned();
        let title = series.title();
        polyline(
            chart,
            days,
            &plot,
            &series.visits,
            &color,
            "series",
            &series.member,
        );
        dots(chart, days, &plot, &series.visits, &color, &title);
    }
    end_labels(chart, days, &plot);
    x_labels(chart, days, y + 40.0 + MEMBERS_HEIGHT)
}

/// The days' layout, with room on the right for the end labels; `None`
/// when a day is not a date (then there is no calendar to draw on).
fn days(report: &Report) -> Option<Days> {
    let dates: Option<Vec<Date>> = report.days.iter().map(|day| parse_day(&day.day)).collect();
    let dates = dates?;
    let first = *dates.first()?;
    let offsets: Vec<i64> = dates
        .iter()
        .map(|date| first.until(*date).map(|span| i64::from(span.get_days())))
        .collect::<Result<_, _>>()
        .ok()?;
    let label_chars = report
        .series
        .iter()
        .map(|series| label(&series.title(), MAX_LABEL_CHARS).chars().count())
        .max()
        .unwrap_or(0);
    let label_room = (label_chars as f64 * CHAR_WIDTH + 16.0).clamp(60.0, 240.0);
    Some(Days {
        span: offsets.last().copied().unwrap_or(0).max(1),
        offsets,
        first,
        left: MARGIN + AXIS_WIDTH,
        right: WIDTH - MARGIN - label_room,
    })
}

/// A fitted straight line through the totals and what it says.
struct Trend {
    first: f64,
    last: f64,
    summary: String,
}

/// Least squares over (day offset, visits): the straight line most readers
/// mean by a trend. One odd day pulls it; the dots show such days.
fn trend(days: &Days, values: &[u64]) -> Option<Trend> {
    let n = values.len() as f64;
    if values.len() < 2 {
        return None;
    }
    let xs = days.offsets.iter().map(|&x| x as f64);
    let mean_x = xs.clone().sum::<f64>() / n;
    let mean_y = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    let (mut covariance, mut variance) = (0.0, 0.0);
    for (x, &y) in xs.zip(values) {
        covariance += (x - mean_x) * (y as f64 - mean_y);
        variance += (x - mean_x) * (x - mean_x);
    }
    let slope = if variance > 0.0 {
        covariance / variance
    } else {
        0.0
    };
    let at = |x: f64| (mean_y + slope * (x - mean_x)).max(0.0);
    let (first, last) = (at(0.0), at(days.span as f64));
    let days_long = days.span + 1;
    let summary = if first > 0.0 {
        let change = (last - first) / first * 100.0;
        format!("trend {change:+.0}% over {days_long} days (dashed)")
    } else {
        format!("trend rising over {days_long} days (dashed)")
    };
    Some(Trend {
        first,
        last,
        summary,
    })
}

/// Horizontal grid lines at round values, labelled on the left.
fn grid(chart: &mut Chart, days: &Days, plot: &Plot, step: f64) {
    let mut value = 0.0;
    while value <= plot.ceiling + step / 2.0 {
        let y = plot.y(value);
        let stroke = if value == 0.0 { RULE } else { GRID };
        let _ = writeln!(
            chart.body,
            r#"<line x1="{:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{stroke}"/>"#,
            days.left, days.right,
        );
        let text = compact(value as u64);
        let note = super::Font {
            anchor: "end",
            ..SMALL_NOTE
        };
        chart.text(days.left - 8.0, y + 4.0, &note, "y-label", &text);
        value += step;
    }
}

fn polyline(
    chart: &mut Chart,
    days: &Days,
    plot: &Plot,
    values: &[u64],
    color: &str,
    class: &str,
    member: &str,
) {
    let points: Vec<String> = days
        .offsets
        .iter()
        .zip(values)
        .map(|(&x, &v)| format!("{:.1},{:.1}", days.x(x), plot.y(v as f64)))
        .collect();
    let _ = writeln!(
        chart.body,
        r#"<polyline class="{class}" data-member="{}" points="{}" fill="none" stroke="{color}" stroke-width="2" stroke-linejoin="round"/>"#,
        escape(member),
        points.join(" "),
    );
}

/// A dot per day with its value as a tooltip, while days are few enough
/// for dots to stay apart.
fn dots(chart: &mut Chart, days: &Days, plot: &Plot, values: &[u64], color: &str, title: &str) {
    if values.len() > MAX_DOTS {
        return;
    }
    for ((&x, &v), day) in days.offsets.iter().zip(values).zip(&chart.report.days) {
        let _ = writeln!(
            chart.body,
            r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{color}"><title>{}, {}: {} visits</title></circle>"#,
            days.x(x),
            plot.y(v as f64),
            escape(title),
            escape(&day.day),
            thousands(v),
        );
    }
}

/// Each followed member's name at the end of its line, nudged apart where
/// lines end close together, and tied to its line by a short stroke.
fn end_labels(chart: &mut Chart, days: &Days, plot: &Plot) {
    let report = chart.report;
    let mut ends: Vec<(f64, &super::super::Series)> = report
        .series
        .iter()
        .map(|series| {
            let last = series.visits.last().copied().unwrap_or(0);
            (plot.y(last as f64), series)
        })
        .collect();
    ends.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut placed: Vec<f64> = Vec::with_capacity(ends.len());
    for (y, _) in &ends {
        let floor = placed.last().map_or(f64::MIN, |prev| prev + LABEL_SPACING);
        placed.push(y.max(floor));
    }
    // Pushed below the plot: move the crowd back up as one.
    let bottom = plot.top + plot.height;
    if let Some(&lowest) = placed.last()
        && lowest > bottom
    {
        let lift = lowest - bottom;
        for y in &mut placed {
            *y -= lift;
        }
    }
    let x = days.right;
    for ((end, series), label_y) in ends.iter().zip(placed) {
        let color = chart.color_of(&series.member).to_owned();
        let _ = writeln!(
            chart.body,
            r#"<line x1="{:.1}" y1="{end:.1}" x2="{:.1}" y2="{label_y:.1}" stroke="{color}" stroke-width="1.5"/>"#,
            x + 3.0,
            x + 9.0,
        );
        let font = super::Font {
            fill: INK,
            ..SMALL_NOTE
        };
        let text = label(&series.title(), MAX_LABEL_CHARS);
        chart.text(x + 12.0, label_y + 4.0, &font, "series-label", &text);
    }
}

/// Day labels under a plot whose bottom is `bottom`, at most about eight,
/// on evenly spaced days; returns the bottom of the labels.
fn x_labels(chart: &mut Chart, days: &Days, bottom: f64) -> f64 {
    let every = ((days.span + 1) as f64 / 8.0).ceil().max(1.0) as i64;
    let font = super::Font {
        anchor: "middle",
        ..SMALL_NOTE
    };
    let mut offset = 0;
    while offset <= days.span {
        let date = days.first.checked_add(jiff::Span::new().days(offset));
        if let Ok(date) = date {
            let text = date.strftime("%b %-d").to_string();
            chart.text(days.x(offset), bottom + 16.0, &font, "x-label", &text);
        }
        offset += every;
    }
    bottom + 22.0
}

/// 1, 2 or 5 times a power of ten, the smallest at or above `raw`: grid
/// lines at values people count in.
fn round_step(raw: f64) -> f64 {
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|factor| factor * power)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * power)
        .max(1.0)
}

/// `950`, `12k`, `1.5M`: axis labels that stay short.
fn compact(value: u64) -> String {
    let (scaled, suffix) = match value {
        0..1_000 => return value.to_string(),
        1_000..1_000_000 => (value as f64 / 1e3, "k"),
        1_000_000..1_000_000_000 => (value as f64 / 1e6, "M"),
        _ => (value as f64 / 1e9, "G"),
    };
    if scaled < 10.0 && scaled.fract() != 0.0 {
        format!("{scaled:.1}{suffix}")
    } else {
        format!("{scaled:.0}{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_round() {
        assert_eq!(round_step(0.3), 1.0);
        assert_eq!(round_step(3.0), 5.0);
        assert_eq!(round_step(12.0), 20.0);
        assert_eq!(round_step(2500.0), 5000.0);
        assert_eq!(round_step(100.0), 100.0);
    }

    #[test]
    fn axis_numbers_are_short() {
        assert_eq!(compact(950), "950");
        assert_eq!(compact(1500), "1.5k");
        assert_eq!(compact(20_000), "20k");
        assert_eq!(compact(2_000_000), "2M");
        assert_eq!(compact(1_250_000), "1.2M");
    }
}
