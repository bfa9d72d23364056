//! Visitors: one writes the OCI layer tar (hashing both the tar and the compressed
//! bytes as they stream), the other collects a change list.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use super::{read_err, Change, ChangeKind, DiffError, DiffStats, Visitor};
use crate::compression::{Compression, Compressor};
use crate::digest::HashWriter;

type Out<W> = HashWriter<Compressor<HashWriter<W>>>;

/// Writes a layer tar: tar → hash (DiffID) → compressor → hash (blob digest) → `W`.
pub(crate) struct TarOut<W: Write> {
    tar: tar::Builder<Out<W>>,
    compression: Compression,
    /// First path written for each multiply-linked inode: later ones become hardlinks.
    links: HashMap<(u64, u64), PathBuf>,
    changed: u64,
    whiteouts: u64,
    content_bytes: u64,
}

/// Tar paths are relative: `/etc/hosts` is written `etc/hosts`.
fn tar_path(rel: &Path) -> &Path {
    rel.strip_prefix("/").unwrap_or(rel)
}

fn skip_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

impl<W: Write> TarOut<W> {
    pub fn new(out: W, compression: Compression) -> io::Result<Self> {
        let inner = HashWriter::new(compression.compressor(HashWriter::new(out))?);
        let mut tar = tar::Builder::new(inner);
        tar.mode(tar::HeaderMode::Complete);
        Ok(TarOut {
            tar,
            compression,
            links: HashMap::new(),
            changed: 0,
            whiteouts: 0,
            content_bytes: 0,
        })
    }

    pub fn finish(self) -> Result<DiffStats, DiffError> {
        let hashed = self.tar.into_inner().map_err(DiffError::Write)?;
        let (diff_id, uncompressed_size, comp) = hashed.finish();
        let (digest, size, _) = comp.finish().map_err(DiffError::Write)?.finish();
        Ok(DiffStats {
            digest,
            size,
            diff_id,
            uncompressed_size,
            media_type: self.compression.media_type(),
            changed: self.changed,
            whiteouts: self.whiteouts,
            content_bytes: self.content_bytes,
        })
    }

    fn empty_file(&mut self, path: &Path) -> Result<(), DiffError> {
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(0);
        h.set_mtime(0);
        self.tar
            .append_data(&mut h, path, io::empty())
            .map_err(DiffError::Write)
    }

    fn xattrs(&mut self, abs: &Path) -> Result<(), DiffError> {
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        for name in xattr::list(abs).map_err(read_err("listing xattrs of", abs))? {
            if skip_xattr(name.as_bytes()) {
                continue;
            }
            if let Some(v) = xattr::get(abs, &name).map_err(read_err("reading xattr of", abs))? {
                pax.push((format!("SCHILY.xattr.{}", name.to_string_lossy()), v));
            }
        }
        if pax.is_empty() {
            return Ok(());
        }
        pax.sort();
        self.tar
            .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(DiffError::Write)
    }
}

fn header_for(md: &Metadata, kind: EntryType) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(md.mode() & 0o7777);
    h.set_uid(md.uid().into());
    h.set_gid(md.gid().into());
    h.set_mtime(u64::try_from(md.mtime()).unwrap_or(0));
    h.set_size(0);
    h
}

impl<W: Write> Visitor for TarOut<W> {
    fn entry(
        &mut self,
        rel: &Path,
        abs: &Path,
        md: &Metadata,
        _kind: ChangeKind,
    ) -> Result<(), DiffError> {
        let ft = md.file_type();
        if ft.is_socket() {
            return Ok(()); // sockets do not survive a container's life; layers skip them
        }
        let path = tar_path(rel);
        self.changed += 1;
        if ft.is_file() && md.nlink() > 1 {
            if let Some(first) = self.links.get(&(md.dev(), md.ino())).cloned() {
                let mut h = header_for(md, EntryType::Link);
                return self
                    .tar
                    .append_link(&mut h, path, first)
                    .map_err(DiffError::Write);
            }
            self.links.insert((md.dev(), md.ino()), path.to_path_buf());
        }
        self.xattrs(abs)?;
        let w = DiffError::Write;
        if ft.is_dir() {
            let mut h = header_for(md, EntryType::Directory);
            self.tar.append_data(&mut h, path, io::empty()).map_err(w)
        } else if ft.is_symlink() {
            let target = std::fs::read_link(abs).map_err(read_err("reading link", abs))?;
            let mut h = header_for(md, EntryType::Symlink);
            self.tar.append_link(&mut h, path, target).map_err(w)
        } else if ft.is_file() {
            let mut h = header_for(md, EntryType::Regular);
            h.set_size(md.len());
            let f = File::open(abs).map_err(read_err("opening", abs))?;
            self.content_bytes += md.len();
            self.tar.append_data(&mut h, path, f).map_err(w)
        } else {
            let kind = if ft.is_char_device() {
                EntryType::Char
            } else if ft.is_block_device() {
                EntryType::Block
            } else {
                EntryType::Fifo
            };
            let mut h = header_for(md, kind);
            if kind != EntryType::Fifo {
                h.set_device_major(nix::sys::stat::major(md.rdev()) as u32)
                    .map_err(w)?;
                h.set_device_minor(nix::sys::stat::minor(md.rdev()) as u32)
                    .map_err(w)?;
            }
            self.tar.append_data(&mut h, path, io::empty()).map_err(w)
        }
    }

    fn deleted(&mut self, rel: &Path) -> Result<(), DiffError> {
        let path = tar_path(rel);
        let name = path.file_name().map(|n| n.as_bytes()).unwrap_or_default();
        let mut wh = b".wh.".to_vec();
        wh.extend_from_slice(name);
        let wh_path = path.with_file_name(std::ffi::OsStr::from_bytes(&wh));
        self.whiteouts += 1;
        self.empty_file(&wh_path)
    }

    fn opaque(&mut self, rel: &Path, _hidden: &[PathBuf]) -> Result<(), DiffError> {
        self.whiteouts += 1;
        self.empty_file(&tar_path(rel).join(".wh..wh..opq"))
    }
}

/// Collects changes for `berth status`: files and other non-directories always,
/// directories only when added or deleted (a modified directory is noise).
#[derive(Default)]
pub(crate) struct Collector {
    pub changes: Vec<Change>,
}

impl Visitor for Collector {
    fn entry(
        &mut self,
        rel: &Path,
        _abs: &Path,
        md: &Metadata,
        kind: ChangeKind,
    ) -> Result<(), DiffError> {
        if !(md.is_dir() && kind == ChangeKind::Modified) {
            self.changes.push(Change {
                kind,
                path: rel.to_path_buf(),
            });
        }
        Ok(())
    }

    fn deleted(&mut self, rel: &Path) -> Result<(), DiffError> {
        self.changes.push(Change {
            kind: ChangeKind::Deleted,
            path: rel.to_path_buf(),
        });
        Ok(())
    }

    fn opaque(&mut self, _rel: &Path, hidden: &[PathBuf]) -> Result<(), DiffError> {
        for h in hidden {
            self.deleted(h)?;
        }
        Ok(())
    }
}
