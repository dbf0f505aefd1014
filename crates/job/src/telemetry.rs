//! What the job counts for a monitoring system, beside the transfer's
//! metrics (`redistribute_transfer::telemetry`), through the same facade.

use metrics::{counter, describe_counter};

/// Registers what each metric of the job means (the `# HELP` lines).
pub fn describe() {
    describe_counter!("redistribute_lines_counted_total", "Log lines the job read");
    describe_counter!(
        "redistribute_lines_unparsed_total",
        "Log lines the job could not parse"
    );
}

pub(crate) fn lines_counted(lines: u64, unparsed: u64) {
    counter!("redistribute_lines_counted_total").increment(lines);
    counter!("redistribute_lines_unparsed_total").increment(unparsed);
}
