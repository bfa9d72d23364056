#!/usr/bin/env bash
# berth's main job, offline, on a fresh Debian 12 machine as root: install what is
# needed, build berth, build an image from the host's static busybox the git way
# (checkout scratch, copy, commit), import one made by umoci, list, inspect, export.
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
