# Shared helpers for berth's benchmarks. Source it; needs root.
set -euo pipefail
shopt -s inherit_errexit
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
CACHE=${BERTH_BENCH_CACHE:-/var/cache/berth-bench}
mkdir -p "$CACHE"

bench_setup() {
  bash "$REPO/scripts/setup-debian.sh"
  local need=()
  for p in debootstrap hyperfine time; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
  done
  if [ ${#need[@]} -gt 0 ]; then apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; fi
  # BERTH_BIN: benchmark another build (say, an older commit's) on the same footing.
  if [ -z "${BERTH_BIN:-}" ]; then (cd "$REPO" && cargo build --release --quiet -p berth); fi
  BERTH="${BERTH_BIN:-$REPO/target/release/berth}"
}

# A fresh ext4 on a loop device, so both tools run on the same steady filesystem
# (the machine's root ext4 slows down for a while after mass deletes).
SCRATCH_IMG=""; SCRATCH=""
scratch_fs() { # size
  SCRATCH_IMG=$(mktemp /var/tmp/berth-bench-XXXXXX.img)
  truncate -s "${1:-8G}" "$SCRATCH_IMG"
  mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$SCRATCH_IMG"
  SCRATCH=$(mktemp -d /mnt/berth-bench-XXXXXX)
  mount -o loop "$SCRATCH_IMG" "$SCRATCH"
}
scratch_cleanup() {
  [ -n "$SCRATCH" ] || return 0
  grep -o " $SCRATCH[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  umount -l "$SCRATCH" 2>/dev/null || true
  rmdir "$SCRATCH" 2>/dev/null || true
  rm -f "$SCRATCH_IMG"
}

# A private containerd on its own root, state and socket.
CTRD_PID=""; CTRD_SOCK=""
containerd_start() { # dir
  local d=$1; mkdir -p "$d"
  printf 'version = 2\n' > "$d/config.toml"
  CTRD_SOCK="$d/containerd.sock"
  containerd --config "$d/config.toml" --root "$d/root" --state "$d/state" --address "$CTRD_SOCK" >"$d/log" 2>&1 &
  CTRD_PID=$!
  for _ in $(seq 100); do ctr -a "$CTRD_SOCK" version >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "containerd did not start" >&2; return 1
}
containerd_stop() {
  [ -n "$CTRD_PID" ] || return 0
  kill "$CTRD_PID" 2>/dev/null || true; wait "$CTRD_PID" 2>/dev/null || true; CTRD_PID=""
}

# Seconds (float) a command takes.
# Wall time of one command, whole process (fork + exec + run). Read with bash's
# $EPOCHREALTIME: `$(date)` would add two process starts (~1–2 ms here) to every figure.
seconds() { local s e; s=$EPOCHREALTIME; "$@" >/dev/null; e=$EPOCHREALTIME; echo "$e - $s" | bc -l; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# The Debian image: debootstrap'd bookworm minbase split into 3 layers (usr; var+etc;
# the rest), as an OCI layout tar written by umoci. Cached.
debian_image() {
  local out="$CACHE/debian-3layers.tar"
  if [ -s "$out" ]; then echo "$out"; return; fi
  local w; w=$(mktemp -d /var/tmp/berth-debian-XXXXXX)
  debootstrap --variant=minbase bookworm "$w/rootfs" >/dev/null 2>&1 || debootstrap --variant=minbase bookworm "$w/rootfs" http://deb.debian.org/debian >/dev/null
  rm -f "$w"/rootfs/var/cache/apt/archives/*.deb "$w"/rootfs/var/lib/apt/lists/*_Packages
  umoci init --layout "$w/layout" >/dev/null
  umoci new --image "$w/layout:debian" >/dev/null
  umoci unpack --image "$w/layout:debian" "$w/bundle" >/dev/null
  cp -a "$w/rootfs/usr" "$w/bundle/rootfs/"
  umoci repack --refresh-bundle --image "$w/layout:debian" "$w/bundle" >/dev/null
  cp -a "$w/rootfs/var" "$w/rootfs/etc" "$w/bundle/rootfs/"
  umoci repack --refresh-bundle --image "$w/layout:debian" "$w/bundle" >/dev/null
  (cd "$w/rootfs" && for e in *; do [ "$e" = usr ] || [ "$e" = var ] || [ "$e" = etc ] || cp -a "$e" "$w/bundle/rootfs/"; done)
  umoci repack --refresh-bundle --image "$w/layout:debian" "$w/bundle" >/dev/null
  umoci config --image "$w/layout:debian" --config.cmd /bin/bash >/dev/null
  umoci gc --layout "$w/layout"
  umoci tag --image "$w/layout:debian" docker.io/library/debian-bench:3layers >/dev/null
  tar -C "$w/layout" -cf "$out.partial" . && mv "$out.partial" "$out"
  rm -rf "$w"
  echo "$out"
}

# Waits (up to 30 min) for load < 0.5 and no rustc; prints the load it started at.
wait_quiet() {
  for _ in $(seq 360); do
    local load; load=$(cut -d' ' -f1 /proc/loadavg)
    if [ "$(echo "$load < 0.5" | bc -l)" = 1 ] && ! pgrep -x rustc >/dev/null; then
      echo "quiet: load $load"; return 0
    fi
    sleep 5
  done
  echo "machine never became quiet (load $(cut -d' ' -f1 /proc/loadavg))" >&2; return 1
}
