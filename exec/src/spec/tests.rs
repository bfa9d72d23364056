use super::*;
use oci_spec::runtime::{Capability, LinuxNamespaceType};

fn image(entrypoint: &[&str], cmd: &[&str]) -> ImageProcessConfig {
    let v = |s: &[&str]| (!s.is_empty()).then(|| s.iter().map(|x| x.to_string()).collect());
    ImageProcessConfig {
        entrypoint: v(entrypoint),
        cmd: v(cmd),
        ..Default::default()
    }
}

fn opts(args: &[&str]) -> RunOptions {
    RunOptions {
        id: "abcdef0123456789".into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn rootfs() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(d.path().join("etc")).expect("etc");
    std::fs::write(
        d.path().join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/:/bin/sh\n",
    )
    .expect("pw");
    std::fs::write(
        d.path().join("etc/group"),
        "root:x:0:\napp:x:1000:\nextra:x:50:app\n",
    )
    .expect("gr");
    d
}

fn build(img: &ImageProcessConfig, o: &RunOptions) -> Spec {
    let r = rootfs();
    build_spec(img, o, r.path()).expect("spec builds")
}

#[test]
fn image_config_deserializes_from_oci_json() {
    let j = r#"{"User":"app","Env":["A=1"],"Entrypoint":null,"Cmd":["sh"],"WorkingDir":"/w",
                "StopSignal":"SIGRTMIN+3","ExposedPorts":{"80/tcp":{}}}"#;
    let c: ImageProcessConfig = serde_json::from_str(j).expect("parses");
    assert_eq!(c.user.as_deref(), Some("app"));
    assert_eq!(c.entrypoint, None);
    assert_eq!(c.stop_signal().expect("rt"), libc::SIGRTMIN() + 3);
    assert_eq!(
        ImageProcessConfig::default()
            .stop_signal()
            .expect("default"),
        libc::SIGTERM
    );
}

#[test]
fn args_follow_docker_override_rules() {
    let img = image(&["/ep", "x"], &["c1", "c2"]);
    assert_eq!(
        process_args(&img, &opts(&[])).expect("image"),
        ["/ep", "x", "c1", "c2"]
    );
    assert_eq!(
        process_args(&img, &opts(&["u"])).expect("args replace cmd"),
        ["/ep", "x", "u"]
    );
    let mut o = opts(&[]);
    o.entrypoint = Some(vec!["/new".into()]);
    assert_eq!(
        process_args(&img, &o).expect("entrypoint drops cmd"),
        ["/new"]
    );
    o.entrypoint = Some(vec!["".into()]);
    o.args = vec!["sh".into()];
    assert_eq!(process_args(&img, &o).expect("cleared entrypoint"), ["sh"]);
    o.args.clear();
    assert!(matches!(process_args(&img, &o), Err(SpecError::NoCommand)));
    assert!(matches!(
        process_args(&image(&[], &[]), &opts(&[])),
        Err(SpecError::NoCommand)
    ));
}

#[test]
fn env_merges_user_wins_and_path_default() {
    let img = vec!["PATH=/img".to_string(), "A=1".into(), "B=2".into()];
    let user = vec![
        "A=9".to_string(),
        "C=3".into(),
        "FROMHOST".into(),
        "UNSET".into(),
    ];
    let lookup = |k: &str| (k == "FROMHOST").then(|| "h".to_string());
    assert_eq!(
        merge_env(&img, &user, lookup),
        ["PATH=/img", "A=9", "B=2", "C=3", "FROMHOST=h"]
    );
    assert_eq!(
        merge_env(&[], &["X=1".into()], |_| None),
        [DEFAULT_PATH, "X=1"]
    );
}

#[test]
fn defaults_match_containerd() {
    let s = build(&image(&[], &["sh"]), &opts(&[]));
    let root = s.root().as_ref().expect("root");
    assert_eq!(root.path(), Path::new("rootfs"));
    assert_eq!(root.readonly(), Some(false));
    assert_eq!(s.hostname().as_deref(), Some("abcdef012345"));
    let p = s.process().as_ref().expect("process");
    assert_eq!(p.cwd(), Path::new("/"));
    assert_eq!(p.no_new_privileges(), Some(true));
    assert_eq!(p.env().as_ref().expect("env"), &[DEFAULT_PATH]);
    let rl = &p.rlimits().as_ref().expect("rlimits")[0];
    assert_eq!(
        (rl.typ(), rl.soft(), rl.hard()),
        (PosixRlimitType::RlimitNofile, 1024, 1024)
    );
    let caps = p.capabilities().as_ref().expect("caps");
    let eff = caps.effective().as_ref().expect("eff");
    assert_eq!(eff.len(), 14);
    assert!(eff.contains(&Capability::NetRaw) && !eff.contains(&Capability::SysAdmin));
    assert_eq!(caps.bounding(), caps.permitted());
    assert!(caps.ambient().as_ref().is_none_or(|a| a.is_empty()));
    assert!(caps.inheritable().as_ref().is_none_or(|a| a.is_empty()));
    let linux = s.linux().as_ref().expect("linux");
    assert_eq!(
        linux.cgroups_path().as_deref(),
        Some(Path::new("/berth/abcdef0123456789"))
    );
    let ns: Vec<_> = linux
        .namespaces()
        .as_ref()
        .expect("ns")
        .iter()
        .map(|n| n.typ())
        .collect();
    use LinuxNamespaceType::*;
    assert_eq!(&ns[..5], &[Pid, Ipc, Uts, Mount, Network]);
    assert_eq!(ns.len(), if host_is_cgroup2_only() { 6 } else { 5 });
    assert_eq!(
        linux.masked_paths().as_ref().expect("masked").len(),
        MASKED_PATHS.len()
    );
    assert_eq!(
        linux.readonly_paths().as_ref().expect("ro").len(),
        READONLY_PATHS.len()
    );
    let dev = &linux
        .resources()
        .as_ref()
        .expect("res")
        .devices()
        .as_ref()
        .expect("devices")[0];
    assert!(!dev.allow() && dev.access().as_deref() == Some("rwm"));
    let dsts: Vec<_> = s
        .mounts()
        .as_ref()
        .expect("mounts")
        .iter()
        .map(|m| m.destination().clone())
        .collect();
    for d in [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/run",
    ] {
        assert!(dsts.contains(&PathBuf::from(d)), "{d}");
    }
    let sys = s
        .mounts()
        .as_ref()
        .expect("mounts")
        .iter()
        .find(|m| m.destination() == Path::new("/sys"))
        .expect("sys");
    assert!(sys
        .options()
        .as_ref()
        .expect("opts")
        .contains(&"ro".to_string()));
}

#[test]
fn user_options_apply() {
    let mut img = image(&[], &["sh"]);
    img.env = Some(vec!["A=1".into()]);
    img.working_dir = Some("/img".into());
    img.user = Some("app".into());
    let mut o = opts(&[]);
    o.hostname = Some("box".into());
    o.read_only = true;
    o.terminal = true;
    let s = build(&img, &o);
    let p = s.process().as_ref().expect("process");
    assert_eq!((p.user().uid(), p.user().gid()), (1000, 1000));
    assert_eq!(p.user().additional_gids().as_deref(), Some(&[50][..]));
    assert_eq!(p.cwd(), Path::new("/img"));
    assert!(p
        .env()
        .as_ref()
        .expect("env")
        .contains(&"TERM=xterm".to_string()));
    assert_eq!(p.terminal(), Some(true));
    assert_eq!(s.hostname().as_deref(), Some("box"));
    assert_eq!(s.root().as_ref().expect("root").readonly(), Some(true));
    o.workdir = Some("/w".into());
    o.user = Some("0:50".into());
    let s = build(&img, &o);
    let p = s.process().as_ref().expect("process");
    assert_eq!(p.cwd(), Path::new("/w"));
    assert_eq!((p.user().uid(), p.user().gid()), (0, 50));
    o.workdir = Some("rel".into());
    assert!(matches!(
        build_spec(&img, &o, rootfs().path()),
        Err(SpecError::RelativeContainerPath(_))
    ));
    o.workdir = None;
    o.user = Some("ghost".into());
    assert!(matches!(
        build_spec(&img, &o, rootfs().path()),
        Err(SpecError::UnknownUser(_))
    ));
}

#[test]
fn resources_land_in_the_spec() {
    let mut o = opts(&["sh"]);
    o.memory = Some(parse_bytes("64m").expect("size"));
    o.cpus = Some(1.5);
    o.pids_limit = Some(20);
    let s = build(&ImageProcessConfig::default(), &o);
    let r = s
        .linux()
        .as_ref()
        .expect("linux")
        .resources()
        .as_ref()
        .expect("res")
        .clone();
    assert_eq!(r.memory().as_ref().expect("mem").limit(), Some(64 << 20));
    let cpu = r.cpu().as_ref().expect("cpu");
    assert_eq!((cpu.quota(), cpu.period()), (Some(150_000), Some(100_000)));
    assert_eq!(r.pids().as_ref().expect("pids").limit(), 20);
    o.pids_limit = Some(0);
    assert!(matches!(
        build_spec(&ImageProcessConfig::default(), &o, rootfs().path()),
        Err(SpecError::BadPidsLimit(0))
    ));
}

#[test]
fn capability_rules() {
    let caps = |add: &[&str], drop: &[&str], privileged| {
        let mut o = opts(&["sh"]);
        o.cap_add = add.iter().map(|s| s.to_string()).collect();
        o.cap_drop = drop.iter().map(|s| s.to_string()).collect();
        o.privileged = privileged;
        capabilities(&o)
    };
    let c = caps(&["net_admin"], &["CAP_NET_RAW"], false).expect("ok");
    assert!(c.contains(&Capability::NetAdmin) && !c.contains(&Capability::NetRaw));
    assert_eq!(c.len(), 14);
    assert_eq!(
        caps(&["ALL"], &["SYS_ADMIN"], false).expect("all").len(),
        ALL_CAPS.len() - 1
    );
    assert_eq!(
        caps(&["CHOWN"], &["ALL"], false).expect("drop all"),
        vec![Capability::Chown]
    );
    assert!(caps(&[], &["ALL"], false).expect("none").is_empty());
    assert_eq!(
        caps(&[], &[], true).expect("privileged").len(),
        ALL_CAPS.len()
    );
    assert!(matches!(
        caps(&["BOGUS"], &[], false),
        Err(SpecError::UnknownCapability(_))
    ));
}

#[test]
fn privileged_unmasks_and_allows_devices() {
    let mut o = opts(&["sh"]);
    o.privileged = true;
    let s = build(&ImageProcessConfig::default(), &o);
    let linux = s.linux().as_ref().expect("linux");
    assert!(linux.masked_paths().as_ref().is_none_or(|m| m.is_empty()));
    assert!(linux.readonly_paths().as_ref().is_none_or(|m| m.is_empty()));
    assert!(linux
        .resources()
        .as_ref()
        .expect("res")
        .devices()
        .as_ref()
        .expect("dev")[0]
        .allow());
}

#[test]
fn mounts_and_network_modes() {
    let mut o = opts(&["sh"]);
    o.mounts = vec![
        "type=bind,src=/data,dst=/mnt,ro".parse().expect("bind"),
        MountRequest::Tmpfs("/scratch:size=1m".parse().expect("tmpfs")),
    ];
    o.network = NetworkMode::Host;
    let s = build(&ImageProcessConfig::default(), &o);
    let m = s.mounts().as_ref().expect("mounts");
    let bind = m
        .iter()
        .find(|m| m.destination() == Path::new("/mnt"))
        .expect("bind");
    assert_eq!(bind.source().as_deref(), Some(Path::new("/data")));
    assert_eq!(
        bind.options().as_ref().expect("o"),
        &["rbind", "ro", "rprivate"]
    );
    let t = m
        .iter()
        .find(|m| m.destination() == Path::new("/scratch"))
        .expect("tmpfs");
    assert_eq!(
        t.options().as_ref().expect("o"),
        &["nosuid", "nodev", "noexec", "size=1m"]
    );
    let has_net = |s: &Spec| {
        s.linux()
            .as_ref()
            .expect("l")
            .namespaces()
            .as_ref()
            .expect("ns")
            .iter()
            .find(|n| n.typ() == LinuxNamespaceType::Network)
            .cloned()
    };
    assert!(has_net(&s).is_none());
    o.network = NetworkMode::Path("/run/netns/lab".into());
    let s = build(&ImageProcessConfig::default(), &o);
    assert_eq!(
        has_net(&s).expect("net").path().as_deref(),
        Some(Path::new("/run/netns/lab"))
    );
}
