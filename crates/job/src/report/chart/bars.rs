//! One block of horizontal bars per day, stacked down the page, labelled
//! by member and value. Every block uses the same scale, so a bar twice as
//! long means twice the visits whichever day it is on.

use std::fmt::Write;

use super::super::days::parse_day;
use super::super::{DayReport, share};
use super::{CHAR_WIDTH, Chart, FONT, GAP, HEADING, INK, LABEL, MARGIN, MUTED, NOTE, SMALL_NOTE};
use super::{SUMMARY, WIDTH, escape, label};
use redistribute_transfer::text::thousands;

const ROW: f64 = 24.0;
const BAR: f64 = 17.0;
/// Longer labels (some city names) are shortened in the middle; the bar's
/// tooltip keeps the whole name.
const MAX_LABEL_CHARS: usize = 34;

/// Where the blocks put labels and bars, decided once from all rows so
/// every day lines up.
struct Layout {
    /// Right edge of the member labels.
    label_right: f64,
    /// Left edge of the bars.
    bar_x: f64,
    /// Pixels per visit, shared by all days.
    scale: f64,
}

/// Draws every day's block from `top` down; returns where the page ends.
pub(super) fn draw(chart: &mut Chart, top: f64) -> f64 {
    let report = chart.report;
    let rows = || report.days.iter().flat_map(|day| &day.rows);
    let label_chars = rows()
        .map(|row| label(&row.title(), MAX_LABEL_CHARS).chars().count())
        .max();
    let label_width = (label_chars.unwrap_or(0) as f64 * CHAR_WIDTH).clamp(40.0, 300.0);
    let value_chars = rows().map(|row| {
        let (visits, share) = value_text(row.visits, row.share);
        visits.chars().count() + share.chars().count() + 1
    });
    let value_width = value_chars.max().unwrap_or(0) as f64 * CHAR_WIDTH + 8.0;
    let bar_x = MARGIN + label_width + 10.0;
    let bar_room = (WIDTH - MARGIN - value_width - bar_x).max(100.0);
    let most = rows().map(|row| row.visits).max().unwrap_or(0).max(1);
    let layout = Layout {
        label_right: MARGIN + label_width,
        bar_x,
        scale: bar_room / most as f64,
    };
    let mut y = top;
    for day in &report.days {
        y = layout.day(chart, day, y);
    }
    y
}

impl Layout {
    /// Draws one day's heading, bars and what the top N leaves out, from
    /// `top` down; returns where the next day starts.
    fn day(&self, chart: &mut Chart, day: &DayReport, top: f64) -> f64 {
        let weekday = parse_day(&day.day)
            .map(|date| date.strftime("%A").to_string())
            .unwrap_or_default();
        let _ = writeln!(
            chart.body,
            r#"<text class="day" x="{MARGIN}" y="{:.1}" font-size="{}" font-weight="bold" fill="{INK}">{} <tspan font-weight="normal" fill="{MUTED}">{weekday}</tspan></text>"#,
            top + 16.0,
            HEADING.size,
            escape(&day.day),
        );
        let summary = format!(
            "{} visits · {}",
            thousands(day.total),
            chart.count_of(day.members)
        );
        chart.text(WIDTH - MARGIN, top + 16.0, &SUMMARY, "total", &summary);
        chart.rule(top + 25.5);
        let mut y = top + 32.0;
        for row in &day.rows {
            let middle = y + ROW / 2.0;
            let baseline = middle + FONT * 0.36;
            let title = row.title();
            let shown = label(&title, MAX_LABEL_CHARS);
            chart.text(self.label_right, baseline, &LABEL, "label", &shown);
            // A member with any visit gets a visible sliver of a bar.
            let width = (row.visits as f64 * self.scale).max((row.visits > 0) as u8 as f64);
            let color = chart.color_of(&row.member).to_owned();
            let (visits, share) = value_text(row.visits, row.share);
            let _ = writeln!(
                chart.body,
                r#"<rect class="bar" x="{:.1}" y="{:.1}" width="{width:.1}" height="{BAR}" rx="2" fill="{color}"><title>{}: {visits} visits, {share} of {}</title></rect>"#,
                self.bar_x,
                middle - BAR / 2.0,
                escape(&title),
                escape(&day.day),
            );
            let _ = writeln!(
                chart.body,
                r#"<text class="value" x="{:.1}" y="{baseline:.1}" fill="{INK}">{visits}<tspan fill="{MUTED}" dx="7">{share}</tspan></text>"#,
                self.bar_x + width + 6.0,
            );
            y += ROW;
        }
        let left_out = day.members.saturating_sub(day.rows.len() as u64);
        if left_out > 0 {
            let shown: u64 = day.rows.iter().map(|row| row.visits).sum();
            let rest = day.total.saturating_sub(shown);
            let note = format!(
                "and {} more {}: {} visits, {:.1}%",
                thousands(left_out),
                chart.noun(left_out),
                thousands(rest),
                share(rest, day.total),
            );
            chart.text(self.bar_x, y + 15.0, &SMALL_NOTE, "rest", &note);
            y += 22.0;
        }
        if day.rows.is_empty() {
            chart.text(self.bar_x, y + 15.0, &NOTE, "rest", "no visits");
            y += 22.0;
        }
        y + GAP
    }
}

/// A bar's value and share as shown next to it.
fn value_text(visits: u64, share: f64) -> (String, String) {
    (thousands(visits), format!("{share:.1}%"))
}

#[cfg(test)]
mod tests {
    use super::super::super::days::parse_day;

    #[test]
    fn weekdays_match_the_calendar() {
        let weekday = |day| parse_day(day).unwrap().strftime("%A").to_string();
        assert_eq!(weekday("2024-01-01"), "Monday");
        assert_eq!(weekday("2000-02-29"), "Tuesday");
        assert_eq!(weekday("1970-01-01"), "Thursday");
        assert_eq!(weekday("2025-12-31"), "Wednesday");
    }
}
