//! A build without feature `zstd`: asking for Zstandard is an error, never a silently
//! uncompressed object.

pub(super) const AVAILABLE: bool = false;

/// Never made: [`Encoder::new`] refuses.
pub(crate) enum Encoder {}

impl Encoder {
    pub(super) fn new(_level: i32) -> std::io::Result<Self> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "Zstandard compression needs the `zstd` feature, which this build lacks",
        ))
    }

    pub(super) fn get_ref(&self) -> &Vec<u8> {
        match *self {}
    }

    pub(super) fn get_mut(&mut self) -> &mut Vec<u8> {
        match *self {}
    }

    pub(super) fn write_all(&mut self, _bytes: &[u8]) -> std::io::Result<()> {
        match *self {}
    }

    pub(super) fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {}
    }
}
