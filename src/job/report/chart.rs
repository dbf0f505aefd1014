//! The report drawn as a bar chart: a standalone SVG document.
//!
//! Small multiples: one block per day, stacked vertically, with horizontal
//! bars labelled by member and value. Every block uses the same scale, so a
//! bar twice as long means twice the visits whichever day it is on, and a
//! member keeps its colour on every day, so the eye can follow one country
//! down the page; `unknown` is always grey, because it is not a place.
//! Nothing external is referenced (no fonts, images or styles), so the file
//! renders the same anywhere. Without font metrics, text widths are
//! estimated on the wide side, so labels never run into bars.

use std::collections::HashMap;
use std::fmt::Write;

use super::{DayReport, Report, parse_day, thousands};

const WIDTH: f64 = 820.0;
const MARGIN: f64 = 28.0;
/// Body text size; big enough to read at 100 % on a laptop screen.
const FONT: f64 = 13.0;
/// Average advance of a sans-serif character at [`FONT`], rounded up.
const CHAR_WIDTH: f64 = 0.62 * FONT;
const ROW: f64 = 24.0;
const BAR: f64 = 17.0;
/// Space between one day's block and the next.
const DAY_GAP: f64 = 22.0;
/// Longer members (some city names) are cut with an ellipsis; the bar's
/// tooltip keeps the whole name.
const MAX_LABEL_CHARS: usize = 34;
/// Tableau 10 without its grey, which is kept for `unknown`.
const PALETTE: [&str; 9] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f",
];
const UNKNOWN_COLOR: &str = "#a5a5a5";
const INK: &str = "#222222";
const MUTED: &str = "#6b6b6b";

/// How a piece of text looks; presentation attributes rather than a
/// stylesheet, because every SVG renderer understands them.
struct Font {
    size: f64,
    bold: bool,
    fill: &'static str,
    anchor: &'static str,
}

const TITLE: Font = Font {
    size: 22.0,
    bold: true,
    fill: INK,
    anchor: "start",
};
const NOTE: Font = Font {
    size: FONT,
    bold: false,
    fill: MUTED,
    anchor: "start",
};
const SMALL_NOTE: Font = Font {
    size: 12.0,
    bold: false,
    fill: MUTED,
    anchor: "start",
};
const SUMMARY: Font = Font {
    size: FONT,
    bold: false,
    fill: MUTED,
    anchor: "end",
};
const LABEL: Font = Font {
    size: FONT,
    bold: false,
    fill: INK,
    anchor: "end",
};

/// The chart being drawn: its layout, decided once from all rows so every
/// day lines up, and the SVG body written so far.
struct Chart<'a> {
    report: &'a Report,
    colors: HashMap<&'a str, String>,
    /// Right edge of the member labels.
    label_right: f64,
    /// Left edge of the bars.
    bar_x: f64,
    /// Pixels per visit, shared by all days.
    scale: f64,
    body: String,
}

pub(super) fn render(report: &Report) -> String {
    let rows = || report.days.iter().flat_map(|day| &day.rows);
    let label_chars = rows().map(|row| label(&row.member).chars().count()).max();
    let label_width = (label_chars.unwrap_or(0) as f64 * CHAR_WIDTH).clamp(40.0, 300.0);
    let value_chars = rows().map(|row| {
        let (visits, share) = value_text(row.visits, row.share);
        visits.chars().count() + share.chars().count() + 1
    });
    let value_width = value_chars.max().unwrap_or(0) as f64 * CHAR_WIDTH + 8.0;
    let bar_x = MARGIN + label_width + 10.0;
    let bar_room = (WIDTH - MARGIN - value_width - bar_x).max(100.0);
    let most = rows().map(|row| row.visits).max().unwrap_or(0).max(1);
    let mut chart = Chart {
        report,
        colors: colors(report),
        label_right: MARGIN + label_width,
        bar_x,
        scale: bar_room / most as f64,
        body: String::new(),
    };

    let by = report.by.key();
    let title = format!("Visits per day by {by}");
    chart.text(MARGIN, 42.0, &TITLE, "title", &title);
    chart.text(MARGIN, 66.0, &NOTE, "subtitle", &subtitle(report));
    let mut y = 92.0;
    if report.days.is_empty() {
        let message = format!("No visits by {by} on the selected days.");
        chart.text(MARGIN, y + 16.0, &NOTE, "empty", &message);
        y += 30.0 + DAY_GAP;
    }
    for day in &report.days {
        y = chart.day(day, y);
    }
    let height = (y - DAY_GAP + MARGIN).ceil();
    format!(
        concat!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" "#,
            r#"role="img" aria-labelledby="chart-title" "#,
            r#"font-family="'Helvetica Neue', Helvetica, Arial, 'DejaVu Sans', sans-serif" font-size="{f}">"#,
            "\n<title id=\"chart-title\">{title}</title>\n",
            r##"<rect width="100%" height="100%" fill="#ffffff"/>"##,
            "\n{body}</svg>\n",
        ),
        w = WIDTH,
        h = height,
        f = FONT,
        title = escape(&title),
        body = chart.body,
    )
}

impl Chart<'_> {
    /// Draws one day's heading, bars and what the top N leaves out, from
    /// `top` down; returns where the next day starts.
    fn day(&mut self, day: &DayReport, top: f64) -> f64 {
        let weekday = parse_day(&day.day).map(weekday).unwrap_or("");
        let _ = writeln!(
            self.body,
            r#"<text class="day" x="{MARGIN}" y="{:.1}" font-size="15" font-weight="bold" fill="{INK}">{} <tspan font-weight="normal" fill="{MUTED}">{weekday}</tspan></text>"#,
            top + 16.0,
            escape(&day.day),
        );
        let summary = format!(
            "{} visits · {}",
            thousands(day.total),
            self.count_of(day.members)
        );
        self.text(WIDTH - MARGIN, top + 16.0, &SUMMARY, "total", &summary);
        let rule = top + 25.5;
        let _ = writeln!(
            self.body,
            r##"<line x1="{MARGIN}" x2="{}" y1="{rule:.1}" y2="{rule:.1}" stroke="#dddddd"/>"##,
            WIDTH - MARGIN,
        );
        let mut y = top + 32.0;
        for row in &day.rows {
            let middle = y + ROW / 2.0;
            let baseline = middle + FONT * 0.36;
            self.text(
                self.label_right,
                baseline,
                &LABEL,
                "label",
                &label(&row.member),
            );
            // A member with any visit gets a visible sliver of a bar.
            let width = (row.visits as f64 * self.scale).max((row.visits > 0) as u8 as f64);
            let color = self
                .colors
                .get(row.member.as_str())
                .map_or(UNKNOWN_COLOR, String::as_str);
            let (visits, share) = value_text(row.visits, row.share);
            let _ = writeln!(
                self.body,
                r#"<rect class="bar" x="{:.1}" y="{:.1}" width="{width:.1}" height="{BAR}" rx="2" fill="{color}"><title>{}: {visits} visits, {share} of {}</title></rect>"#,
                self.bar_x,
                middle - BAR / 2.0,
                escape(&row.member),
                escape(&day.day),
            );
            let _ = writeln!(
                self.body,
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
                self.noun(left_out),
                thousands(rest),
                super::share(rest, day.total),
            );
            self.text(self.bar_x, y + 15.0, &SMALL_NOTE, "rest", &note);
            y += 22.0;
        }
        if day.rows.is_empty() {
            self.text(self.bar_x, y + 15.0, &NOTE, "rest", "no visits");
            y += 22.0;
        }
        y + DAY_GAP
    }

    /// "1 country", "12 countries".
    fn count_of(&self, members: u64) -> String {
        format!("{} {}", thousands(members), self.noun(members))
    }

    fn noun(&self, members: u64) -> &'static str {
        match members {
            1 => self.report.by.key(),
            _ => self.report.by.plural(),
        }
    }

    fn text(&mut self, x: f64, y: f64, font: &Font, class: &str, content: &str) {
        let _ = writeln!(
            self.body,
            r#"<text class="{class}" x="{x:.1}" y="{y:.1}" font-size="{}" font-weight="{}" fill="{}" text-anchor="{}">{}</text>"#,
            font.size,
            if font.bold { "bold" } else { "normal" },
            font.fill,
            font.anchor,
            escape(content),
        );
    }
}

/// One colour per member for the whole chart, handed out in order of the
/// member's visits over all days, so the biggest members get the most
/// distinct colours and a member looks the same on every day.
fn colors(report: &Report) -> HashMap<&str, String> {
    let mut totals: HashMap<&str, u64> = HashMap::new();
    for row in report.days.iter().flat_map(|day| &day.rows) {
        *totals.entry(row.member.as_str()).or_default() += row.visits;
    }
    let mut members: Vec<(&str, u64)> = totals.into_iter().collect();
    members.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    members
        .into_iter()
        .filter(|(member, _)| !is_unknown(member))
        .enumerate()
        .map(|(i, (member, _))| (member, color(i)))
        .collect()
}

/// The colour of the member ranked `index` (from 0). The palette first,
/// then hues a golden angle apart at the palette's saturation and
/// lightness, so no two members of one chart share a colour.
fn color(index: usize) -> String {
    if let Some(color) = PALETTE.get(index) {
        return (*color).to_owned();
    }
    let hue = ((index - PALETTE.len()) as f64 * 137.508 + 15.0) % 360.0;
    let (saturation, lightness) = (0.5, 0.55);
    let chroma = (1.0 - (2.0 * lightness - 1.0_f64).abs()) * saturation;
    let x = chroma * (1.0 - ((hue / 60.0) % 2.0 - 1.0).abs());
    let (r, g, b) = match (hue / 60.0) as u32 {
        0 => (chroma, x, 0.0),
        1 => (x, chroma, 0.0),
        2 => (0.0, chroma, x),
        3 => (0.0, x, chroma),
        4 => (x, 0.0, chroma),
        _ => (chroma, 0.0, x),
    };
    let byte = |channel: f64| ((channel + lightness - chroma / 2.0) * 255.0).round() as u8;
    format!("#{:02x}{:02x}{:02x}", byte(r), byte(g), byte(b))
}

/// Whether a member stands for an address the table did not know.
fn is_unknown(member: &str) -> bool {
    member == "unknown" || member.starts_with("unknown/")
}

fn subtitle(report: &Report) -> String {
    let plural = report.by.plural();
    let which = match report.top {
        0 => format!("All {plural} per day"),
        1 => format!("Top {} per day", report.by.key()),
        n => format!("Top {n} {plural} per day"),
    };
    let days = match (report.days.first(), report.days.last()) {
        (Some(first), Some(last)) if report.days.len() > 1 => format!(
            " · {} to {} ({} days)",
            first.day,
            last.day,
            report.days.len()
        ),
        (Some(only), _) => format!(" · {}", only.day),
        _ => String::new(),
    };
    let scale = if report.days.len() > 1 {
        " · all days on one scale"
    } else {
        ""
    };
    format!("{which}{days}{scale}")
}

fn label(member: &str) -> String {
    if member.chars().count() <= MAX_LABEL_CHARS {
        return member.to_owned();
    }
    let mut cut: String = member.chars().take(MAX_LABEL_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// A bar's value and share as shown next to it.
fn value_text(visits: u64, share: f64) -> (String, String) {
    (thousands(visits), format!("{share:.1}%"))
}

/// Escapes text for XML content and attributes, and replaces characters
/// XML 1.0 forbids (control characters, which a member read from Redis may
/// hold), so any member yields a well-formed document.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(' '),
            c if c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// The day of the week of a proleptic Gregorian date (Sakamoto's method).
fn weekday((year, month, day): (u32, u32, u32)) -> &'static str {
    const OFFSETS: [i64; 12] = [0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4];
    let year = i64::from(year) - i64::from(month < 3);
    let index = (year + year.div_euclid(4) - year.div_euclid(100)
        + year.div_euclid(400)
        + OFFSETS[month as usize - 1]
        + i64::from(day))
    .rem_euclid(7);
    [
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
    ][index as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekdays_match_the_calendar() {
        assert_eq!(weekday((2024, 1, 1)), "Monday");
        assert_eq!(weekday((2000, 2, 29)), "Tuesday");
        assert_eq!(weekday((1970, 1, 1)), "Thursday");
        assert_eq!(weekday((2025, 12, 31)), "Wednesday");
    }

    #[test]
    fn escaping_leaves_no_markup_and_no_forbidden_characters() {
        assert_eq!(
            escape("A&B <\"c\"> 'd'"),
            "A&amp;B &lt;&quot;c&quot;&gt; &apos;d&apos;"
        );
        assert_eq!(escape("a\u{1}b\tc"), "a\u{FFFD}b c");
    }

    #[test]
    fn long_labels_are_cut_with_an_ellipsis() {
        let long = "X".repeat(MAX_LABEL_CHARS + 5);
        assert_eq!(label(&long).chars().count(), MAX_LABEL_CHARS);
        assert!(label(&long).ends_with('…'));
        assert_eq!(label("DE"), "DE");
    }

    #[test]
    fn colours_never_repeat_within_a_chart() {
        let colors: Vec<String> = (0..40).map(color).collect();
        let mut distinct = colors.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), colors.len(), "{colors:?}");
        assert!(!colors.iter().any(|color| color == UNKNOWN_COLOR));
    }
}
