//! Fault injection for crash-safety tests: `BERTH_FAULT=<point>` makes the process die
//! with SIGKILL at that point, exactly as a power cut or `kill -9` would. A comma-
//! separated list names several points; `<point>@N` dies at the Nth time it is reached.

use std::sync::atomic::{AtomicU32, Ordering};

/// Dies here if `BERTH_FAULT` names this point.
pub fn point(name: &str) {
    let Some(spec) = std::env::var_os("BERTH_FAULT") else {
        return;
    };
    static HITS: AtomicU32 = AtomicU32::new(0);
    for want in spec.to_string_lossy().split(',') {
        let (point, nth) = match want.split_once('@') {
            Some((p, n)) => (p, n.parse::<u32>().unwrap_or(1)),
            None => (want, 1),
        };
        if point == name && HITS.fetch_add(1, Ordering::Relaxed) + 1 >= nth {
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
    }
}
