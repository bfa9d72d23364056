//! The event journal: what happened to images, checkouts, containers and snapshots, in
//! the order it happened, written by every berth process that shares the root.
//!
//! Events are rows of `meta.db` (`events`), numbered by a sequence that only grows;
//! readers follow the journal by asking for rows past the last one they saw. Where a
//! state change has an event, both are written in one transaction. The journal keeps the
//! newest [`KEEP_EVENTS`] rows.

use rusqlite::{params, Transaction};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::meta::{Labels, Meta};

/// How many events the journal keeps.
pub const KEEP_EVENTS: i64 = 10_000;

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the journal.
    pub seq: i64,
    /// Nanoseconds since the epoch.
    pub time: i64,
    /// The namespace of the thing it is about (`""` for shared content).
    pub namespace: String,
    /// What happened, containerd-style: `/images/create`, `/containers/exit`, ...
    pub topic: String,
    /// What it happened to: an image name, a container id, a checkout dir, a snapshot.
    pub subject: String,
    /// Details (`exit_code`, `digest`, ...).
    pub attrs: Labels,
}

/// Nanoseconds since the epoch, now.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Appends an event (in the caller's transaction).
pub fn record(
    tx: &Transaction<'_>,
    namespace: &str,
    topic: &str,
    subject: &str,
    attrs: &Labels,
) -> Result<()> {
    let attrs = serde_json::to_string(attrs).map_err(Error::json("event attributes"))?;
    tx.execute(
        "INSERT INTO events (time, namespace, topic, subject, attrs) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![now_ns(), namespace, topic, subject, attrs],
    )?;
    let seq = tx.last_insert_rowid();
    if seq % 256 == 0 {
        tx.execute("DELETE FROM events WHERE seq <= ?1", [seq - KEEP_EVENTS])?;
    }
    Ok(())
}

impl Meta {
    /// Events after `seq` (all namespaces, or one), oldest first, at most `limit`.
    pub fn events_after(
        &self,
        seq: i64,
        namespace: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Event>> {
        let mut st = self.conn().prepare_cached(
            "SELECT seq, time, namespace, topic, subject, attrs FROM events
             WHERE seq > ?1 AND (?2 IS NULL OR namespace = ?2 OR namespace = '')
             ORDER BY seq LIMIT ?3",
        )?;
        let rows = st.query_map(params![seq, namespace, limit as i64], |r| {
            let attrs: String = r.get(5)?;
            Ok(Event {
                seq: r.get(0)?,
                time: r.get(1)?,
                namespace: r.get(2)?,
                topic: r.get(3)?,
                subject: r.get(4)?,
                attrs: serde_json::from_str(&attrs).unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The sequence number of the first event at or after `time_ns` (to start from).
    pub fn event_seq_at(&self, time_ns: i64) -> Result<i64> {
        Ok(self.conn().query_row(
            "SELECT coalesce((SELECT min(seq) - 1 FROM events WHERE time >= ?1),
                             (SELECT coalesce(max(seq), 0) FROM events))",
            [time_ns],
            |r| r.get(0),
        )?)
    }

    /// The newest event's sequence number (0 for an empty journal).
    pub fn last_event_seq(&self) -> Result<i64> {
        Ok(self
            .conn()
            .query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| r.get(0))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_back_in_order_and_by_namespace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut m = Meta::open(&dir.path().join("meta.db")).expect("open");
        let attrs: Labels = [("exit_code".to_string(), "3".to_string())].into();
        m.write(|tx| {
            record(tx, "default", "/containers/create", "c1", &Labels::new())?;
            record(tx, "k8s.io", "/containers/create", "c2", &Labels::new())?;
            record(tx, "default", "/containers/exit", "c1", &attrs)
        })
        .expect("record");
        let all = m.events_after(0, None, 100).expect("all");
        assert_eq!(all.len(), 3);
        assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
        let mine = m.events_after(0, Some("default"), 100).expect("mine");
        assert_eq!(
            mine.iter().map(|e| e.topic.as_str()).collect::<Vec<_>>(),
            ["/containers/create", "/containers/exit"]
        );
        assert_eq!(mine[1].attrs["exit_code"], "3");
        let after = m
            .events_after(mine[0].seq, Some("default"), 100)
            .expect("after");
        assert_eq!(after.len(), 1);
        assert_eq!(
            m.event_seq_at(i64::MAX).expect("seq"),
            m.last_event_seq().expect("last")
        );
        assert_eq!(m.event_seq_at(0).expect("seq"), 0);
    }
}
