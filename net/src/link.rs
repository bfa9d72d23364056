//! Links: veth pairs, bridges, up/down, MTU, MAC, rename, namespace moves,
//! bridge ports, delete, list.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;

use crate::error::{kernel, NetError, Result};
use crate::link_types::{link_name, to_link};
pub use crate::link_types::{Link, MacAddr, OperState};
use crate::netns::Netns;
use crate::socket::Handle;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;
use nix::errno::Errno;

/// Longest interface name the kernel takes (IFNAMSIZ - 1).
pub const MAX_IFNAME: usize = 15;

/// A network namespace to put a link in.
#[derive(Debug, Clone, Copy)]
pub enum NsTarget<'a> {
    /// An open namespace.
    Netns(&'a Netns),
    /// Any fd of a network namespace.
    Fd(BorrowedFd<'a>),
    /// A pinned namespace file or `/proc/PID/ns/net`.
    Path(&'a Path),
    /// The namespace process `pid` is in.
    Pid(u32),
}

/// Checks an interface name the way the kernel's `dev_valid_name` does.
pub fn validate_ifname(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > MAX_IFNAME {
        "longer than 15 bytes"
    } else if name == "." || name == ".." {
        "a dot name"
    } else if name.contains(['/', ':', '\0']) {
        "contains '/', ':' or NUL"
    } else if name.chars().any(char::is_whitespace) {
        "contains whitespace"
    } else {
        return Ok(());
    };
    Err(NetError::InvalidLinkName {
        name: name.to_owned(),
        reason,
    })
}

impl Handle {
    /// Creates a veth pair `name` <-> `peer`; the peer is created directly in
    /// `peer_ns` when given. The kernel makes both ends or neither.
    pub fn add_veth(
        &mut self,
        name: &str,
        peer: &str,
        peer_ns: Option<NsTarget<'_>>,
    ) -> Result<()> {
        validate_ifname(name)?;
        validate_ifname(peer)?;
        let target = peer_ns.map(ResolvedNs::new).transpose()?;
        let mut peer_msg = LinkMessage::default();
        peer_msg
            .attributes
            .push(LinkAttribute::IfName(peer.to_owned()));
        if let Some(t) = &target {
            peer_msg.attributes.push(t.attr.clone());
        }
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        let netns = self.netns().to_owned();
        let result = self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            |e| link_err("add veth", name, &netns, e),
        );
        match result {
            Err(NetError::LinkExists { .. }) if self.index_of(name).is_err() => {
                Err(NetError::LinkExists {
                    name: peer.to_owned(),
                    netns: target.map_or(netns, |t| t.label),
                })
            }
            Err(NetError::Kernel {
                errno: Errno::ESRCH,
                ..
            }) => match peer_ns {
                Some(NsTarget::Pid(pid)) => Err(NetError::NoSuchProcess { pid }),
                _ => result.map(drop),
            },
            other => other.map(drop),
        }
    }

    /// Creates a bridge `name` (down, no ports).
    pub fn add_bridge(&mut self, name: &str) -> Result<()> {
        validate_ifname(name)?;
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        let netns = self.netns().to_owned();
        self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            |e| link_err("add bridge", name, &netns, e),
        )
        .map(drop)
    }

    /// Sets link `name` administratively up.
    pub fn set_up(&mut self, name: &str) -> Result<()> {
        self.set_flags(name, "set up", LinkFlags::Up)
    }

    /// Sets link `name` administratively down.
    pub fn set_down(&mut self, name: &str) -> Result<()> {
        self.set_flags(name, "set down", LinkFlags::empty())
    }

    /// Brings up `lo`: a new namespace's loopback starts down.
    pub fn loopback_up(&mut self) -> Result<()> {
        self.set_up("lo")
    }

    /// Sets the MTU of link `name`.
    pub fn set_mtu(&mut self, name: &str, mtu: u32) -> Result<()> {
        self.set_link(name, "set mtu", vec![LinkAttribute::Mtu(mtu)])
    }

    /// Sets the hardware address of link `name`.
    pub fn set_mac(&mut self, name: &str, mac: MacAddr) -> Result<()> {
        self.set_link(
            name,
            "set mac",
            vec![LinkAttribute::Address(mac.0.to_vec())],
        )
    }

    /// Renames link `name` to `new_name` (the kernel wants it down for that).
    pub fn rename(&mut self, name: &str, new_name: &str) -> Result<()> {
        validate_ifname(new_name)?;
        let netns = self.netns().to_owned();
        let index = self.index_of(name)?;
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes
            .push(LinkAttribute::IfName(new_name.to_owned()));
        self.request(RouteNetlinkMessage::SetLink(msg), 0, |e| match e {
            Errno::EEXIST => link_err("rename", new_name, &netns, e),
            _ => link_err("rename", name, &netns, e),
        })
        .map(drop)
    }

    /// Moves link `name` into another namespace (it arrives down, without addresses).
    pub fn move_to_netns(&mut self, name: &str, target: NsTarget<'_>) -> Result<()> {
        let resolved = ResolvedNs::new(target)?;
        let result = self.set_link(name, "move", vec![resolved.attr.clone()]);
        match (result, target) {
            (
                Err(NetError::Kernel {
                    errno: Errno::ESRCH,
                    ..
                }),
                NsTarget::Pid(pid),
            ) => Err(NetError::NoSuchProcess { pid }),
            (Err(NetError::LinkExists { .. }), _) => Err(NetError::LinkExists {
                name: name.to_owned(),
                netns: resolved.label,
            }),
            (other, _) => other,
        }
    }

    /// Makes link `name` a port of bridge `bridge`.
    pub fn set_master(&mut self, name: &str, bridge: &str) -> Result<()> {
        let master = self.index_of(bridge)?;
        self.set_link(name, "attach", vec![LinkAttribute::Controller(master)])
    }

    /// Detaches link `name` from its bridge.
    pub fn clear_master(&mut self, name: &str) -> Result<()> {
        self.set_link(name, "detach", vec![LinkAttribute::Controller(0)])
    }

    /// Deletes link `name` (a veth's peer goes with it).
    pub fn delete_link(&mut self, name: &str) -> Result<()> {
        let index = self.index_of(name)?;
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        let netns = self.netns().to_owned();
        self.request(RouteNetlinkMessage::DelLink(msg), 0, |e| {
            link_err("delete", name, &netns, e)
        })
        .map(drop)
    }

    /// Every link in the namespace, by index.
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let msgs = self.dump(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            "list links",
        )?;
        let raw: Vec<LinkMessage> = msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })
            .collect();
        let name_of = |index: u32| {
            raw.iter()
                .find(|l| l.header.index == index)
                .and_then(link_name)
        };
        let mut links: Vec<Link> = raw.iter().map(|m| to_link(m, name_of)).collect();
        links.sort_by_key(|l| l.index);
        Ok(links)
    }

    /// The link called `name`.
    pub fn link(&mut self, name: &str) -> Result<Link> {
        let msg = self.get_link(name)?;
        let master = msg.attributes.iter().find_map(|a| match a {
            LinkAttribute::Controller(i) if *i != 0 => Some(*i),
            _ => None,
        });
        let master_name = match master {
            Some(index) => self
                .links()?
                .into_iter()
                .find(|l| l.index == index)
                .map(|l| l.name),
            None => None,
        };
        Ok(to_link(&msg, |_| master_name.clone()))
    }

    /// The index of link `name`, or [`NetError::LinkNotFound`].
    pub fn index_of(&mut self, name: &str) -> Result<u32> {
        Ok(self.get_link(name)?.header.index)
    }

    fn get_link(&mut self, name: &str) -> Result<LinkMessage> {
        validate_ifname(name)?;
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        let netns = self.netns().to_owned();
        let reply = self.request(RouteNetlinkMessage::GetLink(msg), 0, |e| {
            link_err("get", name, &netns, e)
        })?;
        reply
            .into_iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })
            .ok_or_else(|| NetError::LinkNotFound {
                name: name.to_owned(),
                netns,
            })
    }

    fn set_flags(&mut self, name: &str, op: &'static str, flags: LinkFlags) -> Result<()> {
        let index = self.index_of(name)?;
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = flags;
        msg.header.change_mask = LinkFlags::Up;
        let netns = self.netns().to_owned();
        self.request(RouteNetlinkMessage::SetLink(msg), 0, |e| {
            link_err(op, name, &netns, e)
        })
        .map(drop)
    }

    fn set_link(&mut self, name: &str, op: &'static str, attrs: Vec<LinkAttribute>) -> Result<()> {
        let index = self.index_of(name)?;
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes = attrs;
        let netns = self.netns().to_owned();
        self.request(RouteNetlinkMessage::SetLink(msg), 0, |e| {
            link_err(op, name, &netns, e)
        })
        .map(drop)
    }
}

/// A namespace target turned into the attribute the kernel wants, keeping
/// any namespace it had to open alive until the request is sent.
struct ResolvedNs {
    attr: LinkAttribute,
    label: String,
    _keep: Option<Netns>,
}

impl ResolvedNs {
    fn new(target: NsTarget<'_>) -> Result<ResolvedNs> {
        Ok(match target {
            NsTarget::Netns(ns) => ResolvedNs {
                attr: LinkAttribute::NetNsFd(ns.as_fd().as_raw_fd()),
                label: ns.name().to_owned(),
                _keep: None,
            },
            NsTarget::Fd(fd) => ResolvedNs {
                attr: LinkAttribute::NetNsFd(fd.as_raw_fd()),
                label: format!("netns fd {}", fd.as_raw_fd()),
                _keep: None,
            },
            NsTarget::Path(path) => {
                let ns = Netns::open_path(path)?;
                ResolvedNs {
                    attr: LinkAttribute::NetNsFd(ns.as_fd().as_raw_fd()),
                    label: ns.name().to_owned(),
                    _keep: Some(ns),
                }
            }
            NsTarget::Pid(pid) => ResolvedNs {
                attr: LinkAttribute::NetNsPid(pid),
                label: format!("netns of pid {pid}"),
                _keep: None,
            },
        })
    }
}

/// Link errnos with a typed meaning: ENODEV is "no such link", EEXIST "taken".
fn link_err(op: &'static str, name: &str, netns: &str, errno: Errno) -> NetError {
    match errno {
        Errno::ENODEV => NetError::LinkNotFound {
            name: name.to_owned(),
            netns: netns.to_owned(),
        },
        Errno::EEXIST => NetError::LinkExists {
            name: name.to_owned(),
            netns: netns.to_owned(),
        },
        _ => kernel(op, name, netns, errno),
    }
}
