//! Distribute files through Redis to many machines and process them while
//! they stream.
//!
//! A [`Sender`] cuts files into chunks stored under their own Redis keys,
//! never holding more than a channel's memory budget, and announces them on
//! a Redis stream. Each [`Receiver`] streams the chunks back as they arrive,
//! verifies size and BLAKE3 digest, and acknowledges the file after its work
//! is done; a file's data leaves Redis once everyone who needs it is done.
//! Broadcast channels give every file to every named receiver; work queues
//! give each file to exactly one of any number of workers. The key schema
//! and every state change are described in [`native::protocol`] and
//! `docs/protocol.md`.
//!
//! The crate is layered; each layer uses only those below it:
//!
//! | module | owns |
//! |---|---|
//! | [`native`], [`classic`] | the native wire format, and the book's |
//! | [`files`] | what enters and leaves a transfer: inputs, names, decoding, incoming files, sinks |
//! | [`redis`] | one connection handle with retries, and a private server for tests |
//!
//! Both receivers implement [`FileSource`], so whatever consumes files (a
//! [`Sink`], the aggregation job, your own code) is written once.
//!
//! # Example
//!
//! Send a directory to two receivers, and count the lines of each file on
//! one of them (normally on another machine):
//!
//! ```no_run
//! use redistribute_transfer::{Audience, Decode, FileSource, ReceiveOptions, Receiver, SendOptions, Sender};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let url = "redis://127.0.0.1:6379";
//! let audience = Audience::Broadcast(vec!["a".into(), "b".into()]);
//! let sender = Sender::open(url, SendOptions::new("logs", audience)).await?;
//! sender.send_file("/var/log/nginx/access.log.1".as_ref(), "access.log.1").await?;
//! sender.finish().await?;
//!
//! let mut receiver = Receiver::connect(url, ReceiveOptions::new("logs", "a")).await?;
//! while let Some(mut file) = receiver.next_file().await? {
//!     let mut lines = file.lines(Decode::Auto);
//!     let mut count = 0;
//!     while let Some(_line) = lines.next_segment().await? {
//!         count += 1;
//!     }
//!     drop(lines);
//!     println!("{}: {count} lines", file.name());
//!     receiver.ack(file).await?; // only now may its data leave Redis
//! }
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod classic;
pub mod error;
pub mod files;
mod host;
pub mod native;
pub mod redis;
pub mod telemetry;
pub mod text;

pub use error::{Error, Result};
pub use files::decode::Decode;
pub use files::incoming::{IncomingFile, PieceOf};
pub use files::progress::Progress;
pub use files::sink::Sink;
pub use files::source::{Failure, FileSource};
pub use native::codec::Compression;
pub use native::protocol::Audience;
pub use native::receiver::{ReceiveOptions, Receiver};
pub use native::sender::{SendOptions, Sender, Sent};
