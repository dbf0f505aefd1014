//! How senders and receivers report their progress without tying the
//! library to a display: the command line draws a bar from it, a service
//! might export a metric.

/// Told how many bytes were moved so far, a batch at a time: stored in
/// Redis by a sender, or processed by [`crate::Sink::receive_all`]. Any
/// `Fn(u64)` closure is one.
pub trait Progress: Send + Sync {
    /// `bytes` more were moved.
    fn advance(&self, bytes: u64);

    /// [`crate::Sink::receive_all`] starts on file `name`, of `size` bytes
    /// when known: what [`Progress::advance`] reports until
    /// [`Progress::file_ended`] is of this file.
    fn file_started(&self, name: &str, size: Option<u64>) {
        let _ = (name, size);
    }

    /// The file started last is done with, received or not.
    fn file_ended(&self) {}
}

impl<F: Fn(u64) + Send + Sync> Progress for F {
    fn advance(&self, bytes: u64) {
        self(bytes)
    }
}
