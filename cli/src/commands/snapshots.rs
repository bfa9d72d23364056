//! `berth snapshots`: list and remove snapshots; and the snapshot half of gc.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;

use anyhow::Result;
use berth_cas::{image, Store};
use berth_fs::snapshot::{Kind, Snapshotter, SnapshotterKind};
use serde::Serialize;

use crate::cli::{SnapshotsArgs, SnapshotsCommand};
use crate::context::Context;
use crate::{output, unpack};

/// Snapshotters that exist under the store root.
pub fn existing(ctx: &Context) -> Result<Vec<Box<dyn Snapshotter>>> {
    let mut out = Vec::new();
    for kind in [SnapshotterKind::Overlay, SnapshotterKind::Native] {
        if ctx
            .root
            .join("snapshots")
            .join(unpack::kind_name(kind))
            .exists()
        {
            out.push(unpack::open(&ctx.root, kind)?);
        }
    }
    Ok(out)
}

fn kind_str(k: Kind) -> &'static str {
    match k {
        Kind::Active => "active",
        Kind::View => "view",
        Kind::Committed => "committed",
    }
}

#[derive(Serialize)]
struct Row {
    snapshotter: &'static str,
    key: String,
    parent: Option<String>,
    kind: &'static str,
}

pub fn run(ctx: &Context, a: SnapshotsArgs, out: &mut dyn Write) -> Result<()> {
    if let Some(SnapshotsCommand::Rm { keys }) = a.command {
        let snap = ctx.snapshotter()?;
        for k in keys {
            snap.remove(&k)?;
            writeln!(out, "removed {k}")?;
        }
        return Ok(());
    }
    let mut rows = Vec::new();
    for snap in existing(ctx)? {
        for info in snap.list()? {
            rows.push(Row {
                snapshotter: unpack::kind_name(snap.kind()),
                key: info.key,
                parent: info.parent,
                kind: kind_str(info.kind),
            });
        }
    }
    if ctx.json {
        return output::json(out, &rows);
    }
    let mut table = vec![vec![
        "KEY".into(),
        "PARENT".into(),
        "KIND".into(),
        "SNAPSHOTTER".into(),
    ]];
    for r in rows {
        table.push(vec![
            r.key,
            r.parent.unwrap_or_default(),
            r.kind.into(),
            r.snapshotter.into(),
        ]);
    }
    output::table(out, &table)
}

/// What the snapshot sweep removed.
#[derive(Debug, Default, Serialize)]
pub struct SnapshotGc {
    /// Snapshots removed.
    pub removed: usize,
    /// Orphaned directories removed.
    pub orphans: usize,
}

/// Removes snapshots no image, checkout or container needs (leaves first).
pub fn collect(ctx: &Context, store: &Store) -> Result<SnapshotGc> {
    let mut roots: BTreeSet<String> = BTreeSet::new();
    let host = berth_cas::Platform::host();
    for img in store.meta().images()? {
        let Ok(desc) = image::descriptor(&img.media_type, &img.digest, img.size) else {
            continue;
        };
        if let Ok(r) = image::resolve(store, &desc, &host, &img.name) {
            roots.extend(r.chain_ids());
        }
    }
    let mut report = SnapshotGc::default();
    report.orphans += berth_fs::snapshot::remove_stale_probes(&ctx.root.join("snapshots"))?.len();
    for snap in existing(ctx)? {
        let name = unpack::kind_name(snap.kind());
        let mut keep = roots.clone();
        for c in store.meta().checkouts()? {
            if c.snapshotter == name {
                keep.insert(c.snapshot);
            }
        }
        for c in store.meta().containers()? {
            if let (Some(kind), Some(key)) = (c.snapshotter, c.snapshot) {
                if kind == name {
                    keep.insert(key);
                }
            }
        }
        report.removed += sweep(snap.as_ref(), &keep)?;
        report.orphans += snap.cleanup()?.len();
    }
    Ok(report)
}

/// Removes every snapshot not in `keep` and not an ancestor of one that is kept.
fn sweep(snap: &dyn Snapshotter, keep: &BTreeSet<String>) -> Result<usize> {
    let infos = snap.list()?;
    let parent: HashMap<String, Option<String>> = infos
        .iter()
        .map(|i| (i.key.clone(), i.parent.clone()))
        .collect();
    let mut live = BTreeSet::new();
    for k in keep {
        let mut cur = Some(k.clone());
        while let Some(key) = cur {
            if !parent.contains_key(&key) || !live.insert(key.clone()) {
                break;
            }
            cur = parent.get(&key).cloned().flatten();
        }
    }
    let mut removed = 0;
    loop {
        let infos = snap.list()?;
        let parents: BTreeSet<String> = infos.iter().filter_map(|i| i.parent.clone()).collect();
        let leaves: Vec<String> = infos
            .into_iter()
            .filter(|i| !live.contains(&i.key) && !parents.contains(&i.key))
            .map(|i| i.key)
            .collect();
        if leaves.is_empty() {
            return Ok(removed);
        }
        for k in leaves {
            snap.remove(&k)?;
            removed += 1;
        }
    }
}
