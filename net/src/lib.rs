//! berth-net: network namespaces and interfaces over netlink.
//!
//! What it is for: the plumbing a container network needs — named, persistent
//! network namespaces ([`NetnsDir`], [`Netns`]), links (veth pairs, bridges,
//! up/down, MTU, MAC, rename, moves between namespaces, bridge ports),
//! IPv4/IPv6 addresses and routes — as typed, synchronous verbs on a
//! [`Handle`], one rtnetlink socket bound to one namespace.
//!
//! How namespaces are handled: `setns` only moves the calling thread, so every
//! namespace switch happens on a dedicated short-lived thread ([`Netns::run`],
//! [`in_netns`]). A [`Handle`] for another namespace opens its socket on such
//! a thread; the socket stays bound to that namespace, and the caller's
//! threads never change namespace.
//!
//! ```no_run
//! # fn main() -> berth_net::Result<()> {
//! use berth_net::{Cidr, Handle, NetnsDir, NsTarget};
//! let dir = NetnsDir::new(std::path::Path::new("/run/berth"));
//! let (a, b) = (dir.create("a")?, dir.create("b")?);
//! let mut ha = Handle::open(Some(&a))?;
//! ha.add_veth("va", "vb", Some(NsTarget::Netns(&b)))?;
//! ha.add_addr("va", &"10.0.0.1/24".parse::<Cidr>()?)?;
//! ha.set_up("va")?;
//! # Ok(()) }
//! ```
//!
//! What it must not depend on: nothing else of berth (no cas, fs, exec); only
//! the netlink crates, nix and libc. No IP allocation, DNS, firewalling or port
//! mapping here: those belong to higher layers. No shelling out to `ip`.

pub mod addr;
pub mod error;
pub mod link;
mod link_types;
pub mod netns;
pub mod route;
pub mod socket;

pub use addr::{Address, Cidr, Scope};
pub use error::{NetError, Result};
pub use link::{validate_ifname, Link, MacAddr, NsTarget, OperState, MAX_IFNAME};
pub use netns::{in_netns, Netns, NetnsDir, SYSTEM_NETNS_DIR};
pub use route::Route;
pub use socket::{Handle, HOST_LABEL};
