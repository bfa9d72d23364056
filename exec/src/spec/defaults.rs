//! containerd's default Linux spec (oci/spec.go, oci/mounts.go), written out so a reader
//! can compare it line by line.

use oci_spec::runtime::{
    Capability, LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType, Mount, MountBuilder,
};

use super::{NetworkMode, SpecError};

/// PATH set when neither the image nor the user gives one.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// containerd's default capabilities (bounding = permitted = effective).
pub const DEFAULT_CAPS: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Every capability oci-spec knows, for `--cap-add ALL` and `--privileged`.
pub const ALL_CAPS: [&str; 41] = [
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETGID",
    "SETFCAP",
    "SETPCAP",
    "SETUID",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "SYSLOG",
    "WAKE_ALARM",
];

/// Paths containerd hides from containers.
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths containerd makes read-only in containers.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Normalizes `net_admin` / `CAP_NET_ADMIN` to `NET_ADMIN`.
pub fn normalize_cap(name: &str) -> String {
    let upper = name.trim().to_ascii_uppercase();
    upper.strip_prefix("CAP_").unwrap_or(&upper).to_string()
}

/// Turns a normalized name into oci-spec's value; unknown names are errors.
pub fn capability(name: &str) -> Result<Capability, SpecError> {
    if !ALL_CAPS.contains(&name) {
        return Err(SpecError::UnknownCapability(name.to_string()));
    }
    serde_json::from_value(serde_json::Value::String(format!("CAP_{name}")))
        .map_err(|_| SpecError::UnknownCapability(name.to_string()))
}

fn mount(dst: &str, kind: &str, src: &str, opts: &[&str]) -> Mount {
    MountBuilder::default()
        .destination(dst)
        .typ(kind)
        .source(src)
        .options(opts.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
        .expect("static mount is valid")
}

/// The default mounts; `/sys` is read-only unless the container is privileged.
pub fn default_mounts(sys_readonly: bool) -> Vec<Mount> {
    let mut sys = vec!["nosuid", "noexec", "nodev"];
    sys.push(if sys_readonly { "ro" } else { "rw" });
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount("/sys", "sysfs", "sysfs", &sys),
        mount(
            "/run",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
    ]
}

/// pid ipc uts mount network (+ cgroup on a cgroup2-only host), network per `net`.
pub fn namespaces(net: &NetworkMode, cgroup_ns: bool) -> Vec<LinuxNamespace> {
    let ns = |typ, path: Option<&std::path::Path>| {
        let b = LinuxNamespaceBuilder::default().typ(typ);
        let b = match path {
            Some(p) => b.path(p),
            None => b,
        };
        b.build().expect("namespace is valid")
    };
    let mut out = vec![
        ns(LinuxNamespaceType::Pid, None),
        ns(LinuxNamespaceType::Ipc, None),
        ns(LinuxNamespaceType::Uts, None),
        ns(LinuxNamespaceType::Mount, None),
    ];
    match net {
        NetworkMode::New => out.push(ns(LinuxNamespaceType::Network, None)),
        NetworkMode::Host => {}
        NetworkMode::Path(p) => out.push(ns(LinuxNamespaceType::Network, Some(p))),
    }
    if cgroup_ns {
        out.push(ns(LinuxNamespaceType::Cgroup, None));
    }
    out
}

/// Whether /sys/fs/cgroup is a pure cgroup2 mount (then containers get a cgroup namespace).
pub fn host_is_cgroup2_only() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}
