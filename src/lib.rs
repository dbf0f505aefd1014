//! Distribute files through Redis to many machines and process them while
//! they stream.
pub mod channel;
pub mod connection;
pub mod decode;
pub mod error;
pub mod names;
pub mod protocol;
pub mod receiver;
pub mod sender;

pub use decode::Decode;
pub use error::{Error, Result};
pub use protocol::Audience;
pub use receiver::{Failure, IncomingFile, ReceiveOptions, Receiver};
pub use sender::{SendOptions, Sender, Sent};
