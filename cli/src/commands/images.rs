//! Image verbs: import, export, images, inspect, tag, rmi.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context as _, Result};
use berth_cas::archive::{self, ExportFormat, ImportOptions};
use berth_cas::image::{self, media_type_of};
use berth_cas::meta::{self, ImageRecord};
use berth_cas::Store;
use oci_spec::image::Descriptor;
use serde::Serialize;

use crate::cli::{ExportArgs, Format, ImagesArgs, ImportArgs, InspectArgs, RmiArgs, TagArgs};
use crate::context::{platform, reference, Context};
use crate::output;

/// Finds an image by name (docker-style) or by its exact digest.
pub fn find_image(store: &Store, s: &str) -> Result<ImageRecord> {
    if s.starts_with("sha256:") {
        let found = store.meta().images()?.into_iter().find(|i| i.digest == s);
        return found.with_context(|| format!("no such image: {s}"));
    }
    let name = reference(s)?.to_string();
    store
        .meta()
        .image(&name)?
        .with_context(|| format!("no such image: {s}"))
}

/// The descriptor a name points at.
pub fn target(img: &ImageRecord) -> Result<Descriptor> {
    Ok(image::descriptor(&img.media_type, &img.digest, img.size)?)
}

pub fn import(ctx: &Context, a: ImportArgs, out: &mut dyn Write) -> Result<()> {
    let store = ctx.store()?;
    let opts = ImportOptions {
        name: a.name.as_deref().map(reference).transpose()?,
        platform: platform(a.platform.as_deref())?,
    };
    let snap = ctx.snapshotter()?;
    let host = opts.platform.clone();
    // Unpack before naming: an image whose layers cannot become a filesystem is not imported.
    let mut unpack_all = |images: &[(String, Descriptor)]| -> Result<(), archive::HookError> {
        for (name, desc) in images.iter().filter(|_| !a.no_unpack) {
            let unpacked = image::resolve(&store, desc, &host, name)
                .map_err(anyhow::Error::from)
                .and_then(|r| crate::unpack::unpack(&store, snap.as_ref(), &r, ctx.limits));
            unpacked.map_err(|e| format!("unpacking {name}: {e:#}"))?;
        }
        Ok(())
    };
    let imported = archive::import_with(&store, &a.path, &opts, &mut unpack_all)
        .with_context(|| format!("importing {}", a.path.display()))?;
    for (name, desc) in &imported.images {
        writeln!(out, "{name} {}", desc.digest())?;
    }
    Ok(())
}

pub fn export(ctx: &Context, a: ExportArgs, out: &mut dyn Write) -> Result<()> {
    let store = ctx.store()?;
    let (file, refs) = a
        .args
        .split_last()
        .context("export needs images and an output file")?;
    let mut images = Vec::new();
    for r in refs {
        let img = find_image(&store, r)?;
        images.push((img.name.clone(), target(&img)?));
    }
    let format = match a.format {
        Format::Oci => ExportFormat::Oci,
        Format::Docker => ExportFormat::Docker,
    };
    let plat = platform(a.platform.as_deref())?;
    if file == "-" {
        return Ok(archive::export(
            &store,
            &images,
            format,
            &plat,
            BufWriter::new(out),
        )?);
    }
    let path = Path::new(file);
    let tmp = path.with_extension("berth-partial");
    let write = || -> Result<()> {
        let f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut w = BufWriter::new(f);
        archive::export(&store, &images, format, &plat, &mut w)?;
        w.into_inner()?.sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[derive(Serialize)]
struct ImageRow {
    name: String,
    digest: String,
    media_type: String,
    size: u64,
    created: String,
}

/// Bytes of everything an image reaches in the store.
fn content_size(store: &Store, img: &ImageRecord) -> u64 {
    let mut total = 0;
    if let Ok(desc) = target(img) {
        let _ = image::walk(store, &desc, &mut |d| total += d.size(), &mut |_| {});
    }
    total
}

pub fn list(ctx: &Context, a: ImagesArgs, out: &mut dyn Write) -> Result<()> {
    let store = ctx.store()?;
    let images = store.meta().images()?;
    if a.quiet {
        for i in &images {
            writeln!(out, "{}", i.name)?;
        }
        return Ok(());
    }
    if ctx.json {
        let rows: Vec<ImageRow> = images
            .iter()
            .map(|i| ImageRow {
                name: i.name.clone(),
                digest: i.digest.clone(),
                media_type: i.media_type.clone(),
                size: content_size(&store, i),
                created: output::rfc3339(i.created),
            })
            .collect();
        return output::json(out, &rows);
    }
    let mut rows = vec![vec![
        "NAME".into(),
        "DIGEST".into(),
        "SIZE".into(),
        "CREATED".into(),
    ]];
    for i in &images {
        let short = i
            .digest
            .trim_start_matches("sha256:")
            .chars()
            .take(12)
            .collect();
        rows.push(vec![
            i.name.clone(),
            short,
            output::size(content_size(&store, i)),
            output::age(i.created),
        ]);
    }
    output::table(out, &rows)
}

#[derive(Serialize)]
struct LayerInfo {
    digest: String,
    media_type: String,
    size: u64,
    diff_id: String,
}

#[derive(Serialize)]
struct Inspection {
    name: String,
    digest: String,
    media_type: String,
    platform: String,
    manifest_digest: String,
    manifest: serde_json::Value,
    config_digest: String,
    config: serde_json::Value,
    layers: Vec<LayerInfo>,
}

pub fn inspect(ctx: &Context, a: InspectArgs, out: &mut dyn Write) -> Result<()> {
    let store = ctx.store()?;
    let img = find_image(&store, &a.reference)?;
    let plat = platform(a.platform.as_deref())?;
    let r = image::resolve(&store, &target(&img)?, &plat, &img.name)?;
    let manifest_raw = image::read_verified(&store, &r.manifest_desc)?;
    let diff_ids = r.diff_ids();
    let layers = r
        .manifest
        .layers()
        .iter()
        .enumerate()
        .map(|(i, l)| LayerInfo {
            digest: l.digest().to_string(),
            media_type: media_type_of(l),
            size: l.size(),
            diff_id: diff_ids.get(i).cloned().unwrap_or_default(),
        })
        .collect();
    let info = Inspection {
        name: img.name.clone(),
        digest: img.digest.clone(),
        media_type: img.media_type.clone(),
        platform: format!("{}/{}", r.config.os(), r.config.architecture()),
        manifest_digest: r.manifest_desc.digest().to_string(),
        manifest: serde_json::from_slice(&manifest_raw)?,
        config_digest: r.manifest.config().digest().to_string(),
        config: serde_json::from_slice(&r.config_raw)?,
        layers,
    };
    if ctx.json {
        return output::json(out, &info);
    }
    print_inspection(out, &info)
}

fn print_inspection(out: &mut dyn Write, i: &Inspection) -> Result<()> {
    writeln!(out, "Name:       {}", i.name)?;
    writeln!(out, "Digest:     {} ({})", i.digest, i.media_type)?;
    writeln!(out, "Platform:   {}", i.platform)?;
    writeln!(out, "Manifest:   {}", i.manifest_digest)?;
    writeln!(out, "Config:     {}", i.config_digest)?;
    let c = &i.config["config"];
    for (label, key) in [
        ("Entrypoint", "Entrypoint"),
        ("Cmd", "Cmd"),
        ("Env", "Env"),
        ("WorkingDir", "WorkingDir"),
        ("User", "User"),
    ] {
        if let Some(v) = c.get(key).filter(|v| !v.is_null()) {
            writeln!(out, "{:<12}{}", format!("{label}:"), v)?;
        }
    }
    writeln!(out, "Layers:")?;
    for l in &i.layers {
        writeln!(
            out,
            "  {}  {:>10}  {}",
            l.digest,
            output::size(l.size),
            l.media_type
        )?;
    }
    Ok(())
}

pub fn tag(ctx: &Context, a: TagArgs, out: &mut dyn Write) -> Result<()> {
    let store = ctx.store()?;
    let src = find_image(&store, &a.source)?;
    let dst = reference(&a.target)?.to_string();
    store
        .meta()
        .write(|tx| meta::put_image(tx, &dst, &src.digest, &src.media_type, src.size))?;
    store.sync_index_json()?;
    writeln!(out, "{dst} {}", src.digest)?;
    Ok(())
}

pub fn rmi(ctx: &Context, a: RmiArgs, out: &mut dyn Write) -> Result<()> {
    let store = ctx.store()?;
    let mut names = Vec::new();
    for r in &a.references {
        names.push(find_image(&store, r)?.name);
    }
    store.meta().write(|tx| {
        for n in &names {
            meta::delete_image(tx, n)?;
        }
        Ok(())
    })?;
    store.sync_index_json()?;
    for n in names {
        writeln!(out, "untagged {n}")?;
    }
    Ok(())
}
