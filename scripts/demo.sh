#!/usr/bin/env bash
# berth's main job, offline, on a fresh Debian 12 machine as root: install what is
# needed, build berth, build a small image from the host's static busybox, import it
# into the store, list it and inspect it, export it and have skopeo read it back.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh
cargo build --quiet -p berth
berth() { ./target/debug/berth "$@"; }
export BERTH_ROOT="${BERTH_ROOT:-/var/lib/berth}"

work=$(mktemp -d /tmp/berth-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "== build an image from /bin/busybox (umoci writes the OCI layout)"
umoci init --layout "$work/layout"
umoci new --image "$work/layout:demo"
umoci unpack --rootless --image "$work/layout:demo" "$work/bundle" >/dev/null
mkdir -p "$work/bundle/rootfs/bin"
cp /bin/busybox "$work/bundle/rootfs/bin/busybox"
for app in sh ls cat echo nc ping ip hostname id; do ln -s busybox "$work/bundle/rootfs/bin/$app"; done
umoci repack --image "$work/layout:demo" "$work/bundle"
umoci config --image "$work/layout:demo" --config.cmd sh --config.env PATH=/bin

echo "== berth import"
berth import --name localhost/busybox:demo "$work/layout"
echo "== berth images"
berth images
echo "== berth inspect"
berth inspect localhost/busybox:demo
echo "== berth export, read back by skopeo"
berth export localhost/busybox:demo "$work/busybox.tar"
skopeo inspect "oci-archive:$work/busybox.tar" | head -n 4
echo "== berth fsck"
berth fsck
