//! The link values the verbs return: [`Link`], [`OperState`], [`MacAddr`],
//! and their decoding from rtnetlink messages.

use std::fmt;
use std::str::FromStr;

use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkInfo, LinkMessage, State};
use serde::Serialize;

use crate::error::{NetError, Result};

/// A link as listed: what `ip link` shows, in types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    /// Interface name.
    pub name: String,
    /// Interface index in its namespace.
    pub index: u32,
    /// Kind ("veth", "bridge"...); `None` for plain devices such as `lo`.
    pub kind: Option<String>,
    /// MTU in bytes.
    pub mtu: Option<u32>,
    /// Hardware address, for Ethernet-like links.
    pub mac: Option<MacAddr>,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// Operational state as the kernel reports it.
    pub state: OperState,
    /// The bridge (or other controller) this link is a port of.
    pub master: Option<String>,
}

/// Operational state of a link (RFC 2863, as in `ip link`'s `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OperState {
    /// The driver does not say (e.g. loopback).
    Unknown,
    /// Down.
    Down,
    /// Up, but a lower link is down (e.g. veth whose peer is down).
    LowerLayerDown,
    /// Up and passing packets.
    Up,
    /// Any other state (not present, testing, dormant).
    Other,
}

/// A 48-bit Ethernet address, written `02:00:00:00:00:01`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

pub(crate) fn link_name(msg: &LinkMessage) -> Option<String> {
    msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })
}

pub(crate) fn to_link(msg: &LinkMessage, name_of: impl Fn(u32) -> Option<String>) -> Link {
    let mut link = Link {
        name: link_name(msg).unwrap_or_default(),
        index: msg.header.index,
        kind: None,
        mtu: None,
        mac: None,
        up: msg.header.flags.contains(LinkFlags::Up),
        state: OperState::Unknown,
        master: None,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::Mtu(mtu) => link.mtu = Some(*mtu),
            LinkAttribute::Address(bytes) => {
                link.mac = <[u8; 6]>::try_from(bytes.as_slice()).ok().map(MacAddr)
            }
            LinkAttribute::Controller(index) if *index != 0 => link.master = name_of(*index),
            LinkAttribute::OperState(state) => link.state = OperState::from(*state),
            LinkAttribute::LinkInfo(infos) => {
                link.kind = infos.iter().find_map(|i| match i {
                    LinkInfo::Kind(kind) => Some(kind.to_string()),
                    _ => None,
                })
            }
            _ => {}
        }
    }
    link
}

impl From<State> for OperState {
    fn from(state: State) -> Self {
        match state {
            State::Unknown => OperState::Unknown,
            State::Down => OperState::Down,
            State::LowerLayerDown => OperState::LowerLayerDown,
            State::Up => OperState::Up,
            _ => OperState::Other,
        }
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl FromStr for MacAddr {
    type Err = NetError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || NetError::InvalidMac {
            input: s.to_owned(),
        };
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let part = parts.next().filter(|p| p.len() == 2).ok_or_else(bad)?;
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        match parts.next() {
            Some(_) => Err(bad()),
            None => Ok(MacAddr(out)),
        }
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}
