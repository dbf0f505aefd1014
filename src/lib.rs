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
//! and every state change are described in [`protocol`] and
//! `docs/protocol.md`.
//!
//! # Example
//!
//! Send a directory to two receivers, and count the lines of each file on
//! one of them (normally on another machine):
//!
//! ```no_run
//! use redistribute::{Audience, Decode, ReceiveOptions, Receiver, SendOptions, Sender};
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
pub mod aggregate;
pub mod channel;
pub mod classic;
pub mod cli;
pub mod connection;
pub mod decode;
pub mod demo;
pub mod error;
pub mod geo;
pub mod geo_classic;
pub mod incoming;
pub mod inputs;
pub mod local_redis;
pub mod loggen;
pub mod logline;
pub mod names;
pub mod progress;
pub mod protocol;
pub mod receiver;
pub mod report;
pub mod sender;
pub mod sink;
pub mod status;

pub use decode::Decode;
pub use error::{Error, Result};
pub use protocol::Audience;
pub use receiver::{Failure, IncomingFile, ReceiveOptions, Receiver};
pub use sender::{SendOptions, Sender, Sent};
