//! Real traffic: a veth pair between two namespaces, a bridge joining three,
//! IPv6 addresses and routes, default routes via a gateway.

use std::net::IpAddr;

use berth_net::{Cidr, Handle, NsTarget, OperState, Route};

use crate::common::{tcp_roundtrip, Lab};

fn cidr(s: &str) -> Cidr {
    s.parse().expect("test CIDR")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test IP")
}

#[test]
fn veth_pair_between_namespaces_carries_tcp_both_ways() {
    let Some(mut lab) = Lab::new() else { return };
    let a = lab.ns("a");
    let b = lab.ns("b");
    let (va, vb) = (lab.name("va"), lab.name("vb"));
    let mut ha = Handle::open(Some(&a)).expect("handle a");
    let mut hb = Handle::open(Some(&b)).expect("handle b");
    ha.add_veth(&va, &vb, Some(NsTarget::Netns(&b)))
        .expect("veth a<->b");
    ha.add_addr(&va, &cidr("10.77.0.1/24")).expect("addr a");
    hb.add_addr(&vb, &cidr("10.77.0.2/24")).expect("addr b");
    ha.set_up(&va).expect("up a");
    hb.set_up(&vb).expect("up b");

    let link = ha.link(&va).expect("get va");
    assert_eq!(link.kind.as_deref(), Some("veth"));
    assert!(link.up);
    assert!(hb.index_of(&vb).is_ok(), "peer created directly in b");
    assert!(ha.index_of(&vb).is_err(), "peer not in a");

    tcp_roundtrip(&a, ip("10.77.0.1"), &b, ip("10.77.0.2"));
    tcp_roundtrip(&b, ip("10.77.0.2"), &a, ip("10.77.0.1"));
    assert_eq!(ha.link(&va).expect("va").state, OperState::Up);
    drop((ha, hb, a, b));
    lab.finish();
}

#[test]
fn bridge_joins_three_namespaces() {
    let Some(mut lab) = Lab::new() else { return };
    let hub = lab.ns("hub");
    let mut hh = Handle::open(Some(&hub)).expect("hub handle");
    let br = lab.name("br");
    hh.add_bridge(&br).expect("bridge");
    hh.set_up(&br).expect("bridge up");
    let mut spokes = Vec::new();
    for i in 1..=3u8 {
        let ns = lab.ns(&format!("c{i}"));
        let (host_end, inner) = (lab.name(&format!("h{i}")), lab.name(&format!("e{i}")));
        hh.add_veth(&host_end, &inner, Some(NsTarget::Path(ns.path())))
            .expect("veth");
        hh.set_master(&host_end, &br).expect("attach to bridge");
        hh.set_up(&host_end).expect("port up");
        let mut h = Handle::open(Some(&ns)).expect("spoke handle");
        let addr: IpAddr = format!("10.78.0.{i}").parse().expect("ip");
        h.add_addr(&inner, &Cidr::new(addr, 24).expect("cidr"))
            .expect("addr");
        h.set_up(&inner).expect("up");
        spokes.push((ns, addr));
    }
    let ports: Vec<_> = hh
        .links()
        .expect("links")
        .into_iter()
        .filter(|l| l.master.as_deref() == Some(br.as_str()))
        .collect();
    assert_eq!(ports.len(), 3, "{ports:?}");
    assert_eq!(hh.link(&br).expect("br").kind.as_deref(), Some("bridge"));
    for (server, sip) in &spokes {
        for (client, cip) in &spokes {
            if sip != cip {
                tcp_roundtrip(server, *sip, client, *cip);
            }
        }
    }
    drop((hh, hub, spokes));
    lab.finish();
}

#[test]
fn ipv6_address_and_route_apply() {
    let Some(mut lab) = Lab::new() else { return };
    let ns = lab.ns("v6");
    let mut h = Handle::open(Some(&ns)).expect("handle");
    let (v1, v2) = (lab.name("v1"), lab.name("v2"));
    h.add_veth(&v1, &v2, None).expect("veth inside ns");
    let addr = cidr("fd00:77::1/64");
    h.add_addr(&v1, &addr).expect("add v6 addr");
    h.set_up(&v1).expect("up");
    h.set_up(&v2).expect("up");
    let listed = h.addrs(Some(&v1)).expect("addrs");
    assert!(
        listed.iter().any(|a| a.cidr == addr && a.link == v1),
        "{listed:?}"
    );
    assert!(h
        .addrs(None)
        .expect("all")
        .iter()
        .any(|a| a.cidr == cidr("127.0.0.1/8")));

    let route = Route::to(cidr("fd00:99::/64"))
        .via(ip("fd00:77::2"))
        .dev(&v1);
    h.add_route(&route).expect("add v6 route");
    let routes = h.routes().expect("routes");
    let found = routes
        .iter()
        .find(|r| r.dest == route.dest)
        .expect("route listed");
    assert_eq!(found.gateway, route.gateway);
    assert_eq!(found.dev.as_deref(), Some(v1.as_str()));
    let dup = h.add_route(&route).expect_err("duplicate route");
    assert_eq!(dup.errno(), Some(nix::errno::Errno::EEXIST), "{dup}");
    assert!(dup.to_string().contains("already exists"), "{dup}");

    h.del_route(&route).expect("del route");
    assert!(!h
        .routes()
        .expect("routes")
        .iter()
        .any(|r| r.dest == route.dest));
    h.del_addr(&v1, &addr).expect("del addr");
    assert!(!h
        .addrs(Some(&v1))
        .expect("addrs")
        .iter()
        .any(|a| a.cidr == addr));
    drop((h, ns));
    lab.finish();
}

#[test]
fn default_route_via_gateway_v4_and_v6() {
    let Some(mut lab) = Lab::new() else { return };
    let ns = lab.ns("gw");
    let mut h = Handle::open(Some(&ns)).expect("handle");
    let (v1, v2) = (lab.name("g1"), lab.name("g2"));
    h.add_veth(&v1, &v2, None).expect("veth");
    h.add_addr(&v1, &cidr("10.79.0.2/24")).expect("v4 addr");
    h.add_addr(&v1, &cidr("fd00:79::2/64")).expect("v6 addr");
    h.set_up(&v1).expect("up");
    h.set_up(&v2).expect("up");

    let unreachable = Route::default_via(ip("192.0.2.1"));
    let err = h.add_route(&unreachable).expect_err("gateway off-link");
    assert_eq!(err.errno(), Some(nix::errno::Errno::ENETUNREACH), "{err}");

    for gw in ["10.79.0.1", "fd00:79::1"] {
        let route = Route::default_via(ip(gw));
        h.add_route(&route).expect("add default");
        let routes = h.routes().expect("routes");
        let def = routes
            .iter()
            .find(|r| r.dest.is_none() && r.gateway == Some(ip(gw)))
            .unwrap_or_else(|| panic!("default via {gw} not in {routes:?}"));
        assert_eq!(def.dev.as_deref(), Some(v1.as_str()));
        assert_eq!(
            def.to_string(),
            format!(
                "default via {gw} dev {v1}{}",
                def.metric.map_or(String::new(), |m| format!(" metric {m}"))
            )
        );
        h.del_route(&route).expect("del default");
    }
    let routes = h.routes().expect("routes");
    assert!(!routes.iter().any(|r| r.dest.is_none()), "{routes:?}");
    drop((h, ns));
    lab.finish();
}
