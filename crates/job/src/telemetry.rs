//! What the job counts for a monitoring system, beside the transfer's
//! metrics (`redistribute_transfer::telemetry`), through the same facade.

use metrics::{counter, describe_counter};

/// Registers what each metric of the job means (the `# HELP` lines), and
/// each metric at 0.
pub fn describe() {
    describe_counter!("redistribute_lines_counted_total", "Log lines the job read");
    describe_counter!(
        "redistribute_lines_unparsed_total",
        "Log lines the job could not parse"
    );
    // Present, at 0, from the first scrape: a graph or an alert on a
    // rate needs the series before its first event.
    counter!("redistribute_lines_counted_total").increment(0);
    counter!("redistribute_lines_unparsed_total").increment(0);
}

pub(crate) fn lines_counted(lines: u64, unparsed: u64) {
    counter!("redistribute_lines_counted_total").increment(lines);
    counter!("redistribute_lines_unparsed_total").increment(unparsed);
}
