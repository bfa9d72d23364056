//! Git-like verbs on root filesystems: checkout, checkouts, status, diff, commit,
//! discard, mount, umount; and the FUSE server behind `mount --fuse`.

use std::io::Write;

use anyhow::{Context as _, Result};
use berth_core::checkouts::{CheckoutRequest, CommitRequest, LayerCompression as Compression};
use berth_core::images::config::CommitMessage;
use berth_core::views;

use crate::cli::{
    CheckoutArgs, CommitArgs, DiffArgs, DirArg, DiscardArgs, FuseServeArgs, LayerCompression,
    MountArgs,
};
use crate::context::{platform, Context};
use crate::output;

pub fn checkout(ctx: &Context, a: CheckoutArgs, out: &mut dyn Write) -> Result<()> {
    let req = CheckoutRequest {
        image: a.image,
        dir: a.dir,
        readonly: a.readonly,
        fuse: a.fuse,
        platform: platform(a.platform.as_deref())?,
    };
    let c = ctx.ns()?.checkouts().create(&req)?;
    writeln!(out, "checked out {} at {}", c.image, c.dir)?;
    Ok(())
}

pub fn list(ctx: &Context, out: &mut dyn Write) -> Result<()> {
    let rows = ctx.ns()?.checkouts().list()?;
    if ctx.json {
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|c| {
                let r = &c.record;
                serde_json::json!({"dir": r.dir, "image": r.image, "manifest": r.manifest,
                    "snapshotter": r.snapshotter, "snapshot": r.snapshot, "readonly": r.readonly,
                    "mounted": c.mounted, "created": output::rfc3339(r.created)})
            })
            .collect();
        return output::json(out, &rows);
    }
    let mut table = vec![["DIR", "IMAGE", "SNAPSHOT", "STATE"]
        .map(String::from)
        .to_vec()];
    for c in rows {
        let state = match (c.mounted, c.record.readonly) {
            (false, _) => "unmounted",
            (true, true) => "mounted ro",
            (true, false) => "mounted",
        };
        let r = c.record;
        table.push(vec![
            r.dir,
            r.image,
            format!("{}/{}", r.snapshotter, r.snapshot),
            state.into(),
        ]);
    }
    output::table(out, &table)
}

pub fn status(ctx: &Context, a: DirArg, out: &mut dyn Write) -> Result<()> {
    let changes = ctx.ns()?.checkouts().status(&a.dir)?;
    if ctx.json {
        let rows: Vec<serde_json::Value> = changes
            .iter()
            .map(|ch| serde_json::json!({"kind": ch.kind.letter().to_string(), "path": ch.path.to_string_lossy()}))
            .collect();
        return output::json(out, &rows);
    }
    for ch in changes {
        writeln!(out, "{} {}", ch.kind.letter(), ch.path.display())?;
    }
    Ok(())
}

pub fn diff(ctx: &Context, a: DiffArgs, out: &mut dyn Write) -> Result<()> {
    if !a.stat {
        return status(ctx, DirArg { dir: a.dir }, out);
    }
    let s = ctx.ns()?.checkouts().diff_summary(&a.dir)?;
    if ctx.json {
        return output::json(out, &s);
    }
    writeln!(
        out,
        "{} added, {} modified, {} deleted; {} of file content, {} as an uncompressed layer",
        s.added,
        s.modified,
        s.deleted,
        output::size(s.content_bytes),
        output::size(s.layer_bytes)
    )?;
    Ok(())
}

pub fn commit(ctx: &Context, a: CommitArgs, out: &mut dyn Write) -> Result<()> {
    let req = CommitRequest {
        dir: a.dir,
        reference: a.reference,
        message: CommitMessage {
            message: a.message,
            author: a.author,
            changes: a.changes,
        },
        compression: match a.compression {
            LayerCompression::Gzip => Compression::Gzip,
            LayerCompression::Zstd => Compression::Zstd,
            LayerCompression::None => Compression::None,
        },
        force: a.force,
    };
    let c = ctx.ns()?.checkouts().commit(&req)?;
    if ctx.json {
        return output::json(out, &c);
    }
    writeln!(
        out,
        "{} {} ({} changes, layer {})",
        c.name,
        c.manifest,
        c.changes,
        output::size(c.layer_size)
    )?;
    Ok(())
}

pub fn discard(ctx: &Context, a: DiscardArgs, out: &mut dyn Write) -> Result<()> {
    let c = ctx.ns()?.checkouts().discard(&a.dir, a.force)?;
    writeln!(out, "discarded {}", c.dir)?;
    Ok(())
}

pub fn mount(ctx: &Context, a: MountArgs, out: &mut dyn Write) -> Result<()> {
    if let Some(reference) = &a.fuse {
        let m = ctx.ns()?.mount_view(reference, &a.dir)?;
        let how = if m.passthrough {
            "passthrough reads"
        } else {
            "cached reads"
        };
        let dir = a.dir.canonicalize().unwrap_or(a.dir);
        writeln!(
            out,
            "mounted {} at {} (FUSE, {how})",
            m.image,
            dir.display()
        )?;
        return Ok(());
    }
    let c = ctx.ns()?.checkouts().mount(&a.dir)?;
    writeln!(out, "mounted {}", c.dir)?;
    Ok(())
}

pub fn umount(ctx: &Context, a: DirArg, out: &mut dyn Write) -> Result<()> {
    if views::is_fuse_mount(&a.dir) {
        ctx.root()?
            .unmount_view(&a.dir)
            .with_context(|| format!("unmounting {}", a.dir.display()))?;
        writeln!(out, "unmounted {}", a.dir.display())?;
        return Ok(());
    }
    let c = ctx.ns()?.checkouts().umount(&a.dir)?;
    writeln!(out, "unmounted {}", c.dir)?;
    Ok(())
}

/// `berth __fuse-serve DIR [--lease ID] LAYER...`: prints the ready line once the
/// kernel's INIT is answered, then serves until unmounted.
pub fn serve_view(ctx: &Context, a: FuseServeArgs) -> Result<()> {
    ctx.root()?
        .serve_view(
            &a.dir,
            &a.layers,
            a.lease.as_deref(),
            Box::new(announce_ready),
        )
        .with_context(|| format!("serving {}", a.dir.display()))
}

/// Tells the starter the view is mounted (what `start_server` in the core waits for).
fn announce_ready(passthrough: bool) {
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "{}", views::ready_line(passthrough));
    let _ = stdout.flush();
}
