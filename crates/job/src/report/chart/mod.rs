//! The report drawn as a standalone SVG document.
//!
//! Over two days or more, first the followed members' visits day by day,
//! and the visits of all members with their trend (`lines.rs`); then, for
//! every report, small multiples: one block of horizontal bars per day
//! (`bars.rs`). A member keeps its colour everywhere in the document, so
//! the eye can follow one country from the lines down the blocks; `unknown`
//! is always grey, because it is not a place. Nothing external is
//! referenced (no fonts, images or styles), so the file renders the same
//! anywhere. Without font metrics, text widths are estimated on the wide
//! side, so labels never run into bars or lines.

mod bars;
mod lines;

use std::collections::HashMap;
use std::fmt::Write;

use super::Report;

const WIDTH: f64 = 820.0;
const MARGIN: f64 = 28.0;
/// Body text size; big enough to read at 100 % on a laptop screen.
const FONT: f64 = 13.0;
/// Average advance of a sans-serif character at [`FONT`], rounded up.
const CHAR_WIDTH: f64 = 0.62 * FONT;
/// Space between one section (or day) and the next.
const GAP: f64 = 22.0;
/// Tableau 10 without its grey, which is kept for `unknown`.
const PALETTE: [&str; 9] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f",
];
const UNKNOWN_COLOR: &str = "#a5a5a5";
const INK: &str = "#222222";
const MUTED: &str = "#6b6b6b";
const RULE: &str = "#dddddd";

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
const HEADING: Font = Font {
    size: 15.0,
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

/// The document being drawn: what every section shares, and the SVG body
/// written so far.
struct Chart<'a> {
    report: &'a Report,
    colors: HashMap<&'a str, String>,
    body: String,
}

pub(super) fn render(report: &Report) -> String {
    let mut chart = Chart {
        report,
        colors: colors(report),
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
        y += 30.0 + GAP;
    }
    if !report.series.is_empty() {
        y = lines::draw(&mut chart, y);
    }
    y = bars::draw(&mut chart, y);
    let height = (y - GAP + MARGIN).ceil();
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
    /// The colour of `member`: its own, or grey for `unknown`.
    fn color_of(&self, member: &str) -> &str {
        self.colors
            .get(member)
            .map_or(UNKNOWN_COLOR, String::as_str)
    }

    /// "1 country", "12 countries".
    fn count_of(&self, members: u64) -> String {
        format!(
            "{} {}",
            redistribute_transfer::text::thousands(members),
            self.noun(members)
        )
    }

    fn noun(&self, members: u64) -> &'static str {
        self.report.by.noun(members)
    }

    /// A horizontal hairline across the page.
    fn rule(&mut self, y: f64) {
        let _ = writeln!(
            self.body,
            r#"<line x1="{MARGIN}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="{RULE}"/>"#,
            WIDTH - MARGIN,
        );
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
    super::ranked(&report.days)
        .into_iter()
        .filter(|member| !is_unknown(member))
        .enumerate()
        .map(|(i, member)| (member, color(i)))
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
            " · {} to {} ({} days with visits)",
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

/// A member's label: its title (`DE Germany`) in at most `max` characters.
fn label(title: &str, max: usize) -> String {
    redistribute_transfer::text::shortened(title, max)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup_and_no_forbidden_characters() {
        assert_eq!(
            escape("A&B <\"c\"> 'd'"),
            "A&amp;B &lt;&quot;c&quot;&gt; &apos;d&apos;"
        );
        assert_eq!(escape("a\u{1}b\tc"), "a\u{FFFD}b c");
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
