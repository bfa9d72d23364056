//! Container records: what a container was made from and how it ended.
//!
//! The row is written when the container is created and keeps its snapshot alive for
//! snapshot gc. Live state (running, paused, pids) is not kept here: the supervisor owns
//! it in its state dir; only the final exit code and times are mirrored, so `ps -a` can
//! still answer after the run state is gone (e.g. after a reboot cleared /run).

use rusqlite::{params, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::meta::Meta;

/// One container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// 64 lowercase hex digits.
    pub id: String,
    /// Optional unique name.
    pub name: Option<String>,
    /// The image name it runs (or the checkout's image for a checkout container).
    pub image: String,
    /// Digest of the platform manifest its rootfs and config come from ("" for scratch).
    pub manifest: String,
    /// Snapshotter holding its own snapshot (image containers).
    pub snapshotter: Option<String>,
    /// Its own snapshot key (image containers), removed with it.
    pub snapshot: Option<String>,
    /// The checkout directory it runs in (checkout containers); never removed with it.
    pub checkout: Option<String>,
    /// OCI runtime binary (`runc`, `crun`, a path).
    pub runtime: String,
    /// The process args.
    pub command: Vec<String>,
    /// Remove the container once it exits (`--rm`).
    pub auto_remove: bool,
    /// Signal number `stop` sends first.
    pub stop_signal: i32,
    /// Seconds since the epoch.
    pub created: i64,
    /// When it exited, if it did (seconds since the epoch).
    pub finished: Option<i64>,
    /// Its exit code, if it exited.
    pub exit_code: Option<i32>,
    /// Its network: `none` (own namespace, loopback only), `host`, `ns:NAME`, `container:ID`.
    pub network: String,
}

const COLUMNS: &str = "id, name, image, manifest, snapshotter, snapshot, checkout, runtime, \
                       command, auto_remove, stop_signal, created, finished, exit_code, network";

impl Meta {
    /// Every container, oldest first.
    pub fn containers(&self) -> Result<Vec<ContainerRecord>> {
        let mut st = self.conn().prepare(&format!(
            "SELECT {COLUMNS} FROM containers ORDER BY created, id"
        ))?;
        let rows = st.query_map([], container_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// One container by full id.
    pub fn container(&self, id: &str) -> Result<Option<ContainerRecord>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM containers WHERE id = ?1"),
                [id],
                container_row,
            )
            .optional()?)
    }

    /// One container by name.
    pub fn container_named(&self, name: &str) -> Result<Option<ContainerRecord>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM containers WHERE name = ?1"),
                [name],
                container_row,
            )
            .optional()?)
    }
}

/// Records a new container (fails if the id or name is taken).
pub fn insert_container(tx: &Transaction<'_>, c: &ContainerRecord) -> Result<()> {
    let command = serde_json::to_string(&c.command).expect("strings serialize");
    tx.execute(
        &format!("INSERT INTO containers ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"),
        params![
            c.id, c.name, c.image, c.manifest, c.snapshotter, c.snapshot, c.checkout, c.runtime,
            command, c.auto_remove, c.stop_signal, c.created, c.finished, c.exit_code, c.network
        ],
    )?;
    Ok(())
}

/// Records how a container ended.
pub fn set_container_exit(
    tx: &Transaction<'_>,
    id: &str,
    exit_code: Option<i32>,
    finished: i64,
) -> Result<()> {
    tx.execute(
        "UPDATE containers SET exit_code = ?2, finished = ?3 WHERE id = ?1",
        params![id, exit_code, finished],
    )?;
    Ok(())
}

/// Forgets a container; false when there was none.
pub fn delete_container(tx: &Transaction<'_>, id: &str) -> Result<bool> {
    Ok(tx.execute("DELETE FROM containers WHERE id = ?1", [id])? > 0)
}

fn container_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ContainerRecord> {
    let command: String = r.get(8)?;
    Ok(ContainerRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        image: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
        manifest: r.get(3)?,
        snapshotter: r.get(4)?,
        snapshot: r.get(5)?,
        checkout: r.get(6)?,
        runtime: r.get(7)?,
        command: serde_json::from_str(&command).unwrap_or_default(),
        auto_remove: r.get(9)?,
        stop_signal: r.get(10)?,
        created: r.get(11)?,
        finished: r.get(12)?,
        exit_code: r.get(13)?,
        network: r.get(14)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, name: Option<&str>) -> ContainerRecord {
        ContainerRecord {
            id: id.into(),
            name: name.map(str::to_string),
            image: "docker.io/library/busybox:latest".into(),
            manifest: "sha256:m".into(),
            snapshotter: Some("overlay".into()),
            snapshot: Some(format!("container-{id}")),
            checkout: None,
            runtime: "runc".into(),
            command: vec!["sh".into(), "-c".into(), "exit 3".into()],
            auto_remove: false,
            stop_signal: 15,
            created: 1,
            finished: None,
            exit_code: None,
            network: "none".into(),
        }
    }

    #[test]
    fn containers_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut m = Meta::open(&dir.path().join("meta.db")).expect("open");
        let a = record("aa", Some("web"));
        m.write(|tx| insert_container(tx, &a)).expect("insert");
        assert!(
            m.write(|tx| insert_container(tx, &record("bb", Some("web"))))
                .is_err(),
            "names are unique"
        );
        assert_eq!(m.container("aa").expect("get"), Some(a.clone()));
        assert_eq!(m.container_named("web").expect("named"), Some(a.clone()));
        m.write(|tx| set_container_exit(tx, "aa", Some(3), 9))
            .expect("exit");
        let got = m.container("aa").expect("get").expect("present");
        assert_eq!((got.exit_code, got.finished), (Some(3), Some(9)));
        assert_eq!(m.containers().expect("list").len(), 1);
        assert!(m.write(|tx| delete_container(tx, "aa")).expect("delete"));
        assert!(m.containers().expect("list").is_empty());
    }
}
