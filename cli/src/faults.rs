//! Fault injection for crash-safety tests: `BERTH_FAULT=<point>` makes the process
//! die with SIGKILL at that point, exactly as a power cut or `kill -9` would.

/// Dies here if `BERTH_FAULT` names this point.
pub fn point(name: &str) {
    if std::env::var_os("BERTH_FAULT").is_some_and(|v| v == name) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}
