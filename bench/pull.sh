#!/usr/bin/env bash
# Pull + unpack of a 3-layer Debian image from a local registry: berth vs
# `ctr images pull --plain-http` (a private containerd on its own root), same machine,
# same run, both onto a fresh tmpfs so neither pays for the other's deletes.
# Also berth's peak memory (/usr/bin/time -v). Usage: bench/pull.sh [runs]
set -euo pipefail
RUNS=${1:-3}
HERE=$(cd "$(dirname "$0")/.." && pwd)
WORK=${BENCH_DIR:-/var/tmp/berth-bench-pull}
BERTH=${BERTH_BIN:-$HERE/target/release/berth}
[ -x "$BERTH" ] || (cd "$HERE" && cargo build --release -p berth -q)
mkdir -p "$WORK"

# 1. The image: debootstrap minbase, split into 3 layers (usr / etc+var / the rest), cached.
LAYOUT=$WORK/layout
if [ ! -f "$LAYOUT/index.json" ]; then
  rm -rf "$WORK/rootfs" "$WORK/bundle" "$LAYOUT"
  debootstrap --variant=minbase bookworm "$WORK/rootfs" >/dev/null
  rm -f "$WORK"/rootfs/var/cache/apt/archives/*.deb "$WORK"/rootfs/var/lib/apt/lists/*_Packages
  umoci init --layout "$LAYOUT" && umoci new --image "$LAYOUT:debian"
  umoci unpack --image "$LAYOUT:debian" "$WORK/bundle" >/dev/null
  cp -a "$WORK/rootfs/usr" "$WORK/bundle/rootfs/"
  umoci repack --refresh-bundle --image "$LAYOUT:debian" "$WORK/bundle"
  cp -a "$WORK/rootfs/etc" "$WORK/rootfs/var" "$WORK/bundle/rootfs/"
  umoci repack --refresh-bundle --image "$LAYOUT:debian" "$WORK/bundle"
  for e in "$WORK"/rootfs/*; do
    case "$(basename "$e")" in usr|etc|var) ;; *) cp -a "$e" "$WORK/bundle/rootfs/" ;; esac
  done
  umoci repack --refresh-bundle --image "$LAYOUT:debian" "$WORK/bundle"
  rm -rf "$WORK/rootfs" "$WORK/bundle"
fi

# 2. A registry on a free loopback port, seeded by skopeo.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REG=$WORK/registry; rm -rf "$REG"; mkdir -p "$REG"
cat > "$REG/config.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $REG/data}}
http: {addr: 127.0.0.1:$PORT}
YML
docker-registry serve "$REG/config.yml" >"$REG/log" 2>&1 & REG_PID=$!
STATE=$WORK/state; mkdir -p "$STATE"
CTRD_PID=
cleanup() {
  [ -n "$CTRD_PID" ] && kill "$CTRD_PID" 2>/dev/null && wait "$CTRD_PID" 2>/dev/null
  kill "$REG_PID" 2>/dev/null || true
  grep " $STATE" /proc/self/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
}
trap cleanup EXIT
sleep 1
IMAGE=127.0.0.1:$PORT/bench/debian:bookworm
skopeo copy --quiet --dest-tls-verify=false "oci:$LAYOUT:debian" "docker://$IMAGE"

fresh() { umount -l "$STATE" 2>/dev/null || true; mount -t tmpfs -o size=6g tmpfs "$STATE"; }
now() { date +%s.%N; }

berth_times=(); ctr_times=(); rss=()
for i in $(seq "$RUNS"); do
  # containerd: daemon started before the clock, pull+unpack timed.
  fresh
  containerd --root "$STATE/ctrd/root" --state "$STATE/ctrd/state" --address "$STATE/ctrd.sock" >/dev/null 2>&1 & CTRD_PID=$!
  for _ in $(seq 100); do ctr -a "$STATE/ctrd.sock" version >/dev/null 2>&1 && break; sleep 0.1; done
  t0=$(now); ctr -a "$STATE/ctrd.sock" -n bench images pull --plain-http "$IMAGE" >/dev/null; t1=$(now)
  ctr_times+=("$(echo "$t1 - $t0" | bc)")
  kill "$CTRD_PID"; wait "$CTRD_PID" 2>/dev/null || true; CTRD_PID=
  # berth: pull+unpack into a fresh store.
  fresh
  t0=$(now)
  /usr/bin/time -v -o "$STATE/time.txt" "$BERTH" --root "$STATE/berth" --run-root "$STATE/run" pull -q "$IMAGE" >/dev/null
  t1=$(now)
  berth_times+=("$(echo "$t1 - $t0" | bc)")
  rss+=("$(awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}' "$STATE/time.txt")")
  [ "$i" = "$RUNS" ] && du -sh "$STATE/berth/blobs" | awk '{print "compressed image size: " $1}'
done
umount -l "$STATE" 2>/dev/null || true

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
bm=$(median "${berth_times[@]}"); cm=$(median "${ctr_times[@]}"); rm_kb=$(median "${rss[@]}")
echo "runs: $RUNS"
echo "containerd (ctr images pull --plain-http): ${ctr_times[*]} s; median $cm s"
echo "berth pull:                                ${berth_times[*]} s; median $bm s"
echo "ratio berth/containerd: $(echo "scale=2; $bm / $cm" | bc)"
echo "berth peak RSS: ${rss[*]} KiB; median $((rm_kb / 1024)) MiB"
