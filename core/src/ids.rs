//! Random identifiers for checkouts, snapshots and containers.

use std::io::Read;

use crate::error::{Error, Result};

/// `n` random bytes as lowercase hex, from the kernel's CSPRNG.
pub fn random_hex(n: usize) -> Result<String> {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(Error::io("reading /dev/urandom"))?;
    Ok(hex::encode(buf))
}

/// The first 12 hex digits, as `ps` shows ids.
pub fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}
