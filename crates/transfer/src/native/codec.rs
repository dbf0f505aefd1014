//! Compression in transit: which codec a sender uses, how it recognises
//! data that is compressed already, and compressing or restoring one block.
//!
//! The default was picked by measurement on web access logs (see
//! `docs/operations.md`): lz4 stores them in under a fifth of their size and
//! keeps a sender and receiver on two cores at the speed of raw Redis;
//! zstd at level 1 stores them in an eighth but costs half as much CPU
//! again, which pays off where cores are plenty and Redis memory is not.

use std::cell::RefCell;
use std::fmt;
use std::str::FromStr;

/// What a sender does to data before it goes into Redis (`--compress`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// lz4, except for data that is compressed already: files recognised
    /// by content as gzip, zstd, xz, images, archives..., and blocks that
    /// do not get smaller.
    #[default]
    Auto,
    /// zstd at level 1 for every block that gets smaller.
    Zstd,
    /// lz4 for every block that gets smaller.
    Lz4,
    /// Data travels as it is.
    None,
}

impl FromStr for Compression {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        Ok(match value {
            "auto" => Compression::Auto,
            "zstd" => Compression::Zstd,
            "lz4" => Compression::Lz4,
            "none" => Compression::None,
            other => {
                return Err(format!(
                    "unknown compression {other:?}: use auto, zstd, lz4 or none"
                ));
            }
        })
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::Auto => "auto",
            Compression::Zstd => "zstd",
            Compression::Lz4 => "lz4",
            Compression::None => "none",
        })
    }
}

impl Compression {
    /// The codec for a file that begins with `head`, and why it is not
    /// compressed when it is not.
    pub(crate) fn codec_for(self, head: &[u8]) -> (Codec, Option<&'static str>) {
        match self {
            Compression::None => (Codec::Raw, None),
            Compression::Zstd => (Codec::Zstd, None),
            Compression::Lz4 => (Codec::Lz4, None),
            Compression::Auto => match compressed_kind(head) {
                Some(kind) => (Codec::Raw, Some(kind)),
                None => (Codec::Lz4, None),
            },
        }
    }
}

/// How one block is stored; its number is the block's first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Codec {
    Raw = 0,
    Lz4 = 1,
    Zstd = 2,
}

impl Codec {
    pub(crate) fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(Codec::Raw),
            1 => Some(Codec::Lz4),
            2 => Some(Codec::Zstd),
            _ => None,
        }
    }
}

/// zstd's level: its fastest regular level, which on logs compresses
/// about as fast as Redis moves raw bytes.
const ZSTD_LEVEL: i32 = 1;

thread_local! {
    /// One zstd context per thread: creating one costs more than
    /// compressing a small block.
    static ZSTD_COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { RefCell::new(None) };
    static ZSTD_DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// Appends `data` compressed with `codec` to `out`, unless that would not
/// save at least an eighth of it. Returns whether it did.
pub(crate) fn compress(codec: Codec, data: &[u8], out: &mut Vec<u8>) -> bool {
    let start = out.len();
    let worth = data.len() - data.len() / 8;
    let written = match codec {
        Codec::Raw => return false,
        Codec::Lz4 => {
            out.resize(
                start + lz4_flex::block::get_maximum_output_size(data.len()),
                0,
            );
            lz4_flex::block::compress_into(data, &mut out[start..]).ok()
        }
        Codec::Zstd => ZSTD_COMPRESSOR.with_borrow_mut(|slot| {
            let compressor = match slot {
                Some(compressor) => compressor,
                None => slot.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL).ok()?),
            };
            out.resize(start + zstd::zstd_safe::compress_bound(data.len()), 0);
            compressor.compress_to_buffer(data, &mut out[start..]).ok()
        }),
    };
    match written {
        Some(n) if n <= worth => {
            out.truncate(start + n);
            true
        }
        _ => {
            out.truncate(start);
            false
        }
    }
}

/// Restores a block compressed with `codec` into `out`, which it must
/// fill exactly.
pub(crate) fn decompress_into(codec: Codec, data: &[u8], out: &mut [u8]) -> Result<(), String> {
    let written = match codec {
        Codec::Raw => return Err("a raw block is not compressed".into()),
        Codec::Lz4 => lz4_flex::block::decompress_into(data, out).map_err(|e| e.to_string()),
        Codec::Zstd => ZSTD_DECOMPRESSOR.with_borrow_mut(|slot| {
            let decompressor = match slot {
                Some(decompressor) => decompressor,
                None => slot.insert(zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?),
            };
            decompressor
                .decompress_to_buffer(data, out)
                .map_err(|e| e.to_string())
        }),
    }?;
    if written != out.len() {
        return Err(format!(
            "a block restored to {written} bytes instead of {}",
            out.len()
        ));
    }
    Ok(())
}

/// File types whose content is compressed already, recognised by their
/// first bytes (never by name): compressing them again costs time and
/// saves nothing.
const COMPRESSED: &[&str] = &[
    "gz", "bz2", "bz3", "xz", "zst", "lz4", "lz", "7z", "rar", "zip", "cab", "crx", "deb", "rpm",
    "docx", "xlsx", "pptx", "odt", "ods", "odp", "epub", "jpg", "jp2", "png", "gif", "webp",
    "heif", "avif", "jxl", "mp4", "m4v", "mkv", "webm", "mov", "flv", "mp3", "m4a", "opus", "ogg",
    "flac", "aac", "woff", "woff2",
];

/// The kind of compressed data `head` starts, if it does.
pub(crate) fn compressed_kind(head: &[u8]) -> Option<&'static str> {
    let kind = infer::get(head)?;
    COMPRESSED
        .iter()
        .find(|known| **known == kind.extension())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &[u8] = b"203.0.113.9 - - [01/Nov/2026:00:00:01 +0000] \"GET / HTTP/1.1\" 200 512 \"-\" \"curl/8.5.0\"\n";

    #[test]
    fn every_codec_restores_what_it_compressed() {
        let data = LOG.repeat(2000);
        for codec in [Codec::Lz4, Codec::Zstd] {
            let mut out = b"head".to_vec();
            assert!(compress(codec, &data, &mut out), "{codec:?}");
            assert_eq!(&out[..4], b"head");
            assert!(out.len() < data.len() / 8, "{codec:?}: {}", out.len());
            let mut restored = vec![0; data.len()];
            decompress_into(codec, &out[4..], &mut restored).unwrap();
            assert_eq!(restored, data);
        }
    }

    #[test]
    fn data_that_does_not_shrink_is_left_alone() {
        let mut rng = fastrand::Rng::with_seed(7);
        let noise: Vec<u8> = (0..100_000).map(|_| rng.u8(..)).collect();
        for codec in [Codec::Lz4, Codec::Zstd] {
            let mut out = Vec::new();
            assert!(!compress(codec, &noise, &mut out));
            assert!(out.is_empty());
        }
    }

    #[test]
    fn a_wrong_length_or_damaged_block_is_refused() {
        let data = LOG.repeat(100);
        for codec in [Codec::Lz4, Codec::Zstd] {
            let mut out = Vec::new();
            compress(codec, &data, &mut out);
            let (mut short, mut long) = (vec![0; data.len() - 1], vec![0; data.len() + 1]);
            assert!(decompress_into(codec, &out, &mut short).is_err());
            assert!(decompress_into(codec, &out, &mut long).is_err());
            let mut right = vec![0; data.len()];
            assert!(decompress_into(codec, &out[..out.len() / 2], &mut right).is_err());
        }
    }

    #[test]
    fn compressed_files_are_recognised_by_content() {
        let gzip = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        let zstd = [0x28, 0xb5, 0x2f, 0xfd, 0x24, 0, 0, 0];
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        for (head, kind) in [(&gzip[..], "gz"), (&zstd[..], "zst"), (&png[..], "png")] {
            assert_eq!(Compression::Auto.codec_for(head), (Codec::Raw, Some(kind)));
            assert_eq!(Compression::Zstd.codec_for(head), (Codec::Zstd, None));
        }
        assert_eq!(Compression::Auto.codec_for(LOG), (Codec::Lz4, None));
        assert_eq!(Compression::None.codec_for(LOG), (Codec::Raw, None));
    }
}
