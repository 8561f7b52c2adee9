//! A deterministic byte stream for bulk transfers, 64 KiB at a time, and its checksum (SipHash,
//! computed by the optimised standard library so that it does not limit the measured rate).

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;

/// Bytes per chunk of a [`Pattern`].
pub const CHUNK: usize = 64 * 1024;

/// The build profile of the test (and so, unless `IOTH_HOST` says otherwise, of the host and
/// the plug-ins whose rates the tests print).
pub const PROFILE: &str = if cfg!(debug_assertions) {
    "debug"
} else {
    "release"
};

/// A deterministic byte stream, [`CHUNK`] bytes at a time, and its checksum.
pub struct Pattern {
    base: Vec<u8>,
    n: u64,
    sum: DefaultHasher,
}

impl Default for Pattern {
    fn default() -> Pattern {
        Pattern::new()
    }
}

impl Pattern {
    /// A stream at its first chunk, with an empty checksum.
    pub fn new() -> Pattern {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let base = (0..CHUNK)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        Pattern {
            base,
            n: 0,
            sum: Default::default(),
        }
    }

    /// The next chunk: pseudo-random bytes stamped with the chunk number.
    pub fn fill(&mut self, chunk: &mut [u8]) {
        chunk.copy_from_slice(&self.base);
        chunk[..8].copy_from_slice(&self.n.to_le_bytes());
        self.n += 1;
    }

    /// Adds `chunk` to the checksum.
    pub fn add(&mut self, chunk: &[u8]) {
        self.sum.write(chunk);
    }

    /// The checksum of everything added.
    pub fn checksum(&self) -> u64 {
        self.sum.finish()
    }
}
