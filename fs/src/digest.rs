//! sha256 while streaming: writers that hash and count what passes through.

use std::io::{self, Write};

use sha2::{Digest, Sha256};

/// Passes writes to `inner`, hashing and counting them.
pub struct HashWriter<W> {
    inner: W,
    hash: Sha256,
    size: u64,
}

impl<W: Write> HashWriter<W> {
    /// Starts hashing writes to `inner`.
    pub fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hash: Sha256::new(),
            size: 0,
        }
    }

    /// `sha256:<hex>`, bytes written, and the inner writer.
    pub fn finish(self) -> (String, u64, W) {
        (
            format!("sha256:{}", hex::encode(self.hash.finalize())),
            self.size,
            self.inner,
        )
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `sha256:<hex>` of everything `r` yields.
pub fn sha256_of(r: &mut impl io::Read) -> io::Result<String> {
    let mut w = HashWriter::new(io::sink());
    io::copy(r, &mut w)?;
    Ok(w.finish().0)
}
