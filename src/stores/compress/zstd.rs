//! Zstandard through the `zstd` crate (feature `zstd`).

pub(super) const AVAILABLE: bool = true;

/// A Zstandard stream into memory.
pub(crate) struct Encoder(zstd::stream::write::Encoder<'static, Vec<u8>>);

impl Encoder {
    pub(super) fn new(level: i32) -> std::io::Result<Self> {
        Ok(Encoder(zstd::stream::write::Encoder::new(
            Vec::new(),
            level,
        )?))
    }

    pub(super) fn get_ref(&self) -> &Vec<u8> {
        self.0.get_ref()
    }

    pub(super) fn get_mut(&mut self) -> &mut Vec<u8> {
        self.0.get_mut()
    }

    pub(super) fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        std::io::Write::write_all(&mut self.0, bytes)
    }

    pub(super) fn finish(self) -> std::io::Result<Vec<u8>> {
        self.0.finish()
    }
}
