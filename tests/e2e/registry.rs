//! Distribution against a real registry (Debian's docker-registry): images seeded by
//! skopeo and pulled by berth, pushed by berth and read back by skopeo and containerd,
//! basic and bearer auth, faults (a registry that dies mid-pull, a tampered blob),
//! multi-platform indexes and mirrors.

pub mod harness;

use std::path::Path;
use std::time::Duration;

use harness::{ClientDirs, Proxy, Registry, TokenServer};

use crate::fs_checkout::{assert_same_tree, Checkout};
use crate::fs_fixtures::{rich_layout, umoci_rootfs};
use crate::objects_fuse::FuseMount;
use crate::support::{busybox_layout, host_arch, need_root, raw_layout, sh, Env};

/// The digest skopeo sees for `repo_tag` in `reg`.
fn skopeo_digest(reg: &Registry, repo_tag: &str) -> String {
    sh(&format!(
        "skopeo inspect --raw --tls-verify=false docker://{}/{repo_tag} | sha256sum | cut -d' ' -f1",
        reg.addr()
    ))
    .trim()
    .to_string()
}

/// The second word of berth pull's output line.
fn printed_digest(out: &str) -> String {
    out.split_whitespace().nth(1).unwrap_or("").to_string()
}

/// A registry started for the test, holding the rich fixture image as `rich:v1`: the
/// client dirs, the registry, the fixture's layout and the image's full name.
fn rich_in_registry(env: &Env) -> (ClientDirs, Registry, std::path::PathBuf, String) {
    let dirs = ClientDirs::new(env);
    let reg = Registry::start("");
    let layout = env.path("layout");
    rich_layout(&layout, "rich");
    reg.seed(&layout, "rich", "rich:v1", None);
    let image = format!("{}/rich:v1", reg.addr());
    (dirs, reg, layout, image)
}

#[test]
fn pull_unpacks_like_umoci() {
    need_root();
    let env = Env::new();
    let (dirs, reg, layout, image) = rich_in_registry(&env);
    let out = dirs.ok(&env, &["pull", &image]);
    assert!(out.starts_with(&image), "pull names the image: {out}");
    assert_eq!(
        printed_digest(&out),
        format!("sha256:{}", skopeo_digest(&reg, "rich:v1"))
    );
    let reference = umoci_rootfs(&layout, "rich", &env.path("umoci"));
    {
        let view = Checkout::readonly(&env, &image, "view", &[]);
        assert_same_tree(&view.dir, &reference);
    }
    // Everything is there: a second pull downloads no blob.
    let before = reg.log().matches("/blobs/sha256:").count();
    dirs.ok(&env, &["pull", "--quiet", &image]);
    let after = reg.log().matches("/blobs/sha256:").count();
    assert_eq!(before, after, "a second pull fetched blobs again");
    env.assert_sound();
}

/// `pull --no-unpack` stores blobs only; a FUSE view then shows the image without any
/// layer being unpacked, and a plain checkout unpacks on first use. Both trees equal
/// umoci's.
#[test]
fn pull_without_unpack_then_fuse_view_and_checkout() {
    need_root();
    let env = Env::new();
    // The registry runs until `_registry` drops at the end of the test.
    let (dirs, _registry, layout, image) = rich_in_registry(&env);
    let out = dirs.ok(&env, &["pull", "--no-unpack", "--quiet", &image]);
    assert!(out.starts_with(&image), "pull names the image: {out}");
    let snapshots = env.ok(&["--json", "snapshots"]);
    assert_eq!(snapshots.trim(), "[]", "nothing unpacked: {snapshots}");
    let reference = umoci_rootfs(&layout, "rich", &env.path("umoci"));
    {
        let view = FuseMount::new(&env, &image, "fuse");
        assert_same_tree(&view.dir, &reference);
    }
    assert_eq!(env.ok(&["--json", "snapshots"]).trim(), "[]");
    {
        let view = Checkout::readonly(&env, &image, "view", &[]);
        assert_same_tree(&view.dir, &reference);
    }
    env.assert_sound();
}

#[test]
fn unknown_tag_and_missing_credentials_are_distinct() {
    let env = Env::new();
    let dirs = ClientDirs::new(&env);
    let open = Registry::start("");
    let missing = dirs.fails(&env, &["pull", &format!("{}/nothing:here", open.addr())]);
    assert!(
        missing.contains("has no manifest nothing:here") && missing.contains(&open.addr()),
        "{missing}"
    );
    let locked = htpasswd_registry(&env);
    let layout = env.path("layout");
    busybox_layout(&layout, "bb", &[]);
    locked.seed(&layout, "bb", "bb:v1", Some("alice:s3cret"));
    let denied = dirs.fails(&env, &["pull", &format!("{}/bb:v1", locked.addr())]);
    assert!(
        denied.contains("requires authentication") && denied.contains(&locked.addr()),
        "{denied}"
    );
    assert!(denied.contains("berth login"), "{denied}");
    assert_ne!(
        missing.replace(&open.addr(), ""),
        denied.replace(&locked.addr(), "")
    );
}

fn htpasswd_registry(env: &Env) -> Registry {
    crate::support::need("htpasswd");
    let file = env.path("htpasswd");
    sh(&format!("htpasswd -Bbn alice s3cret > {}", file.display()));
    Registry::start(&format!(
        "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
        file.display()
    ))
}

#[test]
fn basic_auth_login_logout_and_docker_config() {
    let env = Env::new();
    let dirs = ClientDirs::new(&env);
    let reg = htpasswd_registry(&env);
    let layout = env.path("layout");
    busybox_layout(&layout, "bb", &[]);
    reg.seed(&layout, "bb", "bb:v1", Some("alice:s3cret"));
    let image = format!("{}/bb:v1", reg.addr());

    let wrong = dirs.login(&env, &reg.addr(), "alice", "nope");
    assert!(!wrong.status.success());
    let msg = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        msg.contains("rejected the credentials") && msg.contains(&reg.addr()),
        "{msg}"
    );

    let ok = dirs.login(&env, &reg.addr(), "alice", "s3cret");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let config = std::fs::read_to_string(dirs.docker.join("config.json")).expect("config.json");
    assert!(
        config.contains(&reg.addr()) && config.contains("\"auth\""),
        "{config}"
    );
    dirs.ok(&env, &["pull", "-q", &image]);

    dirs.ok(&env, &["logout", &reg.addr()]);
    dirs.ok(&env, &["rmi", &image]);
    dirs.ok(&env, &["gc"]);
    let denied = dirs.fails(&env, &["pull", &image]);
    assert!(denied.contains("requires authentication"), "{denied}");

    // A docker config written by someone else (base64 of alice:s3cret).
    std::fs::write(
        dirs.docker.join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"YWxpY2U6czNjcmV0"}}}}}}"#,
            reg.addr()
        ),
    )
    .expect("write config");
    dirs.ok(&env, &["pull", "-q", &image]);
    env.assert_sound();
}

#[test]
fn bearer_token_flow() {
    let env = Env::new();
    let dirs = ClientDirs::new(&env);
    let tokens = TokenServer::start(&env.path("token"), "tok", "t0ken-pass");
    let reg = Registry::start(&tokens.registry_auth());
    let layout = env.path("layout");
    busybox_layout(&layout, "bb", &[]);
    reg.seed(&layout, "bb", "team/bb:v1", Some("tok:t0ken-pass"));
    let image = format!("{}/team/bb:v1", reg.addr());

    let denied = dirs.fails(&env, &["pull", &image]);
    assert!(
        denied.contains("requires authentication") && denied.contains(&reg.addr()),
        "{denied}"
    );
    let ok = dirs.login(&env, &reg.addr(), "tok", "t0ken-pass");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    tokens.seen.lock().expect("lock").clear();
    dirs.ok(&env, &["pull", "-q", &image]);
    let seen = tokens.seen.lock().expect("lock").clone();
    assert!(
        seen.iter().any(|(q, authed)| *authed
            && q.contains("service=berth-test-registry")
            && q.contains("scope=repository%3Ateam%2Fbb%3Apull")),
        "token requests: {seen:?}"
    );
    // One token serves the whole pull (cached per scope).
    assert_eq!(seen.len(), 1, "token requests: {seen:?}");
    env.assert_sound();
}

#[test]
fn registry_dying_mid_pull_then_resume() {
    let env = Env::new();
    let dirs = ClientDirs::new(&env);
    let mut reg = Registry::start("");
    let layout = env.path("layout");
    raw_layout(&layout, "big", 24 << 20, 7);
    reg.seed(&layout, "big", "big:v1", None);
    let proxy = Proxy::start(reg.port, 8 << 20);
    let image = format!("127.0.0.1:{}/big:v1", proxy.port);
    let layer = layer_digest(&reg, "big:v1");
    let config = config_digest(&reg, "big:v1");

    let child = dirs
        .cmd(&env, &["pull", &image])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_for(|| {
        proxy
            .requests()
            .contains(&format!("GET /v2/big/blobs/{layer}"))
    });
    std::thread::sleep(Duration::from_millis(1200));
    reg.stop();
    let out = child.wait_with_output().expect("wait");
    assert!(
        !out.status.success(),
        "pull should fail when the registry dies"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.trim_end().lines().last().unwrap_or("");
    assert!(
        last.starts_with("berth: ") && last.contains("127.0.0.1"),
        "{err}"
    );
    assert!(env.image_names().is_empty());

    reg.restart();
    proxy.clear();
    dirs.ok(&env, &["pull", "-q", &image]);
    let requests = proxy.requests();
    assert!(
        !requests.contains(&format!("blobs/{config}")),
        "config fetched again:\n{requests}"
    );
    let range = requests
        .split("\r\n\r\n")
        .find(|r| r.contains(&format!("blobs/{layer}")))
        .and_then(|r| {
            r.lines()
                .find(|l| l.to_ascii_lowercase().starts_with("range: bytes="))
        })
        .map(str::to_string);
    let start: u64 = range
        .as_deref()
        .and_then(|r| r.trim_end_matches('-').rsplit('=').next())
        .and_then(|n| n.trim_end_matches('-').parse().ok())
        .unwrap_or_else(|| panic!("the layer was not resumed with Range:\n{requests}"));
    assert!(start > 0, "resumed from {start}");
    env.assert_sound();
}

fn wait_for(cond: impl Fn() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("condition not met in time");
}

/// The manifest as the registry serves it (skopeo may recompress layers on the way in).
fn manifest_of(reg: &Registry, repo_tag: &str) -> serde_json::Value {
    let raw = sh(&format!(
        "skopeo inspect --raw --tls-verify=false docker://{}/{repo_tag}",
        reg.addr()
    ));
    serde_json::from_str(&raw).expect("manifest json")
}

fn layer_digest(reg: &Registry, repo_tag: &str) -> String {
    manifest_of(reg, repo_tag)["layers"][0]["digest"]
        .as_str()
        .expect("layer")
        .to_string()
}

fn config_digest(reg: &Registry, repo_tag: &str) -> String {
    manifest_of(reg, repo_tag)["config"]["digest"]
        .as_str()
        .expect("config")
        .to_string()
}

#[test]
fn tampered_blob_is_refused_and_nothing_is_stored() {
    let env = Env::new();
    let dirs = ClientDirs::new(&env);
    let reg = Registry::start("");
    let layout = env.path("layout");
    raw_layout(&layout, "t", 256 << 10, 3);
    reg.seed(&layout, "t", "t:v1", None);
    let layer = layer_digest(&reg, "t:v1");
    let file = reg.blob_file(&layer);
    let mut bytes = std::fs::read(&file).expect("blob on the registry's disk");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&file, bytes).expect("tamper");
    let err = dirs.fails(&env, &["pull", &format!("{}/t:v1", reg.addr())]);
    assert!(
        err.contains("digest mismatch") && err.contains(&layer),
        "{err}"
    );
    assert!(env.image_names().is_empty());
    assert!(!env
        .root()
        .join("blobs/sha256")
        .join(layer.trim_start_matches("sha256:"))
        .exists());
    let ingests = std::fs::read_dir(env.root().join("ingest"))
        .expect("ingest")
        .count();
    assert_eq!(ingests, 0, "a refused download leaves nothing in ingest/");
}

#[test]
fn multi_platform_index_pulls_host_by_default_and_others_on_request() {
    need_root();
    let env = Env::new();
    let dirs = ClientDirs::new(&env);
    let reg = Registry::start("");
    let layout = env.path("layout");
    let other = if host_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    busybox_layout(&layout, "host", &[("which", "host")]);
    busybox_layout(&layout, "other", &[("which", "other")]);
    sh(&format!(
        "umoci config --image {}:other --architecture {other}",
        layout.display()
    ));
    add_index(&layout, "multi", &[("host", host_arch()), ("other", other)]);
    reg.seed(&layout, "multi", "multi:v1", None);
    let image = format!("{}/multi:v1", reg.addr());

    dirs.ok(&env, &["pull", "-q", &image]);
    {
        let co = Checkout::readonly(&env, &image, "host", &[]);
        assert_eq!(
            std::fs::read_to_string(co.dir.join("which")).expect("which"),
            "host"
        );
    }
    let plat = format!("linux/{other}");
    let out = dirs.ok(&env, &["pull", "-q", "--platform", &plat, &image]);
    assert_eq!(
        printed_digest(&out),
        format!("sha256:{}", skopeo_digest(&reg, "multi:v1"))
    );
    let dir = env.path("other");
    let dir = dir.to_str().expect("utf8");
    env.ok(&["checkout", "--readonly", "--platform", &plat, &image, dir]);
    let which = std::fs::read_to_string(env.path("other/which"));
    env.ok(&["discard", dir]);
    assert_eq!(which.expect("which"), "other");
    env.assert_sound();
}

/// Adds an index named `name` over the layout's tags, with the given architectures.
pub fn add_index(layout: &Path, name: &str, tags: &[(&str, &str)]) {
    use sha2::{Digest, Sha256};
    let path = layout.join("index.json");
    let mut top: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("index")).expect("json");
    let entries = top["manifests"].as_array().expect("manifests").clone();
    let manifests: Vec<serde_json::Value> = tags
        .iter()
        .map(|(tag, arch)| {
            let d = entries
                .iter()
                .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == *tag)
                .expect("tag in layout");
            serde_json::json!({"mediaType": d["mediaType"], "digest": d["digest"], "size": d["size"],
                "platform": {"os": "linux", "architecture": arch}})
        })
        .collect();
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests});
    let bytes = index.to_string().into_bytes();
    let hex = hex::encode(Sha256::digest(&bytes));
    std::fs::write(layout.join("blobs/sha256").join(&hex), &bytes).expect("blob");
    top["manifests"]
        .as_array_mut()
        .expect("manifests")
        .push(serde_json::json!({
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": format!("sha256:{hex}"),
        "size": bytes.len(), "annotations": {"org.opencontainers.image.ref.name": name}}));
    std::fs::write(&path, top.to_string()).expect("index");
}

#[test]
fn mirrors_are_tried_in_order_before_the_registry() {
    let env = Env::new();
    let dirs = ClientDirs::new(&env);
    let upstream = Registry::start("");
    let mirror = Registry::start("");
    let layout = env.path("layout");
    busybox_layout(&layout, "bb", &[]);
    mirror.seed(&layout, "bb", "bb:v1", None);
    let dead = harness::free_port();
    std::fs::write(
        dirs.berth.join("hosts.toml"),
        format!(
            "[hosts.\"{}\"]\nmirrors = [\"http://127.0.0.1:{dead}\", \"http://{}\"]\n",
            upstream.addr(),
            mirror.addr()
        ),
    )
    .expect("hosts.toml");
    // Only the mirror has the image: the pull succeeds through it.
    dirs.ok(&env, &["pull", "-q", &format!("{}/bb:v1", upstream.addr())]);
    assert!(mirror.log().contains("/v2/bb/manifests/v1"));
    env.assert_sound();
}

#[test]
fn push_round_trip_with_skopeo_and_containerd() {
    need_root();
    let env = Env::new();
    let dirs = ClientDirs::new(&env);
    let reg = Registry::start("");
    let layout = env.path("layout");
    busybox_layout(&layout, "bb", &[]);
    env.ok(&[
        "import",
        "--name",
        "localhost/bb:v1",
        layout.to_str().expect("utf8"),
    ]);
    let image = format!("{}/pushed:v1", reg.addr());
    {
        let co = Checkout::new(&env, "localhost/bb:v1", "work", &[]);
        std::fs::write(co.dir.join("note"), "committed by berth").expect("write");
        // Random bytes do not compress: the layer exceeds one chunk and goes up in PATCHes.
        let mut x = 0x9e3779b97f4a7c15u64;
        let noise: Vec<u8> = (0..12 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(co.dir.join("noise.bin"), noise).expect("write");
        co.berth(&["commit", co.path(), &image, "-m", "push test"]);
    }
    let out = dirs.ok(&env, &["push", "-q", &image]);
    let digest = printed_digest(&out);
    assert_eq!(
        digest,
        format!("sha256:{}", skopeo_digest(&reg, "pushed:v1"))
    );
    assert!(
        reg.log().contains("method=PATCH"),
        "large blob uploaded in chunks"
    );

    // Pushing the same image again sends nothing new; to another repository it mounts.
    let patches = reg.log().matches("method=PATCH").count();
    dirs.ok(&env, &["push", "-q", &image]);
    let other = format!("{}/other:v2", reg.addr());
    dirs.ok(&env, &["push", "-q", &image, &other]);
    assert_eq!(
        patches,
        reg.log().matches("method=PATCH").count(),
        "no blob uploaded twice"
    );
    assert_eq!(
        skopeo_digest(&reg, "other:v2"),
        digest.trim_start_matches("sha256:")
    );

    // skopeo copies it into an OCI layout with the same manifest digest.
    let copy = env.path("copy");
    sh(&format!(
        "skopeo copy --quiet --src-tls-verify=false docker://{image} oci:{}:x",
        copy.display()
    ));
    let index = std::fs::read_to_string(copy.join("index.json")).expect("index");
    assert!(index.contains(&digest), "{index}");

    // containerd pulls and unpacks it.
    let ctrd = crate::support::Containerd::start();
    let pulled = ctrd.ctr(&["images", "pull", "--plain-http", &image]);
    assert!(
        pulled.status.success(),
        "ctr pull: {}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    let ls = String::from_utf8_lossy(&ctrd.ctr(&["images", "ls"]).stdout).into_owned();
    assert!(ls.contains(&digest), "{ls}");

    // And berth pulls it back into a fresh store.
    let env2 = Env::new();
    let out2 = dirs.ok(&env2, &["pull", "-q", &image]);
    assert_eq!(printed_digest(&out2), digest);
    env2.assert_sound();
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl.
fn make_certs(dir: &Path) {
    crate::support::need("openssl");
    sh(&format!(
        "set -e; cd {}
         openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=berth-test-ca -keyout ca.key -out ca.pem 2>/dev/null
         openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr 2>/dev/null
         printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > server.ext
         openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.pem 2>/dev/null
         openssl req -newkey rsa:2048 -nodes -subj /CN=berth-client -keyout client.key -out client.csr 2>/dev/null
         printf 'extendedKeyUsage=clientAuth\\n' > client.ext
         openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile client.ext -out client.pem 2>/dev/null
         mkdir -p skopeo-certs && cp client.pem skopeo-certs/client.cert && cp client.key skopeo-certs/client.key && cp ca.pem skopeo-certs/ca.crt",
        dir.display()
    ));
}

/// A TLS registry that requires client certificates: hosts.toml settings decide whether
/// berth can talk to it (CA file, skip_verify, client cert and key, plain_http).
#[test]
fn tls_registry_with_ca_skip_verify_and_client_certs() {
    let env = Env::new();
    let dirs = ClientDirs::new(&env);
    let certs = env.path("certs");
    std::fs::create_dir_all(&certs).expect("mkdir");
    make_certs(&certs);
    let c = |f: &str| certs.join(f).display().to_string();
    let tls = format!(
        "  tls:\n    certificate: {}\n    key: {}\n    clientcas:\n      - {}\n",
        c("server.pem"),
        c("server.key"),
        c("ca.pem")
    );
    let reg = Registry::start(&tls);
    let layout = env.path("layout");
    busybox_layout(&layout, "bb", &[]);
    sh(&format!(
        "skopeo copy --quiet --dest-cert-dir {} oci:{}:bb docker://{}/tls/bb:v1",
        c("skopeo-certs"),
        layout.display(),
        reg.addr()
    ));
    let image = format!("{}/tls/bb:v1", reg.addr());
    let hosts = dirs.berth.join("hosts.toml");
    let write_hosts = |body: &str| {
        std::fs::write(&hosts, format!("[hosts.\"{}\"]\n{body}", reg.addr())).expect("hosts.toml")
    };

    // Loopback means plain HTTP by default: the TLS server cannot answer that.
    let err = dirs.fails(&env, &["pull", "-q", &image]);
    assert!(err.contains(&reg.addr()), "{err}");
    // HTTPS without our CA: the certificate is not trusted.
    write_hosts("plain_http = false\n");
    let err = dirs.fails(&env, &["pull", "-q", &image]);
    assert!(
        err.to_lowercase().contains("certificate") || err.to_lowercase().contains("tls"),
        "{err}"
    );
    // Trusted CA but no client certificate: the server refuses the handshake.
    write_hosts(&format!("plain_http = false\nca = \"{}\"\n", c("ca.pem")));
    dirs.fails(&env, &["pull", "-q", &image]);
    // CA and client certificate: works.
    write_hosts(&format!(
        "plain_http = false\nca = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
        c("ca.pem"),
        c("client.pem"),
        c("client.key")
    ));
    let out = dirs.ok(&env, &["pull", "-q", &image]);
    assert!(out.starts_with(&image), "{out}");
    // skip_verify instead of the CA: also works, and the store is sound.
    env.ok(&["rmi", &image]);
    write_hosts(&format!(
        "plain_http = false\nskip_verify = true\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
        c("client.pem"),
        c("client.key")
    ));
    dirs.ok(&env, &["pull", "-q", &image]);
    env.assert_sound();
    // --plain-http overrides the file for one command, and fails against TLS.
    dirs.fails(&env, &["pull", "-q", "--plain-http", &image]);
}

/// Progress: plain state lines on stderr when it is not a terminal, bars on a terminal,
/// nothing with -q; stdout is always the one result line.
#[test]
fn pull_progress_plain_lines_bars_and_quiet() {
    let env = Env::new();
    let dirs = ClientDirs::new(&env);
    let reg = Registry::start("");
    let layout = env.path("layout");
    busybox_layout(&layout, "bb", &[]);
    reg.seed(&layout, "bb", "progress/bb:v1", None);
    let image = format!("{}/progress/bb:v1", reg.addr());
    let out = dirs.cmd(&env, &["pull", &image]).output().expect("pull");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for state in ["downloading", "unpacking", "done"] {
        assert!(
            stderr.lines().any(|l| l.ends_with(&format!(": {state}"))),
            "{state}:\n{stderr}"
        );
    }
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    env.ok(&["rmi", &image]);
    env.ok(&["gc"]);
    // On a terminal: indicatif bars (drawn with the bar characters), driven through script(1).
    let script = format!(
        "BERTH_ROOT={} BERTH_RUN={} BERTH_CONFIG={} DOCKER_CONFIG={} {} pull {image}",
        env.root().display(),
        env.path("run").display(),
        dirs.berth.display(),
        dirs.docker.display(),
        crate::support::berth_bin()
    );
    let tty = sh(&format!("script -qec '{script}' /dev/null"));
    assert!(tty.contains("done") && tty.contains('['), "{tty}");
    env.ok(&["rmi", &image]);
    env.ok(&["gc"]);
    let quiet = dirs
        .cmd(&env, &["pull", "-q", &image])
        .output()
        .expect("pull");
    assert!(
        quiet.status.success() && quiet.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&quiet.stderr)
    );
}

#[test]
fn an_index_without_usable_entries_is_one_clear_line() {
    let env = Env::new();
    let dirs = ClientDirs::new(&env);
    let reg = Registry::start("");
    let index = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    sh(&format!(
        "curl -sf -X PUT -H 'Content-Type: application/vnd.oci.image.index.v1+json' --data-binary '{index}' http://{}/v2/empty/manifests/v1",
        reg.addr()
    ));
    let image = format!("{}/empty:v1", reg.addr());
    let err = dirs.fails(&env, &["pull", "--all-platforms", &image]);
    assert!(err.contains("lists no image manifests"), "{err}");
    let err = dirs.fails(&env, &["pull", &image]);
    assert!(err.contains("no manifest for platform"), "{err}");
    assert!(env.image_names().is_empty());
    env.assert_sound();
}

#[test]
fn login_asks_for_the_password_without_echoing_it() {
    use std::io::{Read, Write};
    let env = Env::new();
    let dirs = ClientDirs::new(&env);
    let reg = htpasswd_registry(&env);
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let slave = std::fs::File::from(pty.slave);
    let mut child = dirs
        .cmd(&env, &["login", &reg.addr(), "-u", "alice"])
        .stdin(slave.try_clone().expect("dup"))
        .stdout(slave.try_clone().expect("dup"))
        .stderr(slave)
        .spawn()
        .expect("spawn login");
    let mut master = std::fs::File::from(pty.master);
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("Password: ") {
        let n = master.read(&mut buf).expect("read prompt");
        assert!(n > 0, "no prompt: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    std::thread::sleep(Duration::from_millis(200)); // the echo goes off after the prompt
    master.write_all(b"s3cret\n").expect("type the password");
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
    }
    let status = child.wait().expect("wait");
    let shown = String::from_utf8_lossy(&seen);
    assert!(status.success(), "{shown}");
    assert!(shown.contains("Login succeeded"), "{shown}");
    assert!(
        !shown.contains("s3cret"),
        "the password was echoed: {shown:?}"
    );
}
