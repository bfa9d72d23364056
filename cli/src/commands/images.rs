//! Image verbs: import, export, images, inspect, tag, rmi, log.

use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context as _, Result};
use berth_core::cas::archive::ExportFormat;
use berth_core::images::{ImportRequest, Inspection};

use crate::cli::{
    ExportArgs, Format, ImagesArgs, ImportArgs, InspectArgs, LogArgs, RmiArgs, TagArgs,
};
use crate::context::{platform, Context};
use crate::output;

pub fn import(ctx: &Context, a: ImportArgs, out: &mut dyn Write) -> Result<()> {
    let req = ImportRequest {
        name: a.name,
        platform: platform(a.platform.as_deref())?,
        no_unpack: a.no_unpack,
    };
    let imported = ctx
        .ns()?
        .images()
        .import(&a.path, &req)
        .with_context(|| format!("importing {}", a.path.display()))?;
    for (name, desc) in &imported {
        writeln!(out, "{name} {}", desc.digest())?;
    }
    Ok(())
}

pub fn export(ctx: &Context, a: ExportArgs, out: &mut dyn Write) -> Result<()> {
    let (file, refs) = a
        .args
        .split_last()
        .context("export needs images and an output file")?;
    let format = match a.format {
        Format::Oci => ExportFormat::Oci,
        Format::Docker => ExportFormat::Docker,
    };
    let plat = platform(a.platform.as_deref())?;
    let images = ctx.ns()?.images();
    if file == "-" {
        return Ok(images.export(refs, format, &plat, BufWriter::new(out))?);
    }
    Ok(images.export_to_file(refs, format, &plat, Path::new(file))?)
}

pub fn list(ctx: &Context, a: ImagesArgs, out: &mut dyn Write) -> Result<()> {
    let images = ctx.ns()?.images().list()?;
    if a.quiet {
        for i in &images {
            writeln!(out, "{}", i.name)?;
        }
        return Ok(());
    }
    if ctx.json {
        let rows: Vec<serde_json::Value> = images
            .iter()
            .map(|i| {
                serde_json::json!({"name": i.name, "digest": i.digest, "media_type": i.media_type,
                    "size": i.size, "created": output::rfc3339(i.created)})
            })
            .collect();
        return output::json(out, &rows);
    }
    let mut rows = vec![["NAME", "DIGEST", "SIZE", "CREATED"]
        .map(String::from)
        .to_vec()];
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
            output::size(i.size),
            output::age(i.created),
        ]);
    }
    output::table(out, &rows)
}

pub fn inspect(ctx: &Context, a: InspectArgs, out: &mut dyn Write) -> Result<()> {
    let plat = platform(a.platform.as_deref())?;
    let info = ctx.ns()?.images().inspect(&a.reference, &plat)?;
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
    for key in ["Entrypoint", "Cmd", "Env", "WorkingDir", "User"] {
        if let Some(v) = c.get(key).filter(|v| !v.is_null()) {
            writeln!(out, "{:<12}{}", format!("{key}:"), v)?;
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
    let (name, digest) = ctx.ns()?.images().tag(&a.source, &a.target)?;
    writeln!(out, "{name} {digest}")?;
    Ok(())
}

pub fn rmi(ctx: &Context, a: RmiArgs, out: &mut dyn Write) -> Result<()> {
    for n in ctx.ns()?.images().remove(&a.references)? {
        writeln!(out, "untagged {n}")?;
    }
    Ok(())
}

pub fn log(ctx: &Context, a: LogArgs, out: &mut dyn Write) -> Result<()> {
    let rows = ctx.ns()?.images().history(&a.reference)?;
    if ctx.json {
        return output::json(out, &rows);
    }
    for r in rows {
        let what = if r.comment.is_empty() {
            &r.created_by
        } else {
            &r.comment
        };
        let who = match r.author.is_empty() {
            true => String::new(),
            false => format!(" ({})", r.author),
        };
        writeln!(out, "{}  {}{}", r.created, what, who)?;
    }
    Ok(())
}
