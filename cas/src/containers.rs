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
    /// The namespace it belongs to (its name is unique there).
    pub namespace: String,
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

const COLUMNS: &str =
    "id, namespace, name, image, manifest, snapshotter, snapshot, checkout, runtime, \
                       command, auto_remove, stop_signal, created, finished, exit_code, network";

impl Meta {
    /// The containers of one namespace, oldest first.
    pub fn containers(&self, namespace: &str) -> Result<Vec<ContainerRecord>> {
        let mut st = self.conn().prepare(&format!(
            "SELECT {COLUMNS} FROM containers WHERE namespace = ?1 ORDER BY created, id"
        ))?;
        let rows = st.query_map([namespace], container_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The containers of every namespace (gc's roots).
    pub fn all_containers(&self) -> Result<Vec<ContainerRecord>> {
        let mut st = self.conn().prepare(&format!(
            "SELECT {COLUMNS} FROM containers ORDER BY created, id"
        ))?;
        let rows = st.query_map([], container_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// One container of a namespace by full id.
    pub fn container(&self, namespace: &str, id: &str) -> Result<Option<ContainerRecord>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM containers WHERE namespace = ?1 AND id = ?2"),
                [namespace, id],
                container_row,
            )
            .optional()?)
    }

    /// One container of a namespace by name.
    pub fn container_named(&self, namespace: &str, name: &str) -> Result<Option<ContainerRecord>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM containers WHERE namespace = ?1 AND name = ?2"),
                [namespace, name],
                container_row,
            )
            .optional()?)
    }
}

/// Records a new container (fails if the id or name is taken).
pub fn insert_container(tx: &Transaction<'_>, c: &ContainerRecord) -> Result<()> {
    let command = serde_json::to_string(&c.command).expect("strings serialize");
    crate::meta::ensure_namespace(tx, &c.namespace)?;
    tx.execute(
        &format!("INSERT INTO containers ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"),
        params![
            c.id, c.namespace, c.name, c.image, c.manifest, c.snapshotter, c.snapshot, c.checkout, c.runtime,
            command, c.auto_remove, c.stop_signal, c.created, c.finished, c.exit_code, c.network
        ],
    )?;
    let attrs: crate::meta::Labels = [("image".to_string(), c.image.clone())].into();
    crate::events::record(tx, &c.namespace, "/containers/create", &c.id, &attrs)?;
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
    let namespace: Option<String> = tx
        .query_row(
            "SELECT namespace FROM containers WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .optional()?;
    let Some(namespace) = namespace else {
        return Ok(false);
    };
    tx.execute("DELETE FROM containers WHERE id = ?1", [id])?;
    crate::events::record(
        tx,
        &namespace,
        "/containers/delete",
        id,
        &crate::meta::Labels::new(),
    )?;
    Ok(true)
}

fn container_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ContainerRecord> {
    let command: String = r.get(9)?;
    Ok(ContainerRecord {
        id: r.get(0)?,
        namespace: r.get(1)?,
        name: r.get(2)?,
        image: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
        manifest: r.get(4)?,
        snapshotter: r.get(5)?,
        snapshot: r.get(6)?,
        checkout: r.get(7)?,
        runtime: r.get(8)?,
        command: serde_json::from_str(&command).unwrap_or_default(),
        auto_remove: r.get(10)?,
        stop_signal: r.get(11)?,
        created: r.get(12)?,
        finished: r.get(13)?,
        exit_code: r.get(14)?,
        network: r.get(15)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, name: Option<&str>) -> ContainerRecord {
        ContainerRecord {
            id: id.into(),
            namespace: "default".into(),
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
        assert_eq!(m.container("default", "aa").expect("get"), Some(a.clone()));
        assert_eq!(
            m.container_named("default", "web").expect("named"),
            Some(a.clone())
        );
        assert!(m.container("k8s.io", "aa").expect("get").is_none());
        let mut other = record("cc", Some("web"));
        other.namespace = "k8s.io".into();
        m.write(|tx| insert_container(tx, &other))
            .expect("same name, other namespace");
        m.write(|tx| set_container_exit(tx, "aa", Some(3), 9))
            .expect("exit");
        let got = m.container("default", "aa").expect("get").expect("present");
        assert_eq!((got.exit_code, got.finished), (Some(3), Some(9)));
        assert_eq!(m.containers("default").expect("list").len(), 1);
        assert_eq!(m.all_containers().expect("all").len(), 2);
        assert!(m.write(|tx| delete_container(tx, "aa")).expect("delete"));
        assert!(m.containers("default").expect("list").is_empty());
    }
}
