//! Named namespaces: create, list, join, delete, in-use refusal, /run/netns.

use std::process::Command;

use berth_net::{in_netns, Handle, NetError, Netns, NetnsDir};

use crate::common::{assert_clean, own_netns_id, Lab};

#[test]
fn create_list_join_delete() {
    let Some(mut lab) = Lab::new() else { return };
    let before = own_netns_id();
    let a = lab.ns("a");
    let b = lab.ns("b");
    let mut names = vec![a.name().to_owned(), b.name().to_owned()];
    names.sort();
    assert_eq!(lab.netns.list().expect("list"), names);

    let inside = a.run(own_netns_id).expect("run in a");
    let inside_b = in_netns(b.path(), own_netns_id).expect("in_netns b");
    let by_name = lab.netns.in_netns(a.name(), own_netns_id).expect("by name");
    assert_ne!(inside, before, "the closure ran in another namespace");
    assert_ne!(inside, inside_b);
    assert_eq!(inside, by_name);
    // Opening a handle there leaves the caller where it was.
    let mut h = Handle::open(Some(&a)).expect("handle in a");
    let links = h.links().expect("links in a");
    assert_eq!(
        links.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
        ["lo"]
    );
    assert_eq!(own_netns_id(), before, "caller's namespace unchanged");

    let dup = lab.netns.create(a.name()).expect_err("duplicate");
    assert!(
        matches!(dup, NetError::NetnsExists { ref name, .. } if name == a.name()),
        "{dup}"
    );
    for bad in ["", "a/b", "..", "has space"] {
        let err = lab.netns.create(bad).expect_err("invalid name");
        assert!(
            matches!(err, NetError::InvalidNetnsName { .. }),
            "{bad}: {err}"
        );
    }
    drop((a, b, h));
    lab.finish();
}

#[test]
fn delete_refuses_namespace_in_use() {
    let Some(mut lab) = Lab::new() else { return };
    let ns = lab.ns("busy");
    // A child forked from a thread inside the namespace lives in it.
    let mut child = ns
        .run(|| Command::new("sleep").arg("30").spawn())
        .expect("join")
        .expect("spawn sleep");
    let err = lab.netns.delete(ns.name()).expect_err("in use");
    match &err {
        NetError::NetnsBusy { name, pid } => {
            assert_eq!(name, ns.name());
            assert_eq!(*pid as u32, child.id());
        }
        other => panic!("expected NetnsBusy, got {other}"),
    }
    assert!(err.to_string().contains("in use"), "{err}");
    assert_eq!(
        lab.netns.list().expect("list"),
        [ns.name().to_owned()],
        "still there"
    );
    child.kill().expect("kill");
    child.wait().expect("wait");

    // One of our own threads inside counts too.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        s.spawn(|| {
            ns.run(move || {
                ready_tx.send(()).expect("ready");
                rx.recv().expect("release");
            })
            .expect("run");
        });
        ready_rx.recv().expect("thread inside");
        let err = lab.netns.delete(ns.name()).expect_err("thread inside");
        assert!(matches!(err, NetError::NetnsBusy { .. }), "{err}");
        tx.send(()).expect("release");
    });
    drop(ns);
    lab.finish();
}

#[test]
fn system_dir_is_seen_by_ip_netns() {
    let Some(lab) = Lab::new() else { return };
    let dir = NetnsDir::system();
    let name = lab.name("sys");
    let ns = dir.create(&name).expect("create in /run/netns");
    let guard = SysNs(&dir, &name);
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("run ip");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed
            .lines()
            .any(|l| l.split_whitespace().next() == Some(name.as_str())),
        "{listed}"
    );
    assert!(dir.list().expect("list").contains(&name));
    let reopened = Netns::open_path(ns.path()).expect("open by path");
    assert_eq!(
        reopened.run(own_netns_id).expect("run"),
        ns.run(own_netns_id).expect("run")
    );
    drop((ns, reopened));
    std::mem::forget(guard);
    dir.delete(&name).expect("delete");
    assert!(!dir.list().expect("list").contains(&name));
    assert_clean(&lab.tag, &format!("/run/netns/{name}"));
    lab.finish();
}

/// Removes a namespace from /run/netns if the test fails half way.
struct SysNs<'a>(&'a NetnsDir, &'a str);

impl Drop for SysNs<'_> {
    fn drop(&mut self) {
        let _ = self.0.delete(self.1);
    }
}
