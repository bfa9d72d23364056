#!/usr/bin/env bash
# Issue 7's benchmark: file objects and FUSE. Run as root on a quiet machine:
#   bench/objects.sh [ROUNDS]
# (a) disk used after importing 4 images that hold the same Debian files in different
#     layer splits: berth vs containerd (`ctr images import`, overlayfs), physical blocks
#     of the whole store (`du -sx`: hardlinks once, compressed blobs included for both);
# (b) sequential read of a 1 GiB file and walk+read of 50,000 small files, FUSE view
#     (`berth mount --fuse`) vs a read-only overlay checkout of the same image, page
#     cache dropped before every run;
# (c) from blobs only (`import --no-unpack`) to a mounted view: `mount --fuse`
#     (index-only ingest) vs `checkout --readonly` (full unpack).
# The 4-image set is built from the rootfs of bench/lib/common.sh's Debian image.
source "$(dirname "$0")/lib/common.sh"
ROUNDS=${1:-3}
PARTS=${PARTS:-abc} # which of (a) (b) (c) to run
want() { [[ $PARTS == *$1* ]]; }

# The 4-image set: the Debian rootfs split 4 ways, each an OCI layout tar. Cached.
image_set() { # debian.tar
  local dir="$CACHE/objects-set-v2"
  if [ -s "$dir/s4.tar" ]; then echo "$dir"; return; fi
  mkdir -p "$dir"
  local w; w=$(mktemp -d /var/tmp/berth-set-XXXXXX)
  mkdir "$w/src"; tar -C "$w/src" -xf "$1"
  umoci unpack --image "$w/src:debian" "$w/deb" >/dev/null
  local root="$w/deb/rootfs"
  local splits=("." "usr|etc var|." "usr/lib|." "usr/bin usr/sbin|usr/share|usr/lib|.")
  local i=0
  for split in "${splits[@]}"; do
    i=$((i + 1))
    local l="$w/s$i" b="$w/b$i"
    umoci init --layout "$l" >/dev/null
    umoci new --image "$l:s$i" >/dev/null
    umoci unpack --image "$l:s$i" "$b" >/dev/null
    IFS='|' read -ra groups <<<"$split"
    for g in "${groups[@]}"; do
      # shellcheck disable=SC2086 # a group is a list of paths
      (cd "$root" && cp -a -n --parents $g "$b/rootfs/")
      # --refresh-bundle: each repack adds a layer (without it, umoci replaces the last).
      umoci repack --refresh-bundle --image "$l:s$i" "$b" >/dev/null
    done
    umoci config --image "$l:s$i" --config.cmd /bin/bash >/dev/null
    umoci tag --image "$l:s$i" "docker.io/library/objects-bench:s$i" >/dev/null
    umoci rm --image "$l:s$i" >/dev/null
    umoci gc --layout "$l" >/dev/null
    tar -C "$l" -cf "$dir/s$i.tar.partial" . && mv "$dir/s$i.tar.partial" "$dir/s$i.tar"
  done
  rm -rf "$w"
  echo "$dir"
}

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
bytes() { du -sx --block-size=1 "$1" | cut -f1; }
mib() { echo "scale=1; $1 / 1048576" | bc -l; }

bench_setup
DEBIAN=$(debian_image)
SET=$(image_set "$DEBIAN")
scratch_fs 16G
trap 'containerd_stop; scratch_cleanup' EXIT
wait_quiet
echo "rounds: $ROUNDS, machine: $(nproc) cores, $(uname -r)"

if want a; then
echo "== (a) disk after importing the 4-image set"
R="$SCRATCH/a-berth"
for t in "$SET"/s*.tar; do "$BERTH" --root "$R" import "$t" >/dev/null; done
b_all=$(bytes "$R")
R1="$SCRATCH/a-berth-one"; "$BERTH" --root "$R1" import "$SET/s1.tar" >/dev/null; b_one=$(bytes "$R1")
RF="$SCRATCH/a-berth-fuse"
for i in 1 2 3 4; do
  "$BERTH" --root "$RF" import --no-unpack "$SET/s$i.tar" >/dev/null
  "$BERTH" --root "$RF" mount --fuse "docker.io/library/objects-bench:s$i" "$SCRATCH/a-fuse" >/dev/null
  "$BERTH" --root "$RF" umount "$SCRATCH/a-fuse" >/dev/null
done
b_fuse=$(bytes "$RF")
containerd_start "$SCRATCH/a-ctrd"
for t in "$SET"/s*.tar; do ctr -a "$CTRD_SOCK" -n bench images import --snapshotter overlayfs "$t" >/dev/null; done
containerd_stop
c_all=$(bytes "$SCRATCH/a-ctrd/root")
echo "blobs of the 4 tars: $(mib "$(du -cb "$SET"/s*.tar | tail -1 | cut -f1)") MiB"
echo "berth, 1 image:                 $(mib "$b_one") MiB"
echo "berth, 4 images (layer dirs):   $(mib "$b_all") MiB"
echo "berth, 4 images (index-only):   $(mib "$b_fuse") MiB"
echo "containerd, 4 images:           $(mib "$c_all") MiB"
echo "ratio berth/containerd: $(echo "$b_all / $c_all" | bc -l | cut -c1-5) (index-only $(echo "$b_fuse / $c_all" | bc -l | cut -c1-5))"
rm -rf "$R1"
fi

if want b; then
echo "== (b) reads: FUSE view vs overlay checkout"
R="$SCRATCH/b"; src="$SCRATCH/b-src"
"$BERTH" --root "$R" checkout scratch "$src" >/dev/null
head -c 1G /dev/urandom > "$src/big"
python3 - "$src/small" <<'EOF'
import os, random, sys
random.seed(7)
root = sys.argv[1]
for d in range(100):
    os.makedirs(f"{root}/{d:03}")
    for f in range(500):
        with open(f"{root}/{d:03}/{f:04}", "wb") as fh:
            fh.write(random.randbytes(random.randint(512, 8192)))
EOF
"$BERTH" --root "$R" commit "$src" localhost/readbench:v1 --compression none >/dev/null
"$BERTH" --root "$R" discard "$src" >/dev/null
"$BERTH" --root "$R" checkout --readonly localhost/readbench:v1 "$SCRATCH/b-overlay" >/dev/null
fuse_how=$("$BERTH" --root "$R" mount --fuse localhost/readbench:v1 "$SCRATCH/b-fuse")
echo "$fuse_how"
walk() { find "$1/small" -type f -print0 | xargs -0 cat >/dev/null; }
declare -A big small
for m in overlay fuse; do big[$m]=""; small[$m]=""; done
for r in $(seq "$ROUNDS"); do
  for m in overlay fuse; do
    drop; tb=$(seconds cat "$SCRATCH/b-$m/big"); big[$m]+="$tb "
    drop; ts=$(seconds walk "$SCRATCH/b-$m"); small[$m]+="$ts "
    echo "round $r $m: 1 GiB file ${tb}s, 50,000 files ${ts}s"
  done
done
for m in overlay fuse; do
  bm=$(printf '%s\n' ${big[$m]} | median); sm=$(printf '%s\n' ${small[$m]} | median)
  echo "$m: 1 GiB in ${bm}s ($(echo "1024 / $bm" | bc -l | cut -c1-6) MiB/s); 50,000 files in ${sm}s ($(echo "50000 / $sm" | bc -l | cut -c1-7) files/s)"
  eval "B_$m=$bm S_$m=$sm"
done
echo "FUSE/overlay throughput: big $(echo "$B_overlay / $B_fuse" | bc -l | cut -c1-5), small $(echo "$S_overlay / $S_fuse" | bc -l | cut -c1-5)"
"$BERTH" --root "$R" umount "$SCRATCH/b-fuse" >/dev/null
"$BERTH" --root "$R" discard "$SCRATCH/b-overlay" >/dev/null
fi

if want c; then
echo "== (c) blobs only -> mounted view of the Debian image (3 layers: usr, etc+var, rest)"
name=docker.io/library/objects-bench:s2
f_times=(); u_times=()
for r in $(seq "$ROUNDS"); do
  "$BERTH" --root "$SCRATCH/c-f$r" import --no-unpack "$SET/s2.tar" >/dev/null
  "$BERTH" --root "$SCRATCH/c-u$r" import --no-unpack "$SET/s2.tar" >/dev/null
  drop; t=$(seconds "$BERTH" --root "$SCRATCH/c-f$r" mount --fuse "$name" "$SCRATCH/c-fuse$r"); f_times+=("$t")
  drop; t=$(seconds "$BERTH" --root "$SCRATCH/c-u$r" checkout --readonly "$name" "$SCRATCH/c-co$r"); u_times+=("$t")
  echo "round $r: mount --fuse ${f_times[-1]}s, checkout (unpack) ${u_times[-1]}s"
  "$BERTH" --root "$SCRATCH/c-f$r" umount "$SCRATCH/c-fuse$r" >/dev/null
  "$BERTH" --root "$SCRATCH/c-u$r" discard "$SCRATCH/c-co$r" >/dev/null
done
fm=$(printf '%s\n' "${f_times[@]}" | median); um=$(printf '%s\n' "${u_times[@]}" | median)
echo "median: mount --fuse ${fm}s, full unpack ${um}s, ratio $(echo "$fm / $um" | bc -l | cut -c1-5)"
fi
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
