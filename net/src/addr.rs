//! IPv4 and IPv6 addresses on links, and the [`Cidr`] type they are written in.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use serde::Serialize;

use crate::error::{kernel, NetError, Result};
use crate::socket::Handle;

/// An address with its prefix length, `10.0.0.1/24` or `fd00::1/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// An address assigned to a link, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Address {
    /// The link's name.
    pub link: String,
    /// The link's index.
    pub index: u32,
    /// Address and prefix.
    pub cidr: Cidr,
    /// Where the address is valid.
    pub scope: Scope,
}

/// Scope of an address or route, as `ip` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Valid everywhere.
    Global,
    /// Valid within the site (IPv6 site-local).
    Site,
    /// Valid on this link only.
    Link,
    /// Valid on this host only.
    Host,
    /// Anything else the kernel reports.
    Other,
}

impl Cidr {
    /// An address with a prefix length that fits its family.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Cidr> {
        if prefix > max_prefix(addr) {
            return Err(NetError::InvalidCidr {
                input: format!("{addr}/{prefix}"),
                reason: "prefix longer than the address",
            });
        }
        Ok(Cidr { addr, prefix })
    }

    /// The address part.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// True for IPv4.
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// The network this address is in: host bits cleared (`10.0.0.5/24` -> `10.0.0.0/24`).
    pub fn network(&self) -> Cidr {
        let addr = match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::from((u32::from(a) & mask).to_be_bytes())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::from((u128::from(a) & mask).to_be_bytes())
            }
        };
        Cidr {
            addr,
            prefix: self.prefix,
        }
    }

    /// True when `ip` is inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.is_ipv4()
            && Cidr {
                addr: ip,
                prefix: self.prefix,
            }
            .network()
                == self.network()
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

impl FromStr for Cidr {
    type Err = NetError;

    /// Parses `ADDR/PREFIX`; the prefix is required, decimal digits only.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason| NetError::InvalidCidr {
            input: s.to_owned(),
            reason,
        };
        let (addr, prefix) = s.split_once('/').ok_or_else(|| bad("missing /PREFIX"))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| bad("not an IPv4 or IPv6 address"))?;
        if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("prefix is not a decimal number"));
        }
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| bad("prefix is not a decimal number"))?;
        if prefix > max_prefix(addr) {
            return Err(bad(if addr.is_ipv4() {
                "IPv4 prefix over 32"
            } else {
                "IPv6 prefix over 128"
            }));
        }
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl Handle {
    /// Adds `cidr` to link `link`. IPv6 addresses skip duplicate address
    /// detection, so they are usable at once (as containers want).
    pub fn add_addr(&mut self, link: &str, cidr: &Cidr) -> Result<()> {
        let msg = self.addr_message(link, cidr)?;
        let (netns, target) = (self.netns().to_owned(), format!("{cidr} on {link}"));
        self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            |e| kernel("add address", &target, &netns, e),
        )
        .map(drop)
    }

    /// Removes `cidr` from link `link`.
    pub fn del_addr(&mut self, link: &str, cidr: &Cidr) -> Result<()> {
        let msg = self.addr_message(link, cidr)?;
        let (netns, target) = (self.netns().to_owned(), format!("{cidr} on {link}"));
        self.request(RouteNetlinkMessage::DelAddress(msg), 0, |e| {
            kernel("delete address", &target, &netns, e)
        })
        .map(drop)
    }

    /// Addresses in the namespace, of every link or only of `link`.
    pub fn addrs(&mut self, link: Option<&str>) -> Result<Vec<Address>> {
        let only = link.map(|name| self.index_of(name)).transpose()?;
        let links = self.links()?;
        let msgs = self.dump(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            "list addresses",
        )?;
        let mut out = Vec::new();
        for msg in msgs {
            let RouteNetlinkMessage::NewAddress(msg) = msg else {
                continue;
            };
            if only.is_some_and(|i| i != msg.header.index) {
                continue;
            }
            let Some(addr) = address_of(&msg) else {
                continue;
            };
            let Ok(cidr) = Cidr::new(addr, msg.header.prefix_len) else {
                continue;
            };
            let name = links.iter().find(|l| l.index == msg.header.index);
            out.push(Address {
                link: name.map(|l| l.name.clone()).unwrap_or_default(),
                index: msg.header.index,
                cidr,
                scope: Scope::from(msg.header.scope),
            });
        }
        Ok(out)
    }

    fn addr_message(&mut self, link: &str, cidr: &Cidr) -> Result<AddressMessage> {
        let index = self.index_of(link)?;
        let mut msg = AddressMessage::default();
        msg.header.index = index;
        msg.header.prefix_len = cidr.prefix();
        msg.header.scope = AddressScope::Universe;
        match cidr.addr() {
            IpAddr::V4(_) => {
                msg.header.family = AddressFamily::Inet;
                msg.attributes.push(AddressAttribute::Local(cidr.addr()));
                msg.attributes.push(AddressAttribute::Address(cidr.addr()));
            }
            IpAddr::V6(_) => {
                msg.header.family = AddressFamily::Inet6;
                msg.header.flags = AddressHeaderFlags::Nodad;
                msg.attributes.push(AddressAttribute::Address(cidr.addr()));
                msg.attributes
                    .push(AddressAttribute::Flags(AddressFlags::Nodad));
            }
        }
        Ok(msg)
    }
}

/// The link's own address: IFA_LOCAL when present (it differs from
/// IFA_ADDRESS only on point-to-point links), else IFA_ADDRESS.
fn address_of(msg: &AddressMessage) -> Option<IpAddr> {
    let find = |local: bool| {
        msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(ip) if local => Some(*ip),
            AddressAttribute::Address(ip) if !local => Some(*ip),
            _ => None,
        })
    };
    find(true).or_else(|| find(false))
}

impl From<AddressScope> for Scope {
    fn from(scope: AddressScope) -> Self {
        match scope {
            AddressScope::Universe => Scope::Global,
            AddressScope::Site => Scope::Site,
            AddressScope::Link => Scope::Link,
            AddressScope::Host => Scope::Host,
            _ => Scope::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let c: Cidr = "10.1.2.3/24".parse().expect("valid");
        assert_eq!(c.to_string(), "10.1.2.3/24");
        assert_eq!(c.network().to_string(), "10.1.2.0/24");
        assert!(c.contains("10.1.2.200".parse().expect("ip")));
        assert!(!c.contains("10.1.3.1".parse().expect("ip")));
        let v6: Cidr = "fd00::1/64".parse().expect("valid");
        assert_eq!(v6.network().to_string(), "fd00::/64");
        assert_eq!(
            "0.0.0.0/0"
                .parse::<Cidr>()
                .expect("valid")
                .network()
                .prefix(),
            0
        );
        for bad in [
            "10.0.0.1",
            "10.0.0.1/33",
            "fd00::1/129",
            "10.0.0.1/",
            "10.0.0.1/+8",
            "x/8",
            "10.0.0.1/ 8",
            "10.0.0.1/0008",
        ] {
            assert!(
                matches!(bad.parse::<Cidr>(), Err(NetError::InvalidCidr { .. })),
                "{bad} should be rejected"
            );
        }
    }
}
