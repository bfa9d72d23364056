#!/usr/bin/env bash
# berth's main job, offline, on a fresh Debian 12 machine as root: install what is
# needed, build berth, build an image from the host's static busybox the git way
# (checkout scratch, copy, commit), run containers from it, and join two of them in
# two network namespaces with a veth pair; then import, inspect and export images.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh
cargo build --quiet -p berth
berth() { ./target/debug/berth "$@"; }
export BERTH_ROOT="${BERTH_ROOT:-/var/lib/berth}"

work=$(mktemp -d /tmp/berth-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "== build an image from /bin/busybox: checkout scratch, copy, status, commit"
berth checkout scratch "$work/rootfs"
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc"
cp /bin/busybox "$work/rootfs/bin/busybox"
for app in sh ls cat echo nc ping ip hostname id sleep; do ln -s busybox "$work/rootfs/bin/$app"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/rootfs/etc/passwd"
berth status "$work/rootfs" | head -n 5
berth commit "$work/rootfs" localhost/busybox:demo -m "busybox from the host" \
  --change 'CMD ["sh"]' --change 'ENV PATH=/bin'
berth discard "$work/rootfs"

echo "== change it in a checkout and commit again"
berth checkout localhost/busybox:demo "$work/work"
echo "hello from berth" > "$work/work/etc/motd"
berth status "$work/work"
berth commit "$work/work" localhost/busybox:motd -m "add a motd"
berth log localhost/busybox:motd
berth discard "$work/work"

echo "== run a container from the image, and one straight from a checkout"
berth run --rm --hostname demo localhost/busybox:motd sh -c 'echo "hello from $(hostname)"; cat /etc/motd'
berth checkout localhost/busybox:motd "$work/live"
berth run --rm "$work/live" sh -c 'echo built-inside > /made-in-container'
berth status "$work/live" | grep made-in-container

echo "== two containers in two network namespaces joined by a veth pair"
cleanup_net() { berth rm -f demo-server >/dev/null 2>&1 || true; berth net ns del demo-a 2>/dev/null || true; berth net ns del demo-b 2>/dev/null || true; }
trap 'cleanup_net; berth discard "$work/live" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
cleanup_net
berth net ns add demo-a >/dev/null
berth net ns add demo-b >/dev/null
berth net --netns demo-a link add veth-a type veth peer veth-b netns demo-b
berth net --netns demo-a addr add 10.123.0.1/24 dev veth-a
berth net --netns demo-b addr add 10.123.0.2/24 dev veth-b
berth net --netns demo-a link set veth-a up
berth net --netns demo-b link set veth-b up
berth run -d --name demo-server --net ns:demo-a --stdout "$work/server.out" localhost/busybox:motd \
  sh -c '(echo "hello from the server in demo-a"; sleep 1) | nc -l -p 7000'
for _ in $(seq 50); do
  reply=$(berth run --rm --net ns:demo-b localhost/busybox:motd sh -c '(echo "hello from the client in demo-b"; sleep 1) | nc -w 3 10.123.0.1 7000' || true)
  [ -n "$reply" ] && break; sleep 0.1
done
echo "client got: $reply"
berth wait demo-server >/dev/null
echo "server got: $(cat "$work/server.out")"
berth run --rm --net ns:demo-b localhost/busybox:motd ping -c 1 10.123.0.1 | tail -n 2
berth ps -a
cleanup_net
berth discard "$work/live"

echo "== import an image another tool wrote (umoci)"
umoci init --layout "$work/layout"
umoci new --image "$work/layout:other"
umoci unpack --rootless --image "$work/layout:other" "$work/bundle" >/dev/null
mkdir -p "$work/bundle/rootfs/bin" && cp /bin/busybox "$work/bundle/rootfs/bin/"
umoci repack --image "$work/layout:other" "$work/bundle"
berth import --name localhost/umoci-made:v1 "$work/layout"

echo "== berth images / inspect"
berth images
berth inspect localhost/busybox:motd
echo "== berth export, read back by skopeo"
berth export localhost/busybox:motd "$work/busybox.tar"
skopeo inspect "oci-archive:$work/busybox.tar" | head -n 4
echo "== berth fsck"
berth fsck
