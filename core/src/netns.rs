//! Network namespaces by name, where berth keeps them and where `ip netns` does. This
//! needs only the run root's path: `berth net` works without opening the store.

use berth_net::{Netns, NetnsDir};

use crate::error::Result;
use crate::layout::Layout;
use crate::root::Root;

impl Layout {
    /// berth's own namespace directory (`<run>/netns`).
    pub fn netns_dir(&self) -> NetnsDir {
        NetnsDir::new(self.netns_base())
    }

    /// A namespace by name: berth's own first, then /run/netns.
    pub fn find_netns(&self, name: &str) -> Result<Netns> {
        let own = self.netns_dir();
        if own.path(name).map(|p| p.exists()).unwrap_or(false) {
            return Ok(own.open(name)?);
        }
        let system = NetnsDir::system();
        if system.path(name).map(|p| p.exists()).unwrap_or(false) {
            return Ok(system.open(name)?);
        }
        Ok(own.open(name)?) // gives the "no such namespace" error
    }
}

impl Root {
    /// A network namespace by name (see [`Layout::find_netns`]).
    pub fn find_netns(&self, name: &str) -> Result<Netns> {
        self.layout().find_netns(name)
    }
}
