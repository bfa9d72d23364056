//! GNU tar's PAX sparse format 1.0 (`tar --sparse --posix`): the entry is a regular
//! file named `GNUSparseFile.N/NAME` whose PAX records say `GNU.sparse.major=1`,
//! `GNU.sparse.minor=0`, `GNU.sparse.name=<real path>`, `GNU.sparse.realsize=<size>`;
//! its data starts with the map (decimal numbers, each ended by a newline: the count of
//! segments, then each segment's offset and length), padded with NULs to 512 bytes,
//! followed by the segments' bytes end to end. The tar crate hands such an entry over
//! as a plain file, so it is decoded here: the real name, holes kept as holes.
//!
//! Hostile maps are refused: more segments than the stored bytes can hold, numbers that
//! are not plain decimals, segments out of order, overlapping or beyond the real size,
//! unaligned non-final segments (readers disagree on their layout), stored bytes that do
//! not add up. The real size counts toward the layer's size limit.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};

use super::path::RelPath;
use super::ApplyError;

/// Segments above this many are refused (GNU tar writes one per data extent).
const MAX_SEGMENTS: u64 = 1 << 20;
/// Digits of one number (u64 fits in 20).
const MAX_DIGITS: usize = 20;
const BLOCK: u64 = 512;

/// A decoded sparse entry: its real name and size and where its data goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sparse {
    /// The real path (`GNU.sparse.name`), raw.
    pub name: Vec<u8>,
    /// The file's apparent size.
    pub realsize: u64,
}

/// The PAX sparse 1.0 records of an entry, if it is one; other sparse versions are
/// refused rather than unpacked under their fake name.
pub(crate) fn pax_sparse<R: Read>(
    e: &mut tar::Entry<'_, R>,
    path: &RelPath,
) -> Result<Option<Sparse>, ApplyError> {
    let bad = |field| ApplyError::BadHeader {
        path: path.display(),
        field,
    };
    let Some(pax) = e.pax_extensions().map_err(ApplyError::Read)? else {
        return Ok(None);
    };
    let (mut major, mut minor, mut name, mut realsize) = (None, None, None, None);
    for ext in pax {
        let ext = ext.map_err(ApplyError::Read)?;
        match ext.key_bytes() {
            b"GNU.sparse.major" => major = Some(ext.value_bytes().to_vec()),
            b"GNU.sparse.minor" => minor = Some(ext.value_bytes().to_vec()),
            b"GNU.sparse.name" => name = Some(ext.value_bytes().to_vec()),
            b"GNU.sparse.realsize" | b"GNU.sparse.size" => {
                realsize =
                    Some(number(ext.value_bytes()).ok_or_else(|| bad("GNU.sparse.realsize"))?)
            }
            // 0.0 and 0.1 keep their map in records: not supported, and not to be
            // unpacked as a file of the wrong shape either.
            k if k.starts_with(b"GNU.sparse.") && major.is_none() => {
                major = Some(b"0".to_vec());
            }
            _ => {}
        }
    }
    let Some(major) = major else {
        return Ok(None);
    };
    if major != b"1" || minor.as_deref() != Some(b"0") {
        return Err(bad("GNU sparse version (only PAX sparse 1.0 is supported)"));
    }
    let name = name.ok_or_else(|| bad("GNU.sparse.name"))?;
    let realsize = realsize.ok_or_else(|| bad("GNU.sparse.realsize"))?;
    Ok(Some(Sparse { name, realsize }))
}

fn number(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > MAX_DIGITS || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Reads the map at the start of the entry's data (`stored` bytes in all): returns the
/// segments and the map's padded length.
fn read_map(
    r: &mut impl Read,
    stored: u64,
    realsize: u64,
    path: &RelPath,
) -> Result<Vec<(u64, u64)>, ApplyError> {
    let bad = || ApplyError::BadHeader {
        path: path.display(),
        field: "sparse map",
    };
    let mut numbers = MapReader {
        r,
        block: Vec::new(),
        pos: 0,
        consumed: 0,
    };
    let count = numbers.next().ok_or_else(bad)??;
    if count > MAX_SEGMENTS || count.saturating_mul(4) > stored {
        return Err(bad());
    }
    let mut segments = Vec::with_capacity(count as usize);
    let mut end = 0u64;
    for _ in 0..count {
        let offset = numbers.next().ok_or_else(bad)??;
        let len = numbers.next().ok_or_else(bad)??;
        let seg_end = offset.checked_add(len).ok_or_else(bad)?;
        if offset < end || seg_end > realsize {
            return Err(bad());
        }
        if let Some(&(_, prev_len)) = segments.last() {
            if prev_len % BLOCK != 0 {
                return Err(bad()); // only the last segment may end mid-block
            }
        }
        end = seg_end;
        segments.push((offset, len));
    }
    // The map takes whole blocks; the data follows at the next block boundary.
    let map_len = numbers.consumed.div_ceil(BLOCK) * BLOCK;
    let data: u64 = segments.iter().map(|(_, l)| l).sum();
    if map_len.checked_add(data) != Some(stored) {
        return Err(bad());
    }
    Ok(segments)
}

/// Newline-ended decimal numbers, read block by block.
struct MapReader<'a, R: Read> {
    r: &'a mut R,
    block: Vec<u8>,
    pos: usize,
    consumed: u64,
}

impl<R: Read> MapReader<'_, R> {
    fn next(&mut self) -> Option<Result<u64, ApplyError>> {
        let mut digits = Vec::new();
        loop {
            if self.pos == self.block.len() {
                let mut b = vec![0u8; BLOCK as usize];
                match super::entry::read_full(self.r, &mut b) {
                    Ok(n) if n == b.len() => {}
                    Ok(_) => return None,
                    Err(e) => return Some(Err(ApplyError::Read(e))),
                }
                self.block = b;
                self.pos = 0;
            }
            let c = self.block[self.pos];
            self.pos += 1;
            self.consumed += 1;
            match c {
                b'\n' => return number(&digits).map(Ok),
                b'0'..=b'9' if digits.len() < MAX_DIGITS => digits.push(c),
                _ => return None,
            }
        }
    }
}

/// Writes a sparse entry's data into `file` (holes as holes, the file sized to its real
/// size), feeding `hasher` the whole apparent content. Returns the real size.
pub(crate) fn write_sparse<R: Read>(
    e: &mut tar::Entry<'_, R>,
    file: &mut File,
    sparse: &Sparse,
    path: &RelPath,
    mut hasher: Option<&mut blake3::Hasher>,
) -> Result<u64, ApplyError> {
    let io = |op| {
        move |source| ApplyError::Fs {
            op,
            path: path.display(),
            source,
        }
    };
    let stored = e.size();
    let segments = read_map(e, stored, sparse.realsize, path)?;
    let mut at = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    for (offset, len) in segments {
        if let Some(h) = hasher.as_mut() {
            hash_zeros(h, offset - at);
        }
        file.seek(SeekFrom::Start(offset))
            .map_err(io("seeking in"))?;
        let mut left = len;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = super::entry::read_full(e, &mut buf[..want]).map_err(ApplyError::Read)?;
            if n < want {
                return Err(ApplyError::Read(std::io::ErrorKind::UnexpectedEof.into()));
            }
            if let Some(h) = hasher.as_mut() {
                h.update(&buf[..n]);
            }
            file.write_all(&buf[..n]).map_err(io("writing"))?;
            left -= n as u64;
        }
        at = offset + len;
    }
    if let Some(h) = hasher.as_mut() {
        hash_zeros(h, sparse.realsize - at);
    }
    file.set_len(sparse.realsize).map_err(io("sizing"))?;
    Ok(sparse.realsize)
}

/// Hashes `n` zero bytes (a hole) without writing them anywhere.
fn hash_zeros(h: &mut blake3::Hasher, mut n: u64) {
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        h.update(&ZEROS[..k]);
        n -= k as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(text: &str, data: usize) -> Vec<u8> {
        let mut v = text.as_bytes().to_vec();
        v.resize(v.len().div_ceil(512) * 512, 0);
        v.extend(std::iter::repeat_n(b'x', data));
        v
    }

    fn read(bytes: &[u8], realsize: u64) -> Result<Vec<(u64, u64)>, ApplyError> {
        read_map(
            &mut &bytes[..],
            bytes.len() as u64,
            realsize,
            &RelPath::clean(b"f"),
        )
    }

    #[test]
    fn maps_as_gnu_tar_writes_them() {
        let m = map("3\n5242880\n4096\n10481664\n4096\n10485760\n0\n", 8192);
        assert_eq!(
            read(&m, 10485760).expect("map"),
            vec![(5242880, 4096), (10481664, 4096), (10485760, 0)]
        );
        // A file that is all hole.
        assert_eq!(
            read(&map("1\n100\n0\n", 0), 100).expect("map"),
            vec![(100, 0)]
        );
    }

    #[test]
    fn hostile_maps_are_refused() {
        for (text, data, realsize) in [
            ("1\n0\n10\n", 10, 5),                 // beyond the real size
            ("2\n512\n512\n0\n512\n", 1024, 2048), // out of order
            ("2\n0\n100\n512\n100\n", 200, 2048),  // unaligned segment before the last
            ("1\n0\n10\n", 11, 10),                // stored bytes do not add up
            ("99999999\n0\n10\n", 10, 10),         // more segments than bytes
            ("1\n-5\n10\n", 10, 10),               // not a plain decimal
            ("1\n0\n 10\n", 10, 10),               // a space
        ] {
            assert!(read(&map(text, data), realsize).is_err(), "{text:?}");
        }
    }
}
