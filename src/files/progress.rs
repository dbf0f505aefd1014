//! How a sender reports its progress without tying the library to a
//! display: the command line draws a bar from it, a service might export
//! a metric.

/// Told how many bytes a sender has stored in Redis so far, a batch at a
/// time. Any `Fn(u64)` closure is one.
pub trait Progress: Send + Sync {
    /// `bytes` more of the input were stored.
    fn advance(&self, bytes: u64);
}

impl<F: Fn(u64) + Send + Sync> Progress for F {
    fn advance(&self, bytes: u64) {
        self(bytes)
    }
}
