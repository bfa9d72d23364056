//! `berth net`: network namespaces and interfaces in iproute2's vocabulary.
//!
//! `berth net ns add|del|ls`, `link add|set|del|ls`, `addr add|del|ls`,
//! `route add|del|ls`; `--netns NS` makes any of them act inside a namespace.

use std::io::Write;
use std::net::IpAddr;

use anyhow::{bail, Context as _, Result};
use berth_core::net::{Cidr, Handle, MacAddr, NetnsDir, NsTarget, Route};

use crate::cli::{NetArgs, NetCommand, NsAction};
use crate::context::Context;
use crate::output;

pub fn run(ctx: &Context, a: NetArgs, out: &mut dyn Write) -> Result<()> {
    if let NetCommand::Ns { action } = &a.command {
        return ns(ctx, action, out);
    }
    // `--netns NS` may follow the object too (`net link ls --netns lab`), as clap's
    // global flags do elsewhere; the iproute2 words would otherwise swallow it.
    let (object, words) = match a.command {
        NetCommand::Link { words } => (Object::Link, words),
        NetCommand::Addr { words } => (Object::Addr, words),
        NetCommand::Route { words } => (Object::Route, words),
        NetCommand::Ns { .. } => unreachable!("handled above"),
    };
    let (words, after) = take_netns(words)?;
    let name = match (a.netns, after) {
        (Some(x), Some(y)) if x != y => bail!("--netns given twice ({x} and {y})"),
        (x, y) => x.or(y),
    };
    let netns = name
        .as_deref()
        .map(|n| ctx.layout().find_netns(n))
        .transpose()?;
    let mut h = Handle::open(netns.as_ref())?;
    match object {
        Object::Link => link(ctx, &mut h, &words, out),
        Object::Addr => addr(ctx, &mut h, &words, out),
        Object::Route => route(ctx, &mut h, &words, out),
    }
}

enum Object {
    Link,
    Addr,
    Route,
}

/// Splits `--netns NS` / `--netns=NS` out of the words.
fn take_netns(words: Vec<String>) -> Result<(Vec<String>, Option<String>)> {
    let mut out = Vec::new();
    let mut netns = None;
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        if w == "--netns" {
            netns = Some(it.next().context("--netns needs a namespace name")?);
        } else if let Some(v) = w.strip_prefix("--netns=") {
            netns = Some(v.to_string());
        } else {
            out.push(w);
        }
    }
    Ok((out, netns))
}

fn ns(ctx: &Context, action: &NsAction, out: &mut dyn Write) -> Result<()> {
    let layout = ctx.layout();
    let own = layout.netns_dir();
    match action {
        NsAction::Add { name, ip_netns } => {
            let dir = if *ip_netns { NetnsDir::system() } else { own };
            let ns = dir.create(name)?;
            if let Ok(mut h) = Handle::open(Some(&ns)) {
                h.loopback_up()?;
            }
            writeln!(out, "{}", ns.path().display())?;
        }
        NsAction::Del { name } => {
            let ns = layout.find_netns(name)?;
            let parent = ns
                .path()
                .parent()
                .map(NetnsDir::at)
                .context("namespace path has no parent")?;
            drop(ns);
            parent.delete(name)?;
        }
        NsAction::Ls => {
            let mut names: Vec<(String, &str)> =
                own.list()?.into_iter().map(|n| (n, "berth")).collect();
            names.extend(
                NetnsDir::system()
                    .list()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|n| (n, "/run/netns")),
            );
            if ctx.json {
                let rows: Vec<_> = names
                    .iter()
                    .map(|(n, w)| serde_json::json!({"name": n, "dir": w}))
                    .collect();
                return output::json(out, &rows);
            }
            for (n, _) in names {
                writeln!(out, "{n}")?;
            }
        }
    }
    Ok(())
}

/// Pops `key VALUE` pairs and bare words from iproute2-style arguments.
struct Words<'a> {
    words: &'a [String],
    at: usize,
}

impl<'a> Words<'a> {
    fn new(words: &'a [String]) -> Self {
        Words { words, at: 0 }
    }
    fn next(&mut self) -> Option<&'a str> {
        let w = self.words.get(self.at)?;
        self.at += 1;
        Some(w.as_str())
    }
    fn value(&mut self, key: &str) -> Result<&'a str> {
        self.next()
            .with_context(|| format!("`{key}` needs a value"))
    }
}

fn link(ctx: &Context, h: &mut Handle, words: &[String], out: &mut dyn Write) -> Result<()> {
    let mut w = Words::new(words);
    match w.next() {
        Some("add") => {
            let name = w.value("add")?;
            let (mut kind, mut peer, mut peer_ns) = (None, None, None);
            while let Some(k) = w.next() {
                match k {
                    "type" => kind = Some(w.value(k)?),
                    "peer" => peer = Some(w.value(k)?),
                    "netns" => peer_ns = Some(w.value(k)?),
                    other => bail!("unknown word {other:?} in `link add` (type, peer, netns)"),
                }
            }
            match kind {
                Some("veth") => {
                    let peer = peer.context("a veth needs `peer NAME`")?;
                    let ns = peer_ns.map(|n| ctx.layout().find_netns(n)).transpose()?;
                    h.add_veth(name, peer, ns.as_ref().map(NsTarget::Netns))?;
                }
                Some("bridge") => h.add_bridge(name)?,
                Some(other) => bail!("unsupported link type {other:?} (veth, bridge)"),
                None => bail!("`link add NAME type veth peer PEER` or `type bridge`"),
            }
        }
        Some("set") => link_set(ctx, h, w.value("set")?, &mut w)?,
        Some("del" | "delete") => h.delete_link(w.value("del")?)?,
        Some("ls" | "list" | "show") | None => {
            let links = h.links()?;
            if ctx.json {
                return output::json(out, &links);
            }
            let mut table = vec![vec![
                "NAME".into(),
                "KIND".into(),
                "STATE".into(),
                "MTU".into(),
                "MAC".into(),
                "MASTER".into(),
            ]];
            for l in links {
                table.push(vec![
                    l.name,
                    l.kind.unwrap_or_default(),
                    if l.up { "up".into() } else { "down".into() },
                    l.mtu.map(|m| m.to_string()).unwrap_or_default(),
                    l.mac.map(|m| m.to_string()).unwrap_or_default(),
                    l.master.unwrap_or_default(),
                ]);
            }
            return output::table(out, &table);
        }
        Some(other) => bail!("unknown `link` verb {other:?} (add, set, del, ls)"),
    }
    Ok(())
}

fn link_set(ctx: &Context, h: &mut Handle, name: &str, w: &mut Words<'_>) -> Result<()> {
    let mut name = name.to_string();
    while let Some(k) = w.next() {
        match k {
            "up" => h.set_up(&name)?,
            "down" => h.set_down(&name)?,
            "mtu" => h.set_mtu(&name, w.value(k)?.parse().context("mtu must be a number")?)?,
            "address" => h.set_mac(&name, w.value(k)?.parse::<MacAddr>()?)?,
            "master" => h.set_master(&name, w.value(k)?)?,
            "nomaster" => h.clear_master(&name)?,
            "name" => {
                let new = w.value(k)?;
                h.rename(&name, new)?;
                name = new.to_string();
            }
            "netns" => {
                let target = w.value(k)?;
                match target.parse::<u32>() {
                    Ok(pid) => h.move_to_netns(&name, NsTarget::Pid(pid))?,
                    Err(_) => {
                        let ns = ctx.layout().find_netns(target)?;
                        h.move_to_netns(&name, NsTarget::Netns(&ns))?;
                    }
                }
            }
            other => bail!("unknown word {other:?} in `link set` (up, down, mtu, address, master, nomaster, name, netns)"),
        }
    }
    Ok(())
}

fn addr(ctx: &Context, h: &mut Handle, words: &[String], out: &mut dyn Write) -> Result<()> {
    let mut w = Words::new(words);
    let verb = w.next();
    if matches!(verb, Some("ls" | "list" | "show") | None) {
        let dev = match (w.next(), w.next()) {
            (Some("dev"), Some(d)) => Some(d),
            _ => None,
        };
        let addrs = h.addrs(dev)?;
        if ctx.json {
            return output::json(out, &addrs);
        }
        for a in addrs {
            writeln!(out, "{} {}", a.link, a.cidr)?;
        }
        return Ok(());
    }
    let cidr: Cidr = w.value("addr")?.parse()?;
    let dev = match (w.next(), w.next()) {
        (Some("dev"), Some(d)) => d,
        _ => bail!("`addr {} CIDR dev NAME`", verb.unwrap_or("add")),
    };
    match verb {
        Some("add") => h.add_addr(dev, &cidr)?,
        Some("del" | "delete") => h.del_addr(dev, &cidr)?,
        Some(other) => bail!("unknown `addr` verb {other:?} (add, del, ls)"),
        None => unreachable!("handled above"),
    }
    Ok(())
}

fn route(ctx: &Context, h: &mut Handle, words: &[String], out: &mut dyn Write) -> Result<()> {
    let mut w = Words::new(words);
    let verb = w.next();
    if matches!(verb, Some("ls" | "list" | "show") | None) {
        let routes = h.routes()?;
        if ctx.json {
            return output::json(out, &routes);
        }
        for r in routes {
            writeln!(out, "{r}")?;
        }
        return Ok(());
    }
    let dest = w.value("route")?;
    let (mut via, mut dev, mut metric) = (None, None, None);
    while let Some(k) = w.next() {
        match k {
            "via" => {
                via = Some(
                    w.value(k)?
                        .parse::<IpAddr>()
                        .context("`via` needs an IP address")?,
                )
            }
            "dev" => dev = Some(w.value(k)?),
            "metric" => {
                metric = Some(
                    w.value(k)?
                        .parse::<u32>()
                        .context("metric must be a number")?,
                )
            }
            other => bail!("unknown word {other:?} in `route` (via, dev, metric)"),
        }
    }
    let mut r = match dest {
        "default" => Route::default_via(via.context("a default route needs `via IP`")?),
        cidr => {
            let mut r = Route::to(cidr.parse::<Cidr>()?);
            if let Some(g) = via {
                r = r.via(g);
            }
            r
        }
    };
    if let Some(d) = dev {
        r = r.dev(d);
    }
    if let Some(m) = metric {
        r = r.metric(m);
    }
    match verb {
        Some("add") => h.add_route(&r)?,
        Some("del" | "delete") => h.del_route(&r)?,
        Some(other) => bail!("unknown `route` verb {other:?} (add, del, ls)"),
        None => unreachable!("handled above"),
    }
    Ok(())
}
