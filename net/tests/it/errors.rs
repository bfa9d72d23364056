//! Bad input gives a typed error and leaves nothing half made.

use std::path::Path;

use berth_net::{Cidr, Handle, NetError, Netns, NsTarget, Route};

use crate::common::Lab;

fn link_names(h: &mut Handle) -> Vec<String> {
    let mut names: Vec<String> = h
        .links()
        .expect("links")
        .into_iter()
        .map(|l| l.name)
        .collect();
    names.sort();
    names
}

#[test]
fn missing_namespace_and_link() {
    let Some(mut lab) = Lab::new() else { return };
    let ghost = lab.name("ghost");
    let err = lab.netns.open(&ghost).expect_err("no such ns");
    assert!(
        matches!(err, NetError::NetnsNotFound { ref name, .. } if *name == ghost),
        "{err}"
    );
    let err = lab.netns.delete(&ghost).expect_err("no such ns");
    assert!(matches!(err, NetError::NetnsNotFound { .. }), "{err}");
    let err = lab.netns.in_netns(&ghost, || ()).expect_err("no such ns");
    assert!(matches!(err, NetError::NetnsNotFound { .. }), "{err}");
    let err = Netns::open_path(Path::new("/etc/hostname")).expect_err("not a netns");
    assert!(matches!(err, NetError::NotANetns { .. }), "{err}");

    let ns = lab.ns("miss");
    let mut h = Handle::open(Some(&ns)).expect("handle");
    let missing = lab.name("nolink");
    for result in [
        h.set_up(&missing),
        h.set_mtu(&missing, 1400),
        h.delete_link(&missing),
        h.add_addr(&missing, &"10.0.0.1/24".parse().expect("cidr")),
        h.add_route(&Route::to("10.1.0.0/16".parse().expect("cidr")).dev(&missing)),
    ] {
        let err = result.expect_err("no such link");
        assert!(
            matches!(err, NetError::LinkNotFound { ref name, ref netns } if *name == missing && netns == ns.name()),
            "{err}"
        );
    }
    let err = h.link(&missing).expect_err("no such link");
    assert!(err.to_string().contains(&missing), "{err}");
    assert_eq!(link_names(&mut h), ["lo"]);
    drop((h, ns));
    lab.finish();
}

#[test]
fn invalid_names_and_cidrs() {
    let Some(mut lab) = Lab::new() else { return };
    let ns = lab.ns("inv");
    let mut h = Handle::open(Some(&ns)).expect("handle");
    let long = "abcdefghijklmnop"; // 16 bytes
    let ok = lab.name("ok");
    for (a, b) in [
        (long, ok.as_str()),
        (ok.as_str(), long),
        ("", ok.as_str()),
        ("a b", ok.as_str()),
        ("a/b", ok.as_str()),
    ] {
        let err = h.add_veth(a, b, None).expect_err("bad name");
        assert!(
            matches!(err, NetError::InvalidLinkName { .. }),
            "{a:?}/{b:?}: {err}"
        );
    }
    let err = h.add_bridge(long).expect_err("bad name");
    assert!(err.to_string().contains("longer than 15 bytes"), "{err}");
    assert!(h.add_bridge("fifteen-bytes-x").is_ok(), "15 bytes is fine");
    h.delete_link("fifteen-bytes-x").expect("delete");
    for bad in [
        "10.0.0.1",
        "10.0.0.256/24",
        "10.0.0.1/33",
        "fd00::1/200",
        "nonsense/8",
    ] {
        let err = bad.parse::<Cidr>().expect_err("bad cidr");
        assert!(
            matches!(err, NetError::InvalidCidr { ref input, .. } if input == bad),
            "{err}"
        );
    }
    assert!("zz:00:00:00:00:00".parse::<berth_net::MacAddr>().is_err());
    let err = h
        .add_route(
            &Route::to("10.0.0.0/8".parse().expect("cidr")).via("fd00::1".parse().expect("ip")),
        )
        .expect_err("mixed families");
    assert!(matches!(err, NetError::InvalidRoute { .. }), "{err}");
    assert_eq!(link_names(&mut h), ["lo"], "nothing created");
    drop((h, ns));
    lab.finish();
}

#[test]
fn duplicates_leave_no_half_pair() {
    let Some(mut lab) = Lab::new() else { return };
    let a = lab.ns("da");
    let b = lab.ns("db");
    let mut ha = Handle::open(Some(&a)).expect("handle a");
    let mut hb = Handle::open(Some(&b)).expect("handle b");
    let (v1, v2, v3) = (lab.name("v1"), lab.name("v2"), lab.name("v3"));
    ha.add_veth(&v1, &v2, Some(NsTarget::Netns(&b)))
        .expect("veth");

    let err = ha.add_veth(&v1, &v3, None).expect_err("duplicate name");
    assert!(
        matches!(err, NetError::LinkExists { ref name, .. } if *name == v1),
        "{err}"
    );
    assert!(err.to_string().contains("already exists"), "{err}");
    let err = ha.add_bridge(&v1).expect_err("duplicate name");
    assert!(matches!(err, NetError::LinkExists { .. }), "{err}");
    // The peer's name is taken in b: the kernel makes neither end.
    let err = ha
        .add_veth(&v3, &v2, Some(NsTarget::Netns(&b)))
        .expect_err("peer taken");
    assert!(
        matches!(err, NetError::LinkExists { ref name, ref netns } if *name == v2 && netns == b.name()),
        "{err}"
    );
    assert_eq!(link_names(&mut ha), ["lo".to_owned(), v1.clone()]);
    assert_eq!(link_names(&mut hb), ["lo".to_owned(), v2.clone()]);

    let err = ha.rename(&v1, "lo").expect_err("rename onto lo");
    assert!(
        matches!(err, NetError::LinkExists { ref name, .. } if name == "lo"),
        "{err}"
    );
    drop((ha, hb, a, b));
    lab.finish();
}

#[test]
fn moves_into_missing_namespace_fail_cleanly() {
    let Some(mut lab) = Lab::new() else { return };
    let a = lab.ns("mv");
    let mut h = Handle::open(Some(&a)).expect("handle");
    let (v1, v2) = (lab.name("v1"), lab.name("v2"));
    let ghost = lab.dir.path().join("netns").join(lab.name("ghost"));

    let err = h
        .add_veth(&v1, &v2, Some(NsTarget::Path(&ghost)))
        .expect_err("peer ns missing");
    assert!(matches!(err, NetError::NetnsNotFound { .. }), "{err}");
    assert_eq!(link_names(&mut h), ["lo"], "no half pair");

    h.add_veth(&v1, &v2, None).expect("veth");
    let err = h
        .move_to_netns(&v1, NsTarget::Path(&ghost))
        .expect_err("ns missing");
    assert!(matches!(err, NetError::NetnsNotFound { .. }), "{err}");
    // pid_max is at most 2^22, so this pid cannot exist.
    let err = h
        .move_to_netns(&v1, NsTarget::Pid(0x7fff_fff0))
        .expect_err("pid missing");
    assert!(
        matches!(err, NetError::NoSuchProcess { pid: 0x7fff_fff0 }),
        "{err}"
    );
    let err = h
        .add_veth(
            &lab.name("v3"),
            &lab.name("v4"),
            Some(NsTarget::Pid(0x7fff_fff0)),
        )
        .expect_err("pid missing");
    assert!(matches!(err, NetError::NoSuchProcess { .. }), "{err}");
    assert_eq!(
        link_names(&mut h),
        ["lo".to_owned(), v1.clone(), v2.clone()],
        "link stayed"
    );
    drop((h, a));
    lab.finish();
}
