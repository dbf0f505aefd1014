//! What enters and leaves a transfer, whatever the wire format: the inputs
//! a sender reads, the names files travel under, an incoming file and its
//! decoding, the interface every receiver offers, and the sinks that
//! consume files.

pub mod decode;
pub mod incoming;
pub mod inputs;
pub mod names;
pub mod progress;
pub mod sink;
pub mod source;
