//! Decompression of incoming files, chosen by file name.
//!
//! Log files are mostly shipped compressed; jobs want their lines. `.gz`
//! files may consist of several gzip members (what `cat a.gz b.gz` or
//! rotating loggers produce), so the gzip decoder reads all of them.

use std::pin::Pin;

use async_compression::tokio::bufread::{GzipDecoder, ZstdDecoder};
use tokio::io::{AsyncBufRead, BufReader};

/// Whether to decompress files for processing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Decode {
    /// Decompress `.gz` and `.zst` files; pass anything else through.
    #[default]
    Auto,
    /// Pass every file through unchanged.
    None,
}

/// The compression a file name implies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// `.gz`: one or more gzip members.
    Gzip,
    /// `.zst`: one or more zstd frames.
    Zstd,
    /// Anything else, passed through.
    Plain,
}

impl Compression {
    /// The compression `name`'s extension says the file has.
    pub fn of(name: &str) -> Self {
        if name.ends_with(".gz") {
            Compression::Gzip
        } else if name.ends_with(".zst") {
            Compression::Zstd
        } else {
            Compression::Plain
        }
    }
}

/// A buffered reader of a file's contents, decoded when `decode` says so.
pub type Decoded<'a> = Pin<Box<dyn AsyncBufRead + Send + 'a>>;

/// Wraps `raw` in the decoder `name` and `decode` call for.
pub fn decoder<'a, R: AsyncBufRead + Send + 'a>(name: &str, decode: Decode, raw: R) -> Decoded<'a> {
    match (decode, Compression::of(name)) {
        (Decode::None, _) | (_, Compression::Plain) => Box::pin(raw),
        (Decode::Auto, Compression::Gzip) => {
            let mut gzip = GzipDecoder::new(raw);
            gzip.multiple_members(true);
            Box::pin(BufReader::with_capacity(1 << 16, gzip))
        }
        (Decode::Auto, Compression::Zstd) => {
            let mut zstd = ZstdDecoder::new(raw);
            zstd.multiple_members(true);
            Box::pin(BufReader::with_capacity(1 << 16, zstd))
        }
    }
}
