//! Registry test harness: Debian's `docker-registry` on a free loopback port with its
//! own storage, a throttling proxy that records requests, and a bearer-token server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tempfile::TempDir;

use crate::support::{need, sh, Env};

/// A free loopback port (bound and released; the registry takes it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A running `docker-registry`, stopped on drop.
pub struct Registry {
    pub dir: TempDir,
    pub port: u16,
    auth: String,
    child: Option<Child>,
}

impl Registry {
    /// Starts a registry; `auth` is extra YAML for its `auth:` section (or "").
    pub fn start(auth: &str) -> Self {
        need("docker-registry");
        let dir = tempfile::Builder::new()
            .prefix("berth-registry-")
            .tempdir()
            .expect("tempdir");
        let mut r = Registry {
            dir,
            port: free_port(),
            auth: auth.to_string(),
            child: None,
        };
        r.launch();
        r
    }

    fn launch(&mut self) {
        let config = self.dir.path().join("config.yml");
        let yaml = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{}\n{}",
            self.dir.path().join("data").display(),
            self.port,
            self.auth
        );
        std::fs::write(&config, yaml).expect("registry config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("registry.log"))
            .expect("log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        self.child = Some(child);
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("docker-registry did not come up:\n{}", self.log());
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the registry (as a crash would).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and storage.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Where the registry keeps a blob's bytes.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Copies `layout:tag` to `repo_tag` in this registry with skopeo.
    pub fn seed(&self, layout: &Path, tag: &str, repo_tag: &str, creds: Option<&str>) {
        need("skopeo");
        let creds = creds
            .map(|c| format!("--dest-creds {c}"))
            .unwrap_or_default();
        sh(&format!(
            "skopeo copy --all --quiet --dest-tls-verify=false {creds} oci:{}:{tag} docker://{}/{repo_tag}",
            layout.display(),
            self.addr()
        ));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Private client settings for berth: docker config dir and berth config dir.
pub struct ClientDirs {
    pub docker: PathBuf,
    pub berth: PathBuf,
}

impl ClientDirs {
    pub fn new(env: &Env) -> Self {
        let d = ClientDirs {
            docker: env.path("docker-config"),
            berth: env.path("berth-config"),
        };
        std::fs::create_dir_all(&d.docker).expect("mkdir");
        std::fs::create_dir_all(&d.berth).expect("mkdir");
        d
    }

    /// A berth command with these dirs.
    pub fn cmd(&self, env: &Env, args: &[&str]) -> Command {
        let mut c = env.cmd(args);
        c.env("DOCKER_CONFIG", &self.docker)
            .env("BERTH_CONFIG", &self.berth);
        c
    }

    /// Runs berth, expects success, returns stdout.
    pub fn ok(&self, env: &Env, args: &[&str]) -> String {
        let out = self.cmd(env, args).output().expect("spawn berth");
        assert!(
            out.status.success(),
            "berth {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs berth, expects failure with one `berth: ` line; returns it.
    pub fn fails(&self, env: &Env, args: &[&str]) -> String {
        let out = self.cmd(env, args).output().expect("spawn berth");
        let err = String::from_utf8_lossy(&out.stderr).trim_end().to_string();
        assert!(!out.status.success(), "berth {args:?} should have failed");
        let last = err.lines().last().unwrap_or("").to_string();
        assert!(last.starts_with("berth: "), "error line: {err}");
        last
    }

    /// `berth login` with the password on stdin.
    pub fn login(&self, env: &Env, registry: &str, user: &str, pass: &str) -> std::process::Output {
        let mut child = self
            .cmd(env, &["login", registry, "-u", user, "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn login");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{pass}\n").as_bytes())
            .expect("write password");
        child.wait_with_output().expect("login")
    }
}

/// A TCP proxy in front of a registry: records what clients send (request heads),
/// throttles what comes back, and can be told to cut every connection.
pub struct Proxy {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// Forwards 127.0.0.1:<new port> to `upstream`, at most `bytes_per_sec` back.
    pub fn start(upstream: u16, bytes_per_sec: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let p = Proxy {
            port,
            requests: Arc::default(),
            stop: Arc::default(),
            conns: Arc::default(),
        };
        let (requests, stop, conns) = (p.requests.clone(), p.stop.clone(), p.conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue; // upstream down: the client sees the connection close
                };
                for s in [&client, &server] {
                    conns.lock().expect("lock").extend(s.try_clone().ok());
                }
                let (c2, s2) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                let log = requests.clone();
                std::thread::spawn(move || pipe(client, server, Some(log), 0));
                std::thread::spawn(move || pipe(s2, c2, None, bytes_per_sec));
            }
        });
        p
    }

    /// Everything clients sent so far (request lines and headers).
    pub fn requests(&self) -> String {
        String::from_utf8_lossy(&self.requests.lock().expect("lock")).into_owned()
    }

    pub fn clear(&self) {
        self.requests.lock().expect("lock").clear();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        for c in self.conns.lock().expect("lock").drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, log: Option<Arc<Mutex<Vec<u8>>>>, rate: usize) {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(l) = &log {
            l.lock().expect("lock").extend_from_slice(&buf[..n]);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        if rate > 0 {
            std::thread::sleep(Duration::from_secs_f64(n as f64 / rate as f64));
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

/// A token server for registry `auth: token:`: issues RS256 JWTs (signed with openssl,
/// certificate in the `x5c` header) to `user:pass`, for the scopes asked.
pub struct TokenServer {
    pub port: u16,
    pub dir: PathBuf,
    /// Query strings of token requests, with whether basic credentials came along.
    pub seen: Arc<Mutex<Vec<(String, bool)>>>,
    stop: Arc<AtomicBool>,
}

impl TokenServer {
    pub fn start(dir: &Path, user: &str, pass: &str) -> Self {
        need("openssl");
        std::fs::create_dir_all(dir).expect("mkdir");
        sh(&format!(
            "cd {} && openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 2 -subj /CN=berth-test-token 2>/dev/null && openssl x509 -in cert.pem -outform DER -out cert.der",
            dir.display()
        ));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let t = TokenServer {
            port,
            dir: dir.to_path_buf(),
            seen: Arc::default(),
            stop: Arc::default(),
        };
        let (seen, stop, dir) = (t.seen.clone(), t.stop.clone(), dir.to_path_buf());
        let expected = format!("Basic {}", b64std(format!("{user}:{pass}").as_bytes()));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(c) = conn {
                    serve_token(c, &dir, &expected, &seen);
                }
            }
        });
        t
    }

    /// The registry's `auth:` YAML for this server.
    pub fn registry_auth(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: berth-test-registry\n    issuer: berth-test-issuer\n    rootcertbundle: {}\n",
            self.port,
            self.dir.join("cert.pem").display()
        )
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve_token(mut c: TcpStream, dir: &Path, expected: &str, seen: &Mutex<Vec<(String, bool)>>) {
    let mut reader = BufReader::new(c.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let target = line.split(' ').nth(1).unwrap_or("").to_string();
    let mut authorized = false;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("authorization") && v.trim() == expected {
                authorized = true;
            }
        }
    }
    let query = target
        .split_once('?')
        .map(|(_, q)| q.to_string())
        .unwrap_or_default();
    seen.lock().expect("lock").push((query.clone(), authorized));
    let (status, body) = if authorized {
        (
            "200 OK",
            format!("{{\"token\":\"{}\",\"expires_in\":300}}", jwt(dir, &query)),
        )
    } else {
        (
            "401 Unauthorized",
            "{\"details\":\"bad credentials\"}".to_string(),
        )
    };
    let _ = write!(
        c,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// An RS256 JWT granting the scopes in `query`.
fn jwt(dir: &Path, query: &str) -> String {
    let mut access = Vec::new();
    let mut service = String::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        if k == "service" {
            service = v;
        } else if k == "scope" {
            let parts: Vec<&str> = v.split(':').collect();
            if parts.len() >= 3 {
                let actions: Vec<&str> = parts[parts.len() - 1].split(',').collect();
                let name = parts[1..parts.len() - 1].join(":");
                access
                    .push(serde_json::json!({"type": parts[0], "name": name, "actions": actions}));
            }
        }
    }
    let cert = std::fs::read(dir.join("cert.der")).expect("cert");
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [b64std(&cert)]});
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let claims = serde_json::json!({
        "iss": "berth-test-issuer", "sub": "tester", "aud": service,
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", access.len()),
        "access": access,
    });
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let unsigned = dir.join(format!("input-{}", std::process::id()));
    std::fs::write(&unsigned, &input).expect("write");
    let sig = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(dir.join("key.pem"))
        .arg(&unsigned)
        .output()
        .expect("openssl");
    format!("{input}.{}", b64(&sig.stdout))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let h = u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?');
                out.push(h);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
fn b64std(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// URL-safe base64 without padding (JWT).
fn b64(data: &[u8]) -> String {
    b64std(data)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}
