//! Where an import reads from: a tar stream (read once, every regular file hashed into
//! ingest) or an OCI layout directory (blobs hashed on demand).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use oci_spec::image::Digest;

use crate::digest::parse_sha256;
use crate::error::{Error, Result};
use crate::ingest::Verified;
use crate::store::{Store, MAX_DOCUMENT_SIZE};

/// Small files kept in memory rather than ingested.
const DOCUMENT_NAMES: &[&str] = &["oci-layout", "index.json", "manifest.json", "repositories"];

/// The files of an archive, as hashed blobs and in-memory documents.
pub(crate) struct Source {
    /// `oci-layout`, `index.json`, `manifest.json`, `repositories`.
    pub documents: HashMap<String, Vec<u8>>,
    /// Every other regular file, by its normalised path.
    files: HashMap<String, Verified>,
    /// Symlinks (docker save links duplicate layers), normalised path → target path.
    links: HashMap<String, String>,
    /// For layout directories: read blobs from here on demand.
    dir: Option<PathBuf>,
}

impl Source {
    /// Reads a tar (optionally gzip/zstd-compressed) once, hashing each file into ingest.
    pub fn from_tar(store: &Store, path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(Error::io(path))?;
        let reader = super::decompressed(file).map_err(Error::io(path))?;
        let mut archive = tar::Archive::new(reader);
        let mut src = Source {
            documents: HashMap::new(),
            files: HashMap::new(),
            links: HashMap::new(),
            dir: None,
        };
        let read_err = |source| Error::Read {
            what: path.display().to_string(),
            source,
        };
        let not_tar = || Error::UnknownArchive {
            path: path.into(),
            reason: "it is not a tar archive (plain, gzip or zstd)",
        };
        for (n, entry) in archive.entries().map_err(|_| not_tar())?.enumerate() {
            // The tar crate's complaint about the very first header says nothing useful.
            let mut entry = match entry {
                Err(_) if n == 0 => return Err(not_tar()),
                e => e.map_err(read_err)?,
            };
            let raw = entry.path_bytes().into_owned();
            let name = normalise(&String::from_utf8_lossy(&raw))?;
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    src.add_file(store, name, &mut entry)
                        .map_err(|e| annotate(e, path))?;
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry
                        .link_name_bytes()
                        .map(|b| String::from_utf8_lossy(&b).into_owned());
                    let target = target.ok_or_else(|| Error::UnsafeEntry(name.clone()))?;
                    let resolved = resolve_link(&name, &target, entry.header().entry_type())?;
                    src.links.insert(name, resolved);
                }
                _ => {} // directories and anything else carry no content
            }
        }
        Ok(src)
    }

    /// An OCI layout directory: documents now, blobs when asked for.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let mut documents = HashMap::new();
        for name in DOCUMENT_NAMES {
            let p = dir.join(name);
            if p.is_file() {
                documents.insert(
                    name.to_string(),
                    read_capped(File::open(&p).map_err(Error::io(&p))?, name)?,
                );
            }
        }
        Ok(Source {
            documents,
            files: HashMap::new(),
            links: HashMap::new(),
            dir: Some(dir.to_path_buf()),
        })
    }

    fn add_file(&mut self, store: &Store, name: String, r: &mut impl Read) -> Result<()> {
        if DOCUMENT_NAMES.contains(&name.as_str()) {
            self.documents.insert(name.clone(), read_capped(r, &name)?);
            return Ok(());
        }
        let mut ingest = store.ingest_temp()?;
        io::copy(r, &mut ingest).map_err(|source| Error::Read {
            what: name.clone(),
            source,
        })?;
        let blob = ingest.finish(None)?;
        if let Some(claimed) = name.strip_prefix("blobs/sha256/") {
            let claimed = parse_sha256(&format!("sha256:{claimed}"))?;
            if claimed != blob.digest {
                return Err(Error::DigestMismatch {
                    expected: claimed.to_string(),
                    found: blob.digest.to_string(),
                });
            }
        }
        self.files.insert(name, blob);
        Ok(())
    }

    /// The path that holds `name`'s bytes, following docker-save symlinks.
    pub fn resolve_name(&self, name: &str) -> Option<String> {
        let mut name = name.to_string();
        for _ in 0..8 {
            match self.links.get(&name) {
                Some(t) => name = t.clone(),
                None => return Some(name),
            }
        }
        None
    }

    /// The file at `name` (following docker-save symlinks), hashed; None if absent.
    pub fn file(&mut self, store: &Store, name: &str) -> Result<Option<&Verified>> {
        let Some(name) = self.resolve_name(name) else {
            return Ok(None);
        };
        if !self.files.contains_key(&name) {
            let Some(dir) = &self.dir else {
                return Ok(None);
            };
            let p = dir.join(&name);
            let Ok(mut f) = File::open(&p) else {
                return Ok(None);
            };
            let mut ingest = store.ingest_temp()?;
            io::copy(&mut f, &mut ingest).map_err(Error::io(&p))?;
            self.files.insert(name.clone(), ingest.finish(None)?);
        }
        Ok(self.files.get(&name))
    }

    /// The blob with `digest` from `blobs/sha256/`, checked against the digest.
    pub fn blob(&mut self, store: &Store, digest: &Digest) -> Result<Option<&Verified>> {
        let hex = crate::digest::hex_of(digest)?;
        let name = format!("blobs/sha256/{hex}");
        match self.file(store, &name)? {
            Some(v) if v.digest != *digest => Err(Error::DigestMismatch {
                expected: digest.to_string(),
                found: v.digest.to_string(),
            }),
            other => Ok(other),
        }
    }

    /// Adds a document berth wrote for this import (docker-save manifests).
    pub fn add_generated(&mut self, store: &Store, bytes: &[u8]) -> Result<(String, Digest, u64)> {
        use std::io::Write;
        let mut ingest = store.ingest_temp()?;
        ingest.write_all(bytes).map_err(Error::io(&ingest.path))?;
        let blob = ingest.finish(None)?;
        let (digest, size) = (blob.digest.clone(), blob.size);
        let name = format!("generated/{digest}");
        self.files.insert(name.clone(), blob);
        Ok((name, digest, size))
    }

    /// Hands over a hashed file for publishing.
    pub fn take(&mut self, name: &str) -> Option<Verified> {
        self.files.remove(name)
    }
}

fn annotate(e: Error, path: &Path) -> Error {
    match e {
        Error::Io { source, .. } if source.kind() == io::ErrorKind::UnexpectedEof => Error::Read {
            what: path.display().to_string(),
            source,
        },
        other => other,
    }
}

fn read_capped(r: impl Read, name: &str) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    r.take(MAX_DOCUMENT_SIZE + 1)
        .read_to_end(&mut buf)
        .map_err(|source| Error::Read {
            what: name.into(),
            source,
        })?;
    if buf.len() as u64 > MAX_DOCUMENT_SIZE {
        return Err(Error::TooLarge {
            what: name.into(),
            limit: MAX_DOCUMENT_SIZE,
        });
    }
    Ok(buf)
}

/// `./a/b` → `a/b`; refuses `..`, absolute and empty paths.
pub(crate) fn normalise(path: &str) -> Result<String> {
    let mut parts = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            _ => return Err(Error::UnsafeEntry(path.into())),
        }
    }
    if parts.is_empty() {
        return Ok(String::new());
    }
    Ok(parts.join("/"))
}

/// Resolves a symlink (relative to its directory) or hardlink (relative to the root).
fn resolve_link(name: &str, target: &str, kind: tar::EntryType) -> Result<String> {
    let joined = match kind {
        tar::EntryType::Symlink => {
            let parent = Path::new(name).parent().unwrap_or(Path::new(""));
            parent.join(target)
        }
        _ => PathBuf::from(target),
    };
    let mut parts: Vec<String> = Vec::new();
    for c in joined.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir if !parts.is_empty() => {
                parts.pop();
            }
            _ => return Err(Error::UnsafeEntry(format!("{name} -> {target}"))),
        }
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalise_and_refuse_escapes() {
        assert_eq!(normalise("./blobs/sha256/x").expect("ok"), "blobs/sha256/x");
        assert!(normalise("../x").is_err());
        assert!(normalise("/etc/passwd").is_err());
        assert_eq!(
            resolve_link("a/layer.tar", "../b/layer.tar", tar::EntryType::Symlink).expect("ok"),
            "b/layer.tar"
        );
        assert!(resolve_link("a/layer.tar", "../../x", tar::EntryType::Symlink).is_err());
    }
}
