//! Streaming ingest: bytes land in `ingest/` while their digest is computed; only
//! content whose size and digest match what was expected is renamed into `blobs/`.
//!
//! An ingest opened by reference survives its writer's death and resumes: the bytes
//! already on disk are re-hashed and writing continues at the end. Each ingest file is
//! flock'ed by its writer, which is how gc tells a live ingest from a stale one.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use nix::fcntl::Flock;
use oci_spec::image::Digest;
use sha2::{Digest as _, Sha256};

use crate::digest::from_hasher;
use crate::error::{Error, Result};

/// An open ingest: write bytes, then [`Ingest::finish`] to verify them.
pub struct Ingest {
    pub(crate) path: PathBuf,
    /// None once handed on to [`Verified`].
    file: Option<Flock<File>>,
    hasher: Sha256,
    size: u64,
    keep_on_drop: bool,
}

/// Content that has been written and verified, waiting in `ingest/` to be published.
pub struct Verified {
    pub(crate) path: PathBuf,
    /// The content's digest.
    pub digest: Digest,
    /// The content's size.
    pub size: u64,
    _file: Flock<File>,
}

impl Ingest {
    /// Opens (or resumes) the ingest file at `path`, waiting for any other writer.
    pub(crate) fn open(path: PathBuf, resumable: bool) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(Error::io(&path))?;
        let mut file = Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::io(&path)(e.into()))?;
        let mut hasher = Sha256::new();
        let mut size = 0;
        if resumable {
            size = rehash(&mut file, &mut hasher).map_err(Error::io(&path))?;
        } else {
            file.set_len(0).map_err(Error::io(&path))?;
        }
        file.seek(SeekFrom::Start(size)).map_err(Error::io(&path))?;
        Ok(Ingest {
            path,
            file: Some(file),
            hasher,
            size,
            keep_on_drop: resumable,
        })
    }

    /// Bytes already written (where a resumed download should continue).
    pub fn offset(&self) -> u64 {
        self.size
    }

    /// Throws away what was written, e.g. when a server ignored a Range request.
    pub fn truncate(&mut self) -> Result<()> {
        let path = self.path.clone();
        let file = self.file_mut().map_err(Error::io(&path))?;
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .map_err(Error::io(&path))?;
        self.hasher = Sha256::new();
        self.size = 0;
        Ok(())
    }

    /// Checks the content against `expected` (size first, then digest) and makes it
    /// durable. On mismatch the ingest is deleted and nothing reaches the store.
    pub fn finish(mut self, expected: Option<(&Digest, u64)>) -> Result<Verified> {
        let digest = from_hasher(std::mem::take(&mut self.hasher));
        if let Some((want, want_size)) = expected {
            let mismatch = if self.size != want_size {
                Some(Error::SizeMismatch {
                    digest: want.to_string(),
                    expected: want_size,
                    found: self.size,
                })
            } else if digest != *want {
                Some(Error::DigestMismatch {
                    expected: want.to_string(),
                    found: digest.to_string(),
                })
            } else {
                None
            };
            if let Some(e) = mismatch {
                let _ = std::fs::remove_file(&self.path);
                return Err(e);
            }
        }
        let file = self
            .file
            .take()
            .ok_or_else(|| Error::io(&self.path)(closed()))?;
        file.sync_all().map_err(Error::io(&self.path))?;
        Ok(Verified {
            path: self.path.clone(),
            digest,
            size: self.size,
            _file: file,
        })
    }

    fn file_mut(&mut self) -> io::Result<&mut Flock<File>> {
        self.file.as_mut().ok_or_else(closed)
    }
}

fn closed() -> io::Error {
    io::Error::other("ingest already finished")
}

fn rehash(file: &mut File, hasher: &mut Sha256) -> io::Result<u64> {
    file.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file_mut()?.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file_mut()?.flush()
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if self.file.is_some() && !self.keep_on_drop {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for Verified {
    fn drop(&mut self) {
        // Published blobs were renamed away; anything left here was never published.
        let _ = std::fs::remove_file(&self.path);
    }
}
