//! Routes in the main table: to a prefix or default, via a gateway and/or a device.

use std::fmt;
use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use serde::Serialize;

use crate::addr::Cidr;
use crate::error::{kernel, NetError, Result};
use crate::socket::Handle;

/// A route: `dest` (or default) via `gateway` and/or out of `dev`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    /// Destination network; `None` is the default route.
    pub dest: Option<Cidr>,
    /// Next hop.
    pub gateway: Option<IpAddr>,
    /// Output link.
    pub dev: Option<String>,
    /// Priority (lower wins); the kernel's default when `None`.
    pub metric: Option<u32>,
}

impl Route {
    /// The default route via `gateway` (IPv4 or IPv6 after the gateway).
    pub fn default_via(gateway: IpAddr) -> Route {
        Route {
            dest: None,
            gateway: Some(gateway),
            dev: None,
            metric: None,
        }
    }

    /// A route to `dest`; add [`Route::via`] and/or [`Route::dev`].
    /// Host bits of `dest` are cleared (`10.0.0.5/24` routes `10.0.0.0/24`).
    pub fn to(dest: Cidr) -> Route {
        Route {
            dest: Some(dest.network()),
            gateway: None,
            dev: None,
            metric: None,
        }
    }

    /// Sets the next hop.
    pub fn via(mut self, gateway: IpAddr) -> Route {
        self.gateway = Some(gateway);
        self
    }

    /// Sets the output link.
    pub fn dev(mut self, name: &str) -> Route {
        self.dev = Some(name.to_owned());
        self
    }

    /// Sets the metric.
    pub fn metric(mut self, metric: u32) -> Route {
        self.metric = Some(metric);
        self
    }

    /// True for IPv4 routes, checking that destination and gateway agree.
    fn is_ipv4(&self) -> Result<bool> {
        let bad = |reason| NetError::InvalidRoute {
            route: self.to_string(),
            reason,
        };
        match (self.dest, self.gateway) {
            (Some(d), Some(g)) if d.is_ipv4() != g.is_ipv4() => {
                Err(bad("destination and gateway are of different IP versions"))
            }
            (Some(d), _) => Ok(d.is_ipv4()),
            (None, Some(g)) => Ok(g.is_ipv4()),
            (None, None) => Err(bad("a default route needs a gateway")),
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.dest {
            Some(d) => write!(f, "{d}")?,
            None => f.write_str("default")?,
        }
        if let Some(g) = &self.gateway {
            write!(f, " via {g}")?;
        }
        if let Some(d) = &self.dev {
            write!(f, " dev {d}")?;
        }
        if let Some(m) = &self.metric {
            write!(f, " metric {m}")?;
        }
        Ok(())
    }
}

impl Handle {
    /// Adds `route` to the main table.
    pub fn add_route(&mut self, route: &Route) -> Result<()> {
        let mut msg = self.route_message(route)?;
        msg.header.protocol = RouteProtocol::Static;
        msg.header.kind = RouteType::Unicast;
        msg.header.scope = match route.gateway {
            None => RouteScope::Link,
            Some(_) => RouteScope::Universe,
        };
        let (netns, target) = (self.netns().to_owned(), route.to_string());
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            |e| kernel("add route", &target, &netns, e),
        )
        .map(drop)
    }

    /// Deletes the route matching `route` from the main table.
    pub fn del_route(&mut self, route: &Route) -> Result<()> {
        let mut msg = self.route_message(route)?;
        msg.header.scope = RouteScope::NoWhere; // match any scope, as `ip route del`
        let (netns, target) = (self.netns().to_owned(), route.to_string());
        self.request(RouteNetlinkMessage::DelRoute(msg), 0, |e| {
            kernel("delete route", &target, &netns, e)
        })
        .map(drop)
    }

    /// Unicast routes of the main table, IPv4 and IPv6.
    pub fn routes(&mut self) -> Result<Vec<Route>> {
        let links = self.links()?;
        let msgs = self.dump(
            RouteNetlinkMessage::GetRoute(RouteMessage::default()),
            "list routes",
        )?;
        let mut out = Vec::new();
        for msg in msgs {
            let RouteNetlinkMessage::NewRoute(msg) = msg else {
                continue;
            };
            if msg.header.kind != RouteType::Unicast
                || table_of(&msg) != u32::from(RouteHeader::RT_TABLE_MAIN)
            {
                continue;
            }
            let mut route = Route {
                dest: None,
                gateway: None,
                dev: None,
                metric: None,
            };
            for attr in &msg.attributes {
                match attr {
                    RouteAttribute::Destination(a) => {
                        route.dest = ip_of(a)
                            .and_then(|ip| Cidr::new(ip, msg.header.destination_prefix_length).ok())
                    }
                    RouteAttribute::Gateway(a) => route.gateway = ip_of(a),
                    RouteAttribute::Oif(i) => {
                        route.dev = links.iter().find(|l| l.index == *i).map(|l| l.name.clone())
                    }
                    RouteAttribute::Priority(p) => route.metric = Some(*p),
                    _ => {}
                }
            }
            out.push(route);
        }
        Ok(out)
    }

    fn route_message(&mut self, route: &Route) -> Result<RouteMessage> {
        let v4 = route.is_ipv4()?;
        let mut msg = RouteMessage::default();
        msg.header.address_family = if v4 {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        if let Some(dest) = route.dest.filter(|d| d.prefix() > 0) {
            msg.header.destination_prefix_length = dest.prefix();
            msg.attributes.push(RouteAttribute::Destination(route_addr(
                dest.network().addr(),
            )));
        }
        if let Some(gw) = route.gateway {
            msg.attributes.push(RouteAttribute::Gateway(route_addr(gw)));
        }
        if let Some(dev) = &route.dev {
            let index = self.index_of(dev)?;
            msg.attributes.push(RouteAttribute::Oif(index));
        }
        if let Some(metric) = route.metric {
            msg.attributes.push(RouteAttribute::Priority(metric));
        }
        Ok(msg)
    }
}

fn route_addr(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    }
}

fn ip_of(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

/// The table id: the RTA_TABLE attribute when present (ids over 255), else the header's.
fn table_of(msg: &RouteMessage) -> u32 {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(msg.header.table))
}
