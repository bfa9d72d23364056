//! Store upkeep: gc, du, fsck.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use berth_cas::{fsck as check, gc as collect, Store};
use serde::Serialize;

use crate::cli::GcArgs;
use crate::context::Context;
use crate::output;

pub fn gc(ctx: &Context, a: GcArgs, out: &mut dyn Write) -> Result<()> {
    let store = Store::open_exclusive(&ctx.root)
        .with_context(|| format!("opening store at {}", ctx.root.display()))?;
    let snapshots = super::snapshots::collect(ctx, &store)?;
    let objects = crate::objects::collect(&ctx.root, &store)?;
    let report = collect::collect(&store, Duration::from_secs(a.ingest_grace))?;
    if ctx.json {
        return output::json(
            out,
            &serde_json::json!({"content": report, "snapshots": snapshots,
                "objects": {"removed": objects.removed, "bytes_freed": objects.bytes}}),
        );
    }
    writeln!(
        out,
        "removed {} file objects ({})",
        objects.removed,
        output::size(objects.bytes)
    )?;
    writeln!(
        out,
        "removed {} snapshots, {} orphaned snapshot dirs",
        snapshots.removed, snapshots.orphans
    )?;
    writeln!(
        out,
        "removed {} blobs ({}), {} abandoned ingests ({}), {} expired leases",
        report.blobs_removed,
        output::size(report.bytes_freed),
        report.ingests_removed,
        output::size(report.ingest_bytes_freed),
        report.leases_expired
    )?;
    Ok(())
}

#[derive(Serialize, Default)]
struct Usage {
    kind: String,
    count: u64,
    bytes: u64,
}

pub fn du(ctx: &Context, out: &mut dyn Write) -> Result<()> {
    let store = ctx.store()?;
    let mut rows: Vec<Usage> = Vec::new();
    let mut by_kind = std::collections::BTreeMap::<&str, Usage>::new();
    for b in store.meta().blobs()? {
        let kind = match berth_cas::media::kind(&b.media_type) {
            berth_cas::media::Kind::Index => "indexes",
            berth_cas::media::Kind::Manifest => "manifests",
            berth_cas::media::Kind::Config => "configs",
            berth_cas::media::Kind::Layer => "layers",
            berth_cas::media::Kind::Unknown => "other blobs",
        };
        let u = by_kind.entry(kind).or_default();
        u.count += 1;
        u.bytes += b.size;
    }
    for (k, mut u) in by_kind {
        u.kind = k.into();
        rows.push(u);
    }
    for (kind, dir) in [("ingest", "ingest"), ("quarantine", "quarantine")] {
        let (count, bytes) = dir_usage(&ctx.root.join(dir));
        rows.push(Usage {
            kind: kind.into(),
            count,
            bytes,
        });
    }
    let dedup = crate::objects::usage(&ctx.root)?;
    rows.push(Usage {
        kind: "file objects".into(),
        count: dedup.objects,
        bytes: dedup.physical,
    });
    let db = ["meta.db", "meta.db-wal", "meta.db-shm"]
        .iter()
        .map(|f| file_len(&ctx.root.join(f)))
        .sum();
    rows.push(Usage {
        kind: "metadata".into(),
        count: 1,
        bytes: db,
    });
    if ctx.json {
        return output::json(out, &rows);
    }
    let mut table = vec![vec!["KIND".into(), "COUNT".into(), "SIZE".into()]];
    let total: u64 = rows.iter().map(|r| r.bytes).sum();
    for r in &rows {
        table.push(vec![
            r.kind.clone(),
            r.count.to_string(),
            output::size(r.bytes),
        ]);
    }
    table.push(vec!["total".into(), String::new(), output::size(total)]);
    output::table(out, &table)?;
    writeln!(
        out,
        "unpacked file data: logical {}, physical {}, saved by dedup {}",
        output::size(dedup.logical),
        output::size(dedup.physical),
        output::size(dedup.saved())
    )?;
    Ok(())
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn dir_usage(dir: &Path) -> (u64, u64) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    rd.flatten()
        .filter_map(|e| e.metadata().ok())
        .fold((0, 0), |(c, b), m| (c + 1, b + m.len()))
}

pub fn fsck(ctx: &Context, out: &mut dyn Write) -> Result<ExitCode> {
    let store = ctx.store()?;
    let report = check::fsck(&store)?;
    let objects = crate::objects::fsck(&ctx.root)?;
    if ctx.json {
        output::json(out, &report)?;
    } else {
        for p in &objects.problems {
            writeln!(out, "{}: {}", p.subject, p.detail)?;
        }
        writeln!(
            out,
            "checked {} file objects ({}) and {} index entries",
            objects.objects,
            output::size(objects.bytes),
            objects.entries
        )?;
        for q in &report.quarantined {
            writeln!(out, "corrupt blob {q}: moved to quarantine/")?;
        }
        for p in &report.problems {
            writeln!(out, "{}: {}", p.subject, p.detail)?;
        }
        writeln!(
            out,
            "checked {} blobs ({}): {}",
            report.blobs_checked,
            output::size(report.bytes_checked),
            if report.is_sound() && objects.problems.is_empty() {
                "store is sound"
            } else {
                "PROBLEMS FOUND"
            }
        )?;
        if report.unreferenced > 0 {
            writeln!(
                out,
                "{} unreferenced blobs (berth gc removes them)",
                report.unreferenced
            )?;
        }
    }
    Ok(if report.is_sound() && objects.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
