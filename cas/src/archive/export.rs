//! `berth export`: OCI layout tars and docker-archive tars.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};

use oci_spec::image::Descriptor;

use crate::error::{Error, Result};
use crate::image;
use crate::platform::Platform;
use crate::reference::Reference;
use crate::store::Store;

/// Archive formats `berth export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// OCI image layout in a tar (`oci-archive:` for skopeo; `ctr images import`).
    Oci,
    /// `docker save` format (`docker-archive:` for skopeo; `docker load`).
    Docker,
}

/// Writes `images` (name and target) to `out` as a tar archive.
pub fn export(
    store: &Store,
    images: &[(String, Descriptor)],
    format: ExportFormat,
    platform: &Platform,
    out: impl Write,
) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    match format {
        ExportFormat::Oci => export_oci(store, images, &mut tar)?,
        ExportFormat::Docker => export_docker(store, images, platform, &mut tar)?,
    }
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(write_err)?;
    Ok(())
}

fn write_err(source: io::Error) -> Error {
    Error::Read {
        what: "export output".into(),
        source,
    }
}

fn export_oci<W: Write>(
    store: &Store,
    images: &[(String, Descriptor)],
    tar: &mut tar::Builder<W>,
) -> Result<()> {
    let mut blobs = BTreeSet::new();
    for (_, desc) in images {
        image::walk(
            store,
            desc,
            &mut |d| {
                blobs.insert(d.digest().to_string());
            },
            &mut |_| {},
        )?;
    }
    append_dir(tar, "blobs/")?;
    append_dir(tar, "blobs/sha256/")?;
    for digest in &blobs {
        let digest = &crate::digest::parse_sha256(digest)?;
        let file = store.open_blob(digest)?;
        let len = file
            .metadata()
            .map_err(Error::io(store.blob_path(digest)?))?
            .len();
        append_reader(
            tar,
            &format!("blobs/sha256/{}", crate::digest::hex_of(digest)?),
            len,
            file,
        )?;
    }
    let index = image::named_index(images)?;
    append_bytes(tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    append_bytes(
        tar,
        "index.json",
        &serde_json::to_vec(&index).map_err(Error::json("index.json"))?,
    )
}

/// One image of a docker-archive's `manifest.json`.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// docker-archive: one config and uncompressed layer tars per image, plus manifest.json.
fn export_docker<W: Write>(
    store: &Store,
    images: &[(String, Descriptor)],
    platform: &Platform,
    tar: &mut tar::Builder<W>,
) -> Result<()> {
    let mut written = BTreeSet::new();
    let mut entries = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (name, desc) in images {
        let resolved = image::resolve(store, desc, platform, name)?;
        let config_hex = crate::digest::hex_of(resolved.manifest.config().digest())?.to_string();
        let config_name = format!("{config_hex}.json");
        if written.insert(config_name.clone()) {
            append_bytes(tar, &config_name, &resolved.config_raw)?;
        }
        let mut layer_names = Vec::new();
        for (layer, diff_id) in resolved.manifest.layers().iter().zip(resolved.diff_ids()) {
            let hex = diff_id
                .strip_prefix("sha256:")
                .unwrap_or(&diff_id)
                .to_string();
            let layer_name = format!("{hex}/layer.tar");
            if written.insert(layer_name.clone()) {
                append_uncompressed_layer(store, tar, layer, &layer_name)?;
            }
            layer_names.push(layer_name);
        }
        let reference = Reference::parse(name)?;
        let tag = reference.familiar();
        entries.push(DockerEntry {
            config: config_name,
            repo_tags: vec![tag.clone()],
            layers: layer_names.clone(),
        });
        if let (Some(t), Some(last)) = (reference.tag(), layer_names.last()) {
            let repo = tag
                .rsplit_once(':')
                .map_or(tag.as_str(), |(r, _)| r)
                .to_string();
            let id = last.trim_end_matches("/layer.tar").to_string();
            repositories
                .entry(repo)
                .or_default()
                .insert(t.to_string(), id);
        }
    }
    append_bytes(
        tar,
        "manifest.json",
        &serde_json::to_vec(&entries).map_err(Error::json("manifest.json"))?,
    )?;
    append_bytes(
        tar,
        "repositories",
        &serde_json::to_vec(&repositories).map_err(Error::json("repositories"))?,
    )
}

/// Decompresses a layer into a temporary ingest file (the tar header needs its size first).
fn append_uncompressed_layer<W: Write>(
    store: &Store,
    tar: &mut tar::Builder<W>,
    layer: &Descriptor,
    name: &str,
) -> Result<()> {
    let blob = store.open_blob(layer.digest())?;
    let mut reader =
        super::decompressed(blob).map_err(Error::io(store.blob_path(layer.digest())?))?;
    let mut tmp = store.ingest_temp()?;
    io::copy(&mut reader, &mut tmp).map_err(|source| Error::Read {
        what: layer.digest().to_string(),
        source,
    })?;
    let verified = tmp.finish(None)?;
    let file = std::fs::File::open(&verified.path).map_err(Error::io(&verified.path))?;
    append_reader(tar, name, verified.size, file)
}

fn header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(mode);
    h.set_entry_type(kind);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, name: &str) -> Result<()> {
    let mut h = header(0, 0o755, tar::EntryType::Directory);
    tar.append_data(&mut h, name, io::empty())
        .map_err(write_err)
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> Result<()> {
    append_reader(tar, name, bytes.len() as u64, bytes)
}

fn append_reader<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    len: u64,
    r: impl Read,
) -> Result<()> {
    let mut h = header(len, 0o644, tar::EntryType::Regular);
    tar.append_data(&mut h, name, r.take(len))
        .map_err(write_err)
}
