//! The native wire format: files cut into chunks under a channel's memory
//! budget, announced on a stream, streamed back, verified and acknowledged.
//!
//! [`protocol`] is the only code that names a control key or runs a
//! script: the key schema, and one typed call per state change on a
//! channel's handle; the [`sender`] and [`receiver`] are the two parties;
//! [`status`], [`retry`] and [`purge`] are for operators.

pub(crate) mod buffers;
pub(crate) mod chunk;
pub mod codec;
pub(crate) mod encoder;
pub mod lease;
pub(crate) mod notice;
pub(crate) mod pieces;
pub mod protocol;
pub mod purge;
pub(crate) mod rate;
pub mod receiver;
pub mod retry;
pub mod sender;
pub mod status;
