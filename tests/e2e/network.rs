//! Containers on networks made with `berth net`: veth pairs, bridges, routes, IPv6,
//! and the `--net` modes (none, host, ns:NAME, container:ID). Real kernel, as root.

use crate::support::{need_root, Env};

/// A store with a busybox image that has the network tools, and teardown that checks
/// nothing is left: containers, namespaces, their bind mounts.
struct Lab {
    env: Env,
}

const IMAGE: &str = "localhost/netbox:v1";

impl Lab {
    fn new() -> Self {
        need_root();
        let env = Env::new();
        let r = env.path("rootfs");
        env.ok(&["checkout", "scratch", r.to_str().expect("utf8")]);
        std::fs::create_dir_all(r.join("bin")).expect("mkdir");
        std::fs::create_dir_all(r.join("tmp")).expect("mkdir");
        std::fs::copy("/bin/busybox", r.join("bin/busybox")).expect("busybox");
        for app in ["sh", "nc", "ping", "cat", "sleep", "echo", "ip"] {
            std::os::unix::fs::symlink("busybox", r.join("bin").join(app)).expect("symlink");
        }
        env.ok(&[
            "commit",
            r.to_str().expect("utf8"),
            IMAGE,
            "--change",
            "ENV PATH=/bin",
        ]);
        env.ok(&["discard", r.to_str().expect("utf8")]);
        Lab { env }
    }

    fn ok(&self, args: &[&str]) -> String {
        self.env.ok(args)
    }

    /// `berth net ...`
    fn net(&self, args: &[&str]) -> String {
        let mut all = vec!["net"];
        all.extend_from_slice(args);
        self.env.ok(&all)
    }

    /// Two namespaces joined by a veth pair made inside them (never in the host's).
    fn pair(&self, a: &str, b: &str, ip_a: &str, ip_b: &str) {
        self.net(&["ns", "add", a]);
        self.net(&["ns", "add", b]);
        let (va, vb) = (format!("v{a}"), format!("v{b}"));
        self.net(&[
            "--netns", a, "link", "add", &va, "type", "veth", "peer", &vb, "netns", b,
        ]);
        self.net(&["--netns", a, "addr", "add", ip_a, "dev", &va]);
        self.net(&["--netns", b, "addr", "add", ip_b, "dev", &vb]);
        self.net(&["--netns", a, "link", "set", &va, "up"]);
        self.net(&["--netns", b, "link", "set", &vb, "up"]);
    }

    /// `berth run --rm --net MODE IMAGE sh -c CMD`, stdout.
    fn run_in(&self, net: &str, cmd: &str) -> String {
        self.ok(&["run", "--rm", "--net", net, IMAGE, "sh", "-c", cmd])
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for id in self.env.ok(&["ps", "-a", "-q"]).lines() {
            let _ = self.env.run(&["rm", "-f", id]);
        }
        for ns in self.env.ok(&["net", "ns", "ls"]).lines() {
            let _ = self.env.run(&["net", "ns", "del", ns]);
        }
        if std::thread::panicking() {
            return;
        }
        assert_eq!(
            self.env.ok(&["net", "ns", "ls"]),
            "",
            "namespaces left behind"
        );
        let run = self.env.path("run");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let left: Vec<&str> = mounts
            .lines()
            .filter(|l| l.contains(run.to_str().expect("utf8")))
            .collect();
        assert!(left.is_empty(), "mounts left behind: {left:?}");
    }
}

fn interfaces(proc_net_dev: &str) -> Vec<String> {
    let mut v: Vec<String> = proc_net_dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|s| s.trim().to_string())
        .collect();
    v.sort();
    v
}

/// Two containers in two namespaces joined by a veth pair exchange data both ways.
#[test]
fn veth_pair_carries_data_both_ways() {
    let lab = Lab::new();
    lab.pair("a", "b", "10.77.0.1/24", "10.77.0.2/24");
    let out = lab.env.path("server.out");
    lab.ok(&[
        "run",
        "-d",
        "--name",
        "server",
        "--net",
        "ns:a",
        "--stdout",
        out.to_str().expect("utf8"),
        IMAGE,
        "sh",
        "-c",
        "(echo from-a; sleep 1) | nc -l -p 7000",
    ]);
    let mut reply = String::new();
    for _ in 0..50 {
        reply = lab
            .env
            .run(&[
                "run",
                "--rm",
                "--net",
                "ns:b",
                IMAGE,
                "sh",
                "-c",
                "(echo from-b; sleep 1) | nc -w 3 10.77.0.1 7000",
            ])
            .stdout
            .iter()
            .map(|&b| b as char)
            .collect();
        if reply.contains("from-a") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(reply.trim(), "from-a", "b received a's data");
    assert_eq!(lab.ok(&["wait", "server"]).trim(), "0");
    assert_eq!(
        std::fs::read_to_string(&out).expect("read").trim(),
        "from-b",
        "a received b's data"
    );
    assert!(lab
        .run_in("ns:a", "ping -c1 -W2 10.77.0.2")
        .contains("1 packets received"));
}

/// Three containers in three namespaces on one bridge reach each other.
#[test]
fn bridge_joins_three_containers() {
    let lab = Lab::new();
    lab.net(&["ns", "add", "hub"]);
    lab.net(&["--netns", "hub", "link", "add", "br0", "type", "bridge"]);
    lab.net(&["--netns", "hub", "link", "set", "br0", "up"]);
    for i in 1..=3 {
        let (ns, port, end) = (format!("c{i}"), format!("p{i}"), format!("e{i}"));
        lab.net(&["ns", "add", &ns]);
        lab.net(&[
            "--netns", "hub", "link", "add", &port, "type", "veth", "peer", &end, "netns", &ns,
        ]);
        lab.net(&[
            "--netns", "hub", "link", "set", &port, "master", "br0", "up",
        ]);
        lab.net(&[
            "--netns",
            &ns,
            "addr",
            "add",
            &format!("10.78.0.{i}/24"),
            "dev",
            &end,
        ]);
        lab.net(&["--netns", &ns, "link", "set", &end, "up"]);
    }
    let links = lab.net(&["--netns", "hub", "--json", "link", "ls"]);
    let links: Vec<serde_json::Value> = serde_json::from_str(&links).expect("json");
    assert_eq!(links.iter().filter(|l| l["master"] == "br0").count(), 3);
    for i in 1..=3 {
        let others: Vec<String> = (1..=3)
            .filter(|&j| j != i)
            .map(|j| format!("ping -c1 -W2 10.78.0.{j}"))
            .collect();
        let out = lab.run_in(&format!("ns:c{i}"), &others.join(" && "));
        assert_eq!(out.matches("1 packets received").count(), 2, "c{i}: {out}");
    }
}

/// `--net none` (the default): a fresh namespace with only `lo`, up.
/// `--net host`: the host's links.
#[test]
fn none_has_only_loopback_and_host_sees_host_links() {
    let lab = Lab::new();
    let none = lab.ok(&["run", "--rm", IMAGE, "cat", "/proc/net/dev"]);
    assert_eq!(interfaces(&none), vec!["lo".to_string()]);
    let lo = lab.ok(&["run", "--rm", IMAGE, "ip", "link", "show", "lo"]);
    assert!(lo.contains("UP"), "{lo}");
    let host = lab.ok(&[
        "run",
        "--rm",
        "--net",
        "host",
        IMAGE,
        "cat",
        "/proc/net/dev",
    ]);
    let own = std::fs::read_to_string("/proc/self/net/dev").expect("host");
    assert_eq!(interfaces(&host), interfaces(&own));
}

/// `--net container:ID` shares a running container's namespace; ps and inspect show it;
/// a namespace in use cannot be deleted.
#[test]
fn containers_share_a_namespace_and_ps_shows_it() {
    let lab = Lab::new();
    lab.pair("a", "b", "10.79.0.1/24", "10.79.0.2/24");
    lab.ok(&[
        "run", "-d", "--name", "holder", "--net", "ns:a", IMAGE, "sleep", "30",
    ]);
    let seen = lab.run_in("container:holder", "cat /proc/net/dev");
    assert!(interfaces(&seen).contains(&"va".to_string()), "{seen}");
    let inspect: serde_json::Value =
        serde_json::from_str(&lab.ok(&["inspect-container", "--json", "holder"])).expect("json");
    assert_eq!(inspect["network"], "ns:a");
    let netns = inspect["netns"]
        .as_str()
        .expect("a running container has a netns")
        .to_string();
    let pinned = std::fs::metadata(lab.env.path("run/netns/a")).expect("pinned");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        netns,
        format!("net:[{}]", pinned.ino()),
        "the container is in namespace a"
    );
    assert!(lab
        .ok(&["ps"])
        .lines()
        .any(|l| l.contains("holder") && l.ends_with("ns:a")));
    let err = lab.env.fails(&["net", "ns", "del", "a"]);
    assert!(err.contains("in use") || err.contains("busy"), "{err}");
    lab.ok(&["rm", "-f", "holder"]);
    lab.net(&["ns", "del", "a"]);
}

/// Routes (default via a gateway) and IPv6 addresses apply as given inside the namespace.
#[test]
fn routes_and_ipv6_apply() {
    let lab = Lab::new();
    lab.pair("a", "b", "10.80.0.1/24", "10.80.0.2/24");
    lab.net(&["--netns", "a", "addr", "add", "fd00:80::1/64", "dev", "va"]);
    lab.net(&["--netns", "b", "addr", "add", "fd00:80::2/64", "dev", "vb"]);
    lab.net(&[
        "--netns",
        "b",
        "route",
        "add",
        "default",
        "via",
        "10.80.0.1",
    ]);
    lab.net(&[
        "--netns",
        "b",
        "route",
        "add",
        "10.90.0.0/16",
        "via",
        "10.80.0.1",
        "dev",
        "vb",
    ]);
    let routes = lab.run_in("ns:b", "cat /proc/net/route");
    assert!(
        routes
            .lines()
            .any(|l| l.starts_with("vb\t00000000\t0100500A")),
        "default via 10.80.0.1:\n{routes}"
    );
    assert!(
        routes
            .lines()
            .any(|l| l.starts_with("vb\t00005A0A\t0100500A")),
        "10.90/16 via 10.80.0.1:\n{routes}"
    );
    let v6 = lab.run_in("ns:b", "cat /proc/net/if_inet6");
    assert!(v6.contains("fd000080000000000000000000000002"), "{v6}");
    assert!(lab
        .run_in("ns:b", "ping -c1 -W2 fd00:80::1")
        .contains("1 packets received"));
    let listed: Vec<serde_json::Value> =
        serde_json::from_str(&lab.net(&["--netns", "b", "--json", "route", "ls"])).expect("json");
    assert!(
        listed
            .iter()
            .any(|r| r["gateway"] == "10.80.0.1" && r["dest"].is_null()),
        "{listed:?}"
    );
}

/// Bad input: one clear line each, nothing half-made.
#[test]
fn bad_network_input_is_refused() {
    let lab = Lab::new();
    assert!(lab
        .env
        .fails(&["run", "--rm", "--net", "ns:nope", IMAGE, "true"])
        .contains("nope"));
    assert!(lab
        .env
        .fails(&["run", "--rm", "--net", "container:nope", IMAGE, "true"])
        .contains("nope"));
    assert!(lab
        .env
        .fails(&["run", "--rm", "--net", "bogus", IMAGE, "true"])
        .contains("--net"));
    lab.net(&["ns", "add", "a"]);
    assert!(lab.env.fails(&["net", "ns", "add", "a"]).contains("exists"));
    let long = lab.env.fails(&[
        "net",
        "--netns",
        "a",
        "link",
        "add",
        "sixteen-chars-xx",
        "type",
        "bridge",
    ]);
    assert!(long.contains("15"), "{long}");
    assert!(lab
        .env
        .fails(&[
            "net",
            "--netns",
            "a",
            "addr",
            "add",
            "10.0.0.1/40",
            "dev",
            "lo"
        ])
        .contains("CIDR"));
    assert!(lab
        .env
        .fails(&["net", "--netns", "a", "link", "set", "ghost", "up"])
        .contains("ghost"));
    let err = lab.env.fails(&[
        "net", "--netns", "a", "link", "add", "x1", "type", "veth", "peer", "x2", "netns",
        "nowhere",
    ]);
    assert!(err.contains("nowhere"), "{err}");
    let links: Vec<serde_json::Value> =
        serde_json::from_str(&lab.net(&["--netns", "a", "--json", "link", "ls"])).expect("json");
    assert_eq!(links.len(), 1, "only lo: no half-made veth: {links:?}");
    assert_eq!(
        lab.ok(&["ps", "-a", "-q"]),
        "",
        "failed runs leave no container"
    );
}
