//! Store upkeep and introspection: snapshots, gc, du, fsck, events, namespaces, man pages.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use berth_core::events::EventFilter;
use berth_core::fs::snapshot::Kind;
use berth_core::GcOptions;
use clap::CommandFactory;

use crate::cli::{
    Cli, EventsArgs, FsckArgs, GcArgs, NamespacesArgs, NamespacesCommand, SnapshotsArgs,
    SnapshotsCommand,
};
use crate::context::Context;
use crate::output;

pub fn snapshots(ctx: &Context, a: SnapshotsArgs, out: &mut dyn Write) -> Result<()> {
    let root = ctx.root()?;
    if let Some(SnapshotsCommand::Rm { keys }) = a.command {
        let (name, snap) = root.default_snapshotter()?;
        for k in keys {
            root.remove_snapshot(&name, snap.as_ref(), &k)?;
            writeln!(out, "removed {k}")?;
        }
        return Ok(());
    }
    let mut rows = Vec::new();
    for (name, snap) in root.existing_snapshotters()? {
        for info in snap.list()? {
            let kind = match info.kind {
                Kind::Active => "active",
                Kind::View => "view",
                Kind::Committed => "committed",
            };
            rows.push(serde_json::json!({"snapshotter": name, "key": info.key,
                "parent": info.parent, "kind": kind}));
        }
    }
    if ctx.json {
        return output::json(out, &rows);
    }
    let mut table = vec![["KEY", "PARENT", "KIND", "SNAPSHOTTER"]
        .map(String::from)
        .to_vec()];
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    for r in rows {
        table.push(vec![
            text(&r["key"]),
            text(&r["parent"]),
            text(&r["kind"]),
            text(&r["snapshotter"]),
        ]);
    }
    output::table(out, &table)
}

pub fn gc(ctx: &Context, a: GcArgs, out: &mut dyn Write) -> Result<()> {
    let report = ctx.root()?.gc(&GcOptions {
        ingest_grace: Duration::from_secs(a.ingest_grace),
    })?;
    if ctx.json {
        return output::json(out, &report);
    }
    writeln!(
        out,
        "removed {} blobs ({}), {} snapshots, {} layer indexes, {} file objects ({})",
        report.blobs_removed,
        output::size(report.bytes_freed),
        report.snapshots_removed,
        report.layer_indexes_removed,
        report.objects_removed,
        output::size(report.object_bytes_freed)
    )?;
    writeln!(
        out,
        "removed {} orphaned snapshot dirs, {} abandoned ingests ({}), {} ended leases",
        report.orphan_dirs_removed,
        report.ingests_removed,
        output::size(report.ingest_bytes_freed),
        report.leases_expired
    )?;
    for m in &report.missing {
        writeln!(
            out,
            "missing: {} needs {} (see berth fsck)",
            m.root, m.digest
        )?;
    }
    if report.layers_kept {
        writeln!(
            out,
            "kept every snapshot: an image's config is unreadable (see berth fsck)"
        )?;
    }
    Ok(())
}

pub fn du(ctx: &Context, out: &mut dyn Write) -> Result<()> {
    let usage = ctx.root()?.du()?;
    if ctx.json {
        return output::json(out, &usage);
    }
    let mut table = vec![["KIND", "COUNT", "SIZE"].map(String::from).to_vec()];
    for r in &usage.rows {
        table.push(vec![
            r.kind.clone(),
            r.count.to_string(),
            output::size(r.bytes),
        ]);
    }
    table.push(vec![
        "total".into(),
        String::new(),
        output::size(usage.total()),
    ]);
    output::table(out, &table)?;
    writeln!(
        out,
        "unpacked file data: logical {}, physical {}, saved by dedup {}",
        output::size(usage.dedup.logical),
        output::size(usage.dedup.physical),
        output::size(usage.dedup.saved())
    )?;
    Ok(())
}

pub fn info(ctx: &Context, out: &mut dyn Write) -> Result<()> {
    let i = ctx.root()?.info()?;
    if ctx.json {
        return output::json(out, &i);
    }
    writeln!(out, "root:         {}", i.root)?;
    writeln!(out, "run root:     {}", i.run_root)?;
    writeln!(out, "snapshotter:  {}", i.snapshotter)?;
    writeln!(out, "layers:       {}: {}", i.layers, i.layers_note)?;
    writeln!(out, "kernel:       {}", i.kernel)?;
    writeln!(out, "namespaces:   {}", i.namespaces.join(", "))?;
    Ok(())
}

pub fn fsck(ctx: &Context, a: FsckArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let r = ctx.root()?.fsck(a.repair)?;
    let status = if r.is_sound() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    if ctx.json {
        let mut v = serde_json::to_value(&r)?;
        v["sound"] = r.is_sound().into();
        output::json(out, &v)?;
        return Ok(status);
    }
    for d in &r.corrupt_blobs {
        writeln!(
            out,
            "content: corrupt blob {d} (berth fsck --repair quarantines it)"
        )?;
    }
    for p in &r.problems {
        writeln!(out, "{}: {}: {}", p.area, p.subject, p.detail)?;
    }
    for what in &r.repaired {
        writeln!(out, "repaired: {what}")?;
    }
    writeln!(
        out,
        "checked {} blobs ({}), {} file objects ({}) and {} index entries, {} snapshots, {} checkouts, {} containers: {}",
        r.blobs_checked,
        output::size(r.blob_bytes),
        r.objects_checked,
        output::size(r.object_bytes),
        r.index_entries,
        r.snapshots_checked,
        r.checkouts_checked,
        r.containers_checked,
        if r.is_sound() { "store is sound" } else { "PROBLEMS FOUND" }
    )?;
    if r.unreferenced_blobs > 0 {
        writeln!(
            out,
            "{} unreferenced blobs (berth gc removes them)",
            r.unreferenced_blobs
        )?;
    }
    if r.lapsed_leases > 0 {
        writeln!(
            out,
            "{} leases of finished or killed operations (berth gc ends them)",
            r.lapsed_leases
        )?;
    }
    Ok(status)
}

pub fn events(ctx: &Context, a: EventsArgs, out: &mut dyn Write) -> Result<()> {
    let filter = EventFilter {
        namespace: (!a.all_namespaces).then(|| ctx.namespace.clone()),
        since_ns: a.since.as_deref().map(parse_since).transpose()?,
        no_follow: a.no_follow,
    };
    ctx.root()?.follow_events(&filter, |e| {
        let written = if ctx.json {
            serde_json::to_writer(&mut *out, e).map_err(std::io::Error::from)
        } else {
            let t = UNIX_EPOCH + Duration::from_nanos(e.time.max(0) as u64);
            let attrs: Vec<String> = e.attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let ns = if e.namespace.is_empty() {
                "-"
            } else {
                &e.namespace
            };
            write!(
                out,
                "{} {ns} {} {} {}",
                humantime::format_rfc3339_nanos(t),
                e.topic,
                e.subject,
                attrs.join(" ")
            )
        };
        // A closed pipe (`berth events | head`) ends the stream quietly.
        Ok(written
            .and_then(|()| writeln!(out))
            .and_then(|()| out.flush())
            .is_ok())
    })?;
    Ok(())
}

/// RFC 3339, seconds since the epoch, or an age (`10m`, `2h`) → ns since the epoch.
fn parse_since(s: &str) -> Result<i64> {
    let at = if let Ok(secs) = s.parse::<u64>() {
        UNIX_EPOCH + Duration::from_secs(secs)
    } else if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        t
    } else if let Ok(age) = humantime::parse_duration(s) {
        SystemTime::now() - age
    } else {
        bail!(
            "--since {s:?}: give an RFC 3339 time, seconds since the epoch, or an age such as 10m"
        );
    };
    Ok(at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64))
}

pub fn namespaces(ctx: &Context, a: NamespacesArgs, out: &mut dyn Write) -> Result<()> {
    let root = ctx.root()?;
    match a.command {
        Some(NamespacesCommand::Create { name }) => {
            root.create_namespace(&name)?;
            writeln!(out, "{name}")?;
        }
        Some(NamespacesCommand::Rm { names }) => {
            for n in names {
                root.remove_namespace(&n)?;
                writeln!(out, "{n}")?;
            }
        }
        None => {
            let names = root.namespaces()?;
            if ctx.json {
                return output::json(out, &names);
            }
            for n in names {
                writeln!(out, "{n}")?;
            }
        }
    }
    Ok(())
}

/// Writes `berth.1` and `berth-<verb>.1` for every visible verb (nested ones too).
pub fn manpages(dir: &Path, out: &mut dyn Write) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Cli::command();
    cmd.build();
    let mut written = 0;
    write_pages(&cmd, "berth", dir, &mut written)?;
    writeln!(out, "wrote {written} man pages to {}", dir.display())?;
    Ok(())
}

fn write_pages(cmd: &clap::Command, name: &str, dir: &Path, written: &mut usize) -> Result<()> {
    let cmd = cmd
        .clone()
        .name(name.to_string())
        .display_name(name.replace('-', " "));
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    *written += 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}
