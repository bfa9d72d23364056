//! Following the event journal (see `berth_cas::events`): what every process sharing
//! the root recorded, in order, as it happens.

use std::time::Duration;

pub use berth_cas::events::Event;

use crate::error::Result;
use crate::root::Root;

/// How often a follower looks for new events.
const POLL: Duration = Duration::from_millis(100);

/// Which events to follow.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only this namespace's (and shared content's); None: every namespace.
    pub namespace: Option<String>,
    /// Start with events at or after this time (ns since the epoch); None: only new ones.
    pub since_ns: Option<i64>,
    /// Stop after the events recorded so far instead of following.
    pub no_follow: bool,
}

impl Root {
    /// Calls `each` for every event the filter selects, oldest first, following the
    /// journal until `each` returns false (or, with `no_follow`, the journal's end).
    pub fn follow_events(
        &self,
        filter: &EventFilter,
        mut each: impl FnMut(&Event) -> Result<bool>,
    ) -> Result<()> {
        let mut seq = {
            let meta = self.store().meta();
            match filter.since_ns {
                Some(t) => meta.event_seq_at(t)?,
                None => meta.last_event_seq()?,
            }
        };
        if filter.no_follow && filter.since_ns.is_none() {
            seq = 0;
        }
        loop {
            let batch = self
                .store()
                .meta()
                .events_after(seq, filter.namespace.as_deref(), 512)?;
            for e in &batch {
                seq = e.seq;
                if !each(e)? {
                    return Ok(());
                }
            }
            if batch.is_empty() {
                if filter.no_follow {
                    return Ok(());
                }
                std::thread::sleep(POLL);
            }
        }
    }
}
