//! The registry client: pull and push over the OCI distribution API (and Docker
//! Registry v2 servers), with bearer/basic auth, docker-config credentials, a hosts
//! file for mirrors and TLS, bounded retries and resumable, verified downloads.
//!
//! ```no_run
//! # use berth_cas::{registry::*, Platform, Reference, Store};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Store::open("/var/lib/berth".as_ref())?;
//! let r = Reference::parse("127.0.0.1:5000/tools:v1")?;
//! let client = Client::new(r.registry(), &ClientOptions::default())?;
//! let lease = store.lease(Default::default())?; // keeps the blobs until they are named
//! let opts = PullOptions {
//!     platform: Platform::host(),
//!     all_platforms: false,
//!     max_concurrent: 4,
//!     lease: Some(lease.id().to_string()),
//! };
//! let plan = client.resolve(&store, &r, &opts)?;
//! client.fetch_blobs(&store, &plan, opts.max_concurrent, &Quiet)?;
//! name_image(&store, "default", &r.to_string(), &plan.root)?;
//! store.release(lease)?;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod client;
pub mod config;
pub mod credentials;
pub mod error;
pub mod pull;
pub mod push;

pub use client::{Client, ClientOptions};
pub use config::{config_dir, HostsConfig};
pub use credentials::{Credentials, DockerConfig};
pub use error::RegistryError;
pub use pull::{name_image, Observer, Plan, PullOptions, Quiet};
pub use push::PushOptions;

/// Runs `work` on every item, up to `max_concurrent` at once; the first failure stops
/// the items not yet started and is returned.
pub(crate) fn for_each_concurrent<T: Sync>(
    items: &[T],
    max_concurrent: usize,
    work: impl Fn(&T) -> Result<(), RegistryError> + Sync,
) -> Result<(), RegistryError> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let first_error = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..max_concurrent.clamp(1, items.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if stop.load(Ordering::Relaxed) || i >= items.len() {
                    break;
                }
                if let Err(e) = work(&items[i]) {
                    stop.store(true, Ordering::Relaxed);
                    first_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(e);
                }
            });
        }
    });
    match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
