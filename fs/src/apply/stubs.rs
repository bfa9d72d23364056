//! Applying regular files as overlayfs metacopy stubs (see `objects::stubs`): the file
//! in the layer is an empty stub of the real size redirecting to its content, and the
//! content goes into a staging directory named by its content id, to be published into the
//! object store with the layer's index. Each file is written once.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{renameat2, OFlag, RenameFlags};
use nix::sys::stat::Mode;
use nix::unistd::{unlinkat, UnlinkatFlags};

use super::entry::{create_new, fs_err, io_err, read_full, write_data};
use super::path::RelPath;
use super::sparse::Sparse;
use super::ApplyError;

/// Files up to this size are read whole and hashed first, then written once under
/// their id (nothing to rename; content staged already is not written again).
const SMALL: usize = 1 << 20;

/// Where content goes, and what is staged so far.
pub(super) struct StubWriter {
    staging: OwnedFd,
    buf: Vec<u8>,
    /// Allocated bytes of each staged content, by hash.
    blocks: HashMap<blake3::Hash, u64>,
    next_tmp: u64,
}

/// One regular file applied as a stub.
pub(super) struct Stubbed {
    /// The stub, open for its attributes to be set.
    pub file: File,
    pub ino: u64,
    pub hash: blake3::Hash,
    /// Allocated bytes of its content.
    pub blocks: u64,
}

impl StubWriter {
    /// Stages content into the directory `dir`.
    pub fn open(dir: &Path) -> nix::Result<StubWriter> {
        let staging = nix::fcntl::open(
            dir,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(StubWriter {
            staging,
            buf: Vec::new(),
            blocks: HashMap::new(),
            next_tmp: 0,
        })
    }

    /// Writes entry `e` as the stub `name` under `pfd`, its content staged; `size` is
    /// its apparent size.
    pub fn write<R: Read>(
        &mut self,
        e: &mut tar::Entry<'_, R>,
        pfd: &OwnedFd,
        name: &[u8],
        path: &RelPath,
        sparse: Option<&Sparse>,
        size: u64,
    ) -> Result<Stubbed, ApplyError> {
        let (hash, blocks) = match sparse {
            None if e.size() <= SMALL as u64 => self.stage_small(e, path)?,
            _ => self.stage_streamed(e, path, sparse)?,
        };
        let id = crate::objects::content_id(&hash);
        let (file, ino) =
            make_stub(pfd, name, size, &id).map_err(fs_err("making the stub", path))?;
        Ok(Stubbed {
            file,
            ino,
            hash,
            blocks,
        })
    }

    /// Reads the file whole, hashes it, and writes it under its id unless staged.
    fn stage_small<R: Read>(
        &mut self,
        e: &mut tar::Entry<'_, R>,
        path: &RelPath,
    ) -> Result<(blake3::Hash, u64), ApplyError> {
        let want = e.size() as usize;
        self.buf.resize(want + 1, 0);
        let n = read_full(e, &mut self.buf).map_err(ApplyError::Read)?;
        let data = &self.buf[..n];
        let hash = blake3::hash(data);
        if let Some(&b) = self.blocks.get(&hash) {
            return Ok((hash, b));
        }
        let id = crate::objects::content_id(&hash);
        let mut file = match create_new(&self.staging, id.as_bytes()) {
            Ok(f) => f,
            Err(errno) => return Err(fs_err("staging the content of", path)(errno)),
        };
        write_holey(&mut file, data).map_err(io_err("writing", path))?;
        let blocks = file.metadata().map_err(io_err("stat", path))?.blocks() * 512;
        self.blocks.insert(hash, blocks);
        Ok((hash, blocks))
    }

    /// Streams the file into a temporary name, then names it by its id.
    fn stage_streamed<R: Read>(
        &mut self,
        e: &mut tar::Entry<'_, R>,
        path: &RelPath,
        sparse: Option<&Sparse>,
    ) -> Result<(blake3::Hash, u64), ApplyError> {
        let tmp = format!(".apply-{}", self.next_tmp);
        self.next_tmp += 1;
        let mut file = create_new(&self.staging, tmp.as_bytes())
            .map_err(fs_err("staging the content of", path))?;
        let mut hasher = blake3::Hasher::new();
        match sparse {
            Some(s) => {
                super::sparse::write_sparse(e, &mut file, s, path, Some(&mut hasher))?;
            }
            None => write_data(e, &mut file, path, Some(&mut hasher))?,
        }
        let hash = hasher.finalize();
        let id = crate::objects::content_id(&hash);
        let blocks = file.metadata().map_err(io_err("stat", path))?.blocks() * 512;
        drop(file);
        let fd = self.staging.as_fd();
        match renameat2(
            fd,
            tmp.as_str(),
            fd,
            id.as_str(),
            RenameFlags::RENAME_NOREPLACE,
        ) {
            Ok(()) => {}
            Err(Errno::EEXIST) => unlinkat(fd, tmp.as_str(), UnlinkatFlags::NoRemoveDir)
                .map_err(fs_err("staging the content of", path))?,
            Err(errno) => return Err(fs_err("staging the content of", path)(errno)),
        }
        let blocks = *self.blocks.entry(hash).or_insert(blocks);
        Ok((hash, blocks))
    }
}

/// Writes `data`, leaving all-zero chunks as holes.
fn write_holey(file: &mut File, data: &[u8]) -> std::io::Result<()> {
    const CHUNK: usize = 64 * 1024;
    static ZEROS: [u8; CHUNK] = [0; CHUNK];
    let mut holes = false;
    for chunk in data.chunks(CHUNK) {
        if chunk == &ZEROS[..chunk.len()] {
            file.seek(SeekFrom::Current(chunk.len() as i64))?;
            holes = true;
        } else {
            file.write_all(chunk)?;
        }
    }
    if holes {
        file.set_len(data.len() as u64)?;
    }
    Ok(())
}

/// A metacopy stub `name` under `pfd`: empty, `size` long, redirecting to object `id`;
/// returns it open, and its inode. Owner, mode, xattrs and times follow as for any file.
fn make_stub(pfd: &OwnedFd, name: &[u8], size: u64, id: &str) -> nix::Result<(File, u64)> {
    use xattr::FileExt;
    let f = create_new(pfd, name)?;
    let errno = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    f.set_len(size).map_err(errno)?;
    f.set_xattr(crate::objects::METACOPY_XATTR, b"")
        .map_err(errno)?;
    f.set_xattr(
        crate::objects::REDIRECT_XATTR,
        crate::objects::redirect_of(id).as_bytes(),
    )
    .map_err(errno)?;
    let ino = f.metadata().map_err(errno)?.ino();
    Ok((f, ino))
}
