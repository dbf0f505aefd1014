//! Distribute files through Redis to many machines and process them while
//! they stream.
pub mod channel;
pub mod cli;
pub mod connection;
pub mod decode;
pub mod demo;
pub mod error;
pub mod inputs;
pub mod local_redis;
pub mod loggen;
pub mod names;
pub mod progress;
pub mod protocol;
pub mod receiver;
pub mod sender;
pub mod sink;
pub mod status;

pub use decode::Decode;
pub use error::{Error, Result};
pub use protocol::Audience;
pub use receiver::{Failure, IncomingFile, ReceiveOptions, Receiver};
pub use sender::{SendOptions, Sender, Sent};
