//! What a process counts for a monitoring system, through the `metrics`
//! facade: the binary's `--metrics ADDR` serves it in Prometheus' text
//! format; a program using the library may install any recorder, and
//! without one the calls cost next to nothing.

use metrics::{counter, describe_counter, describe_gauge, gauge};

/// Registers what each metric of a transfer means (the `# HELP` lines),
/// and each metric at 0.
pub fn describe() {
    describe_counter!("redistribute_files_sent_total", "Files uploaded completely");
    describe_counter!(
        "redistribute_bytes_sent_total",
        "Bytes of the files uploaded completely, as on disk"
    );
    describe_counter!(
        "redistribute_bytes_stored_total",
        "Bytes their chunks took in Redis (compressed)"
    );
    describe_counter!(
        "redistribute_files_sent_again_total",
        "Files uploaded again for receivers whose data left Redis"
    );
    describe_gauge!(
        "redistribute_sender_waiting_for_room",
        "1 while the sender waits for the channel's budget"
    );
    describe_counter!(
        "redistribute_bytes_received_total",
        "Bytes passed on to the output, verified chunk by chunk"
    );
    describe_counter!(
        "redistribute_files_received_total",
        "Files processed and acknowledged"
    );
    describe_counter!(
        "redistribute_files_failed_total",
        "Failed attempts at a file (it is offered again)"
    );
    describe_counter!(
        "redistribute_files_parked_total",
        "Files given up on after repeated failures"
    );
    describe_counter!(
        "redistribute_redis_retries_total",
        "Redis steps retried after a connection problem"
    );
    // Present, at 0, from the first scrape: a graph or an alert on a
    // rate needs the series before its first event.
    counter!("redistribute_files_sent_total").increment(0);
    counter!("redistribute_bytes_sent_total").increment(0);
    counter!("redistribute_bytes_stored_total").increment(0);
    counter!("redistribute_files_sent_again_total").increment(0);
    counter!("redistribute_bytes_received_total").increment(0);
    counter!("redistribute_files_received_total").increment(0);
    counter!("redistribute_files_failed_total").increment(0);
    counter!("redistribute_files_parked_total").increment(0);
    counter!("redistribute_redis_retries_total").increment(0);
    gauge!("redistribute_sender_waiting_for_room").set(0.0);
}

pub(crate) fn file_sent(original: u64, stored: u64) {
    counter!("redistribute_files_sent_total").increment(1);
    counter!("redistribute_bytes_sent_total").increment(original);
    counter!("redistribute_bytes_stored_total").increment(stored);
}

pub(crate) fn file_sent_again() {
    counter!("redistribute_files_sent_again_total").increment(1);
}

pub(crate) fn waiting_for_room(waiting: bool) {
    gauge!("redistribute_sender_waiting_for_room").set(if waiting { 1.0 } else { 0.0 });
}

pub(crate) fn bytes_received(bytes: u64) {
    counter!("redistribute_bytes_received_total").increment(bytes);
}

pub(crate) fn file_received() {
    counter!("redistribute_files_received_total").increment(1);
}

/// A failed attempt, and whether it parked the file.
pub(crate) fn file_failed(parked: bool) {
    counter!("redistribute_files_failed_total").increment(1);
    if parked {
        counter!("redistribute_files_parked_total").increment(1);
    }
}

pub(crate) fn redis_retry() {
    counter!("redistribute_redis_retries_total").increment(1);
}
