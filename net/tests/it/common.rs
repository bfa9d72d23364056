//! Test fixture: a private netns directory per test, unique names, cleanup
//! through Drop and an explicit check that nothing was left behind.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use berth_net::{Handle, Netns, NetnsDir};
use tempfile::TempDir;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A test's namespaces, under a temp dir, all named with one unique tag.
pub struct Lab {
    pub dir: TempDir,
    pub netns: NetnsDir,
    pub tag: String,
    made: Vec<String>,
}

impl Lab {
    /// `None` when not root outside CI (skip); panics when not root in CI.
    pub fn new() -> Option<Lab> {
        if !nix::unistd::geteuid().is_root() {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("berth-net tests need root (CAP_NET_ADMIN, CAP_SYS_ADMIN); CI=true so this fails");
            }
            eprintln!("skipping: berth-net tests need root");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("berth-net-test")
            .tempdir()
            .expect("temp dir");
        let netns = NetnsDir::new(dir.path());
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let tag = format!("t{:x}x{:x}", std::process::id(), n);
        assert!(tag.len() <= 11, "tag {tag} leaves room for a role suffix");
        Some(Lab {
            dir,
            netns,
            tag,
            made: Vec::new(),
        })
    }

    /// A unique name for a link or namespace with a short role suffix.
    pub fn name(&self, role: &str) -> String {
        let name = format!("{}{role}", self.tag);
        assert!(name.len() <= 15, "{name} too long");
        name
    }

    /// Creates a namespace named after `role`, with loopback up.
    pub fn ns(&mut self, role: &str) -> Netns {
        let name = self.name(role);
        let ns = self.netns.create(&name).expect("create netns");
        self.made.push(name);
        Handle::open(Some(&ns))
            .expect("handle")
            .loopback_up()
            .expect("lo up");
        ns
    }

    /// Deletes everything and checks no namespace, link or mount of this test remains.
    pub fn finish(mut self) {
        for name in std::mem::take(&mut self.made) {
            self.netns.delete(&name).expect("delete netns");
        }
        assert_eq!(self.netns.list().expect("list"), Vec::<String>::new());
        assert_clean(
            &self.tag,
            self.dir.path().to_str().expect("utf-8 temp path"),
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for name in &self.made {
            let _ = self.netns.delete(name);
        }
    }
}

/// No link named with `tag` in the test's own namespace, no mount under `mount_prefix`.
pub fn assert_clean(tag: &str, mount_prefix: &str) {
    let links = Handle::open(None)
        .expect("host handle")
        .links()
        .expect("links");
    let leaked: Vec<_> = links.iter().filter(|l| l.name.starts_with(tag)).collect();
    assert!(
        leaked.is_empty(),
        "links left in the host namespace: {leaked:?}"
    );
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let left: Vec<_> = mountinfo
        .lines()
        .filter(|l| l.contains(mount_prefix))
        .collect();
    assert!(left.is_empty(), "mounts left: {left:?}");
}

/// Listens on `server_ip` inside `server`, connects from inside `client`,
/// and checks bytes go both ways and the peer address is `client_ip`.
pub fn tcp_roundtrip(server: &Netns, server_ip: IpAddr, client: &Netns, client_ip: IpAddr) {
    let listener = server
        .run(|| TcpListener::bind((server_ip, 0)))
        .expect("join server ns")
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let mut conn = client
        .run(|| connect_retry(addr))
        .expect("join client ns")
        .unwrap_or_else(|e| panic!("connect {addr} from {}: {e}", client.name()));
    let (mut served, peer) = listener.accept().expect("accept");
    assert_eq!(peer.ip(), client_ip);
    for s in [&conn, &served] {
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
    }
    conn.write_all(b"ping").expect("write");
    let mut buf = [0u8; 4];
    served.read_exact(&mut buf).expect("read ping");
    assert_eq!(&buf, b"ping");
    served.write_all(b"pong").expect("write");
    conn.read_exact(&mut buf).expect("read pong");
    assert_eq!(&buf, b"pong");
}

/// Connects, retrying for a few seconds while links come up.
fn connect_retry(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// The (dev, inode) of the calling thread's network namespace.
pub fn own_netns_id() -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata("/proc/thread-self/ns/net").expect("stat own netns");
    (m.dev(), m.ino())
}
