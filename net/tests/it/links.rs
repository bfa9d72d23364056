//! Link verbs: MTU, MAC, rename, up/down, bridge ports, moves, delete, list.

use std::os::fd::AsFd;
use std::process::Command;

use berth_net::{Handle, MacAddr, NsTarget};

use crate::common::Lab;

#[test]
fn link_attributes_master_and_delete() {
    let Some(mut lab) = Lab::new() else { return };
    let ns = lab.ns("attr");
    let mut h = Handle::open(Some(&ns)).expect("handle");
    let (v1, v2, br, renamed) = (
        lab.name("v1"),
        lab.name("v2"),
        lab.name("br"),
        lab.name("rn"),
    );
    h.add_veth(&v1, &v2, None).expect("veth");
    h.add_bridge(&br).expect("bridge");

    h.set_mtu(&v1, 1400).expect("mtu");
    let mac: MacAddr = "02:42:ac:11:00:07".parse().expect("mac");
    h.set_mac(&v1, mac).expect("mac");
    h.set_master(&v1, &br).expect("attach");
    h.set_up(&v1).expect("up");
    let link = h.link(&v1).expect("get");
    assert_eq!(link.mtu, Some(1400));
    assert_eq!(link.mac, Some(mac));
    assert_eq!(link.master.as_deref(), Some(br.as_str()));
    assert!(link.up);
    assert_eq!(mac.to_string(), "02:42:ac:11:00:07");

    h.clear_master(&v1).expect("detach");
    h.set_down(&v1).expect("down");
    let link = h.link(&v1).expect("get");
    assert_eq!(link.master, None);
    assert!(!link.up);

    h.rename(&v1, &renamed).expect("rename");
    assert!(h.link(&v1).is_err());
    assert_eq!(h.link(&renamed).expect("renamed").index, link.index);

    h.delete_link(&renamed).expect("delete veth");
    h.delete_link(&br).expect("delete bridge");
    let names: Vec<String> = h
        .links()
        .expect("links")
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names, ["lo"], "the peer went with the veth");
    drop((h, ns));
    lab.finish();
}

#[test]
fn move_links_by_fd_path_and_pid() {
    let Some(mut lab) = Lab::new() else { return };
    let a = lab.ns("ma");
    let b = lab.ns("mb");
    let mut ha = Handle::open(Some(&a)).expect("handle a");
    let mut hb = Handle::open(Some(&b)).expect("handle b");
    let names: Vec<String> = ["x1", "x2", "y1", "y2", "z1", "z2"]
        .iter()
        .map(|r| lab.name(r))
        .collect();
    for pair in names.chunks(2) {
        ha.add_veth(&pair[0], &pair[1], None).expect("veth");
    }
    ha.move_to_netns(&names[0], NsTarget::Fd(b.as_fd()))
        .expect("move by fd");
    ha.move_to_netns(&names[2], NsTarget::Path(b.path()))
        .expect("move by path");
    let mut child = b
        .run(|| Command::new("sleep").arg("30").spawn())
        .expect("join b")
        .expect("spawn");
    let moved = ha.move_to_netns(&names[4], NsTarget::Pid(child.id()));
    child.kill().expect("kill");
    child.wait().expect("wait");
    moved.expect("move by pid");
    for (i, name) in names.iter().enumerate() {
        let in_b = i % 2 == 0;
        assert_eq!(hb.index_of(name).is_ok(), in_b, "{name} in b");
        assert_eq!(ha.index_of(name).is_ok(), !in_b, "{name} in a");
    }
    drop((ha, hb, a, b));
    lab.finish();
}
