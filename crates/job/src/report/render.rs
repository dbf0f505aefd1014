//! A report as people and programs read it: an aligned table, JSON, CSV,
//! or an SVG chart. Each is a pure function of the report.

use redistribute_transfer::text::thousands;

use super::{DayReport, Report, chart};

/// A line of the table: day, rank, member, visits, share.
type Line = [String; 5];

/// A line of the table padded to `widths`: numbers align right so their
/// digits line up; text aligns left.
fn aligned(line: &Line, widths: [usize; 5]) -> String {
    let right = [false, true, false, true, true];
    let cells: Vec<String> = line
        .iter()
        .zip(widths)
        .zip(right)
        .map(|((cell, width), right)| {
            let pad = " ".repeat(width - cell.chars().count());
            if right {
                format!("{pad}{cell}")
            } else {
                format!("{cell}{pad}")
            }
        })
        .collect();
    cells.join("  ").trim_end().to_owned() + "\n"
}

impl Report {
    /// An aligned table for people: each day's rows, then a line with the
    /// day's total and member count, days separated by a blank line.
    pub fn to_table(&self) -> String {
        if self.days.is_empty() {
            return format!("no visits by {} on the selected days\n", self.by.key());
        }
        let header = ["day", "rank", self.by.key(), "visits", "share"].map(String::from);
        let blocks: Vec<Vec<Line>> = self.days.iter().map(|day| self.table_lines(day)).collect();
        let mut widths = header.clone().map(|cell| cell.chars().count());
        for line in blocks.iter().flatten() {
            for (width, cell) in widths.iter_mut().zip(line) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = aligned(&header, widths);
        for (i, block) in blocks.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.extend(block.iter().map(|line| aligned(line, widths)));
        }
        out
    }

    /// One day's lines of the table: its rows, then its total.
    fn table_lines(&self, day: &DayReport) -> Vec<Line> {
        let mut lines: Vec<Line> = day
            .rows
            .iter()
            .map(|row| {
                [
                    day.day.clone(),
                    row.rank.to_string(),
                    row.title(),
                    thousands(row.visits),
                    format!("{:.1}%", row.share),
                ]
            })
            .collect();
        lines.push([
            day.day.clone(),
            String::new(),
            format!(
                "all {} {}",
                thousands(day.members),
                self.by.noun(day.members)
            ),
            thousands(day.total),
            if day.total > 0 { "100.0%" } else { "" }.to_owned(),
        ]);
        lines
    }

    /// The days as a JSON array: `[{"day", "total", "members", "rows":
    /// [{"rank", "member", "name", "visits", "share"}]}]`, share in
    /// percent, `name` only for members that are countries with a name.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.days).expect("a report always serializes") + "\n"
    }

    /// One line per row under the header `day,rank,member,visits,share`,
    /// share in percent; members with commas or quotes are quoted.
    pub fn to_csv(&self) -> String {
        let mut writer = csv::Writer::from_writer(Vec::new());
        let written: csv::Result<()> = (|| {
            writer.write_record(["day", "rank", "member", "visits", "share"])?;
            for day in &self.days {
                for row in &day.rows {
                    writer.write_record([
                        day.day.as_str(),
                        &row.rank.to_string(),
                        &row.member,
                        &row.visits.to_string(),
                        &format!("{:.2}", row.share),
                    ])?;
                }
            }
            writer.flush()?;
            Ok(())
        })();
        written.expect("writing CSV into memory cannot fail");
        let bytes = writer.into_inner().expect("flushed above");
        String::from_utf8(bytes).expect("CSV of strings is UTF-8")
    }

    /// A horizontal bar chart, one block per day, as a standalone SVG
    /// document (`report/chart/` draws it).
    pub fn to_svg(&self) -> String {
        chart::render(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{DayReport, Dimension, Row, share};

    fn report(days: Vec<DayReport>) -> Report {
        Report {
            by: Dimension::City,
            top: 2,
            days,
            series: Vec::new(),
        }
    }

    fn day(day: &str, rows: &[(&str, u64)], total: u64, members: u64) -> DayReport {
        DayReport {
            day: day.into(),
            total,
            members,
            rows: rows
                .iter()
                .enumerate()
                .map(|(i, &(member, visits))| Row {
                    rank: i + 1,
                    member: member.into(),
                    name: None,
                    visits,
                    share: share(visits, total),
                })
                .collect(),
        }
    }

    #[test]
    fn table_columns_line_up() {
        let table = report(vec![day(
            "2024-01-01",
            &[("DE/Bayern/München", 12345), ("FR/IDF/Paris", 7)],
            20000,
            40,
        )])
        .to_table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        // Columns count characters, not bytes: "ü" must not shift a line.
        let end_of = |line: &str, needle: &str| {
            line[..line.find(needle).unwrap()].chars().count() + needle.chars().count()
        };
        assert_eq!(end_of(lines[1], "12,345"), end_of(lines[2], "7"), "{table}");
        assert!(lines[3].contains("all 40 cities"), "{table}");
        assert!(lines[3].contains("20,000"), "{table}");
    }

    #[test]
    fn an_empty_report_says_so() {
        assert!(report(vec![]).to_table().starts_with("no visits by city"));
    }
}
