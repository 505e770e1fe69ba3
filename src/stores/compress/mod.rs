//! Whole-object compression of a part being written. Zstandard is a codec module chosen
//! on its `mod` line: the real one with feature `zstd`, else one that refuses, so no
//! function body depends on the feature.

use crate::format::Compression;
use std::io::Write;

#[cfg(feature = "zstd")]
#[path = "zstd.rs"]
mod zstd_codec;
#[cfg(not(feature = "zstd"))]
#[path = "no_zstd.rs"]
mod zstd_codec;

/// Whether this build can write Zstandard (feature `zstd`).
pub(crate) const ZSTD: bool = zstd_codec::AVAILABLE;

/// A compressing writer into memory.
pub(crate) enum Compressor {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Zstd(zstd_codec::Encoder),
}

impl Compressor {
    /// The writer for `c`; `None` for no compression.
    pub(crate) fn new(c: Compression) -> std::io::Result<Option<Self>> {
        Ok(match c {
            Compression::None => None,
            Compression::Gzip => Some(Compressor::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::default(),
            ))),
            Compression::Zstd(level) => Some(Compressor::Zstd(zstd_codec::Encoder::new(level)?)),
        })
    }

    /// The compressed bytes so far.
    pub(crate) fn get_ref(&self) -> &Vec<u8> {
        match self {
            Compressor::Gzip(g) => g.get_ref(),
            Compressor::Zstd(z) => z.get_ref(),
        }
    }

    /// The compressed bytes so far, to take what is ready.
    pub(crate) fn get_mut(&mut self) -> &mut Vec<u8> {
        match self {
            Compressor::Gzip(g) => g.get_mut(),
            Compressor::Zstd(z) => z.get_mut(),
        }
    }

    /// Compress `bytes`.
    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Compressor::Gzip(g) => g.write_all(bytes),
            Compressor::Zstd(z) => z.write_all(bytes),
        }
    }

    /// The rest of the compressed bytes, the stream ended.
    pub(crate) fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Compressor::Gzip(g) => g.finish(),
            Compressor::Zstd(z) => z.finish(),
        }
    }
}
