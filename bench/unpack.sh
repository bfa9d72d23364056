#!/usr/bin/env bash
# Issue 3's benchmark: unpack of a 3-layer Debian image (berth import vs `ctr images
# import`, both unpacking to overlay snapshots), checkout time, and commit time for a
# growing number of changed files. Run as root: bench/unpack.sh [ROUNDS]
source "$(dirname "$0")/lib/common.sh"
ROUNDS=${1:-3}
bench_setup
IMAGE=$(debian_image)
scratch_fs 8G
trap 'containerd_stop; scratch_cleanup' EXIT
wait_quiet
echo "image: $IMAGE ($(du -h "$IMAGE" | cut -f1)), rounds: $ROUNDS, machine: $(nproc) cores"

berth_times=(); ctr_times=()
for r in $(seq "$ROUNDS"); do
  sync; echo 3 > /proc/sys/vm/drop_caches
  t=$(seconds "$BERTH" --root "$SCRATCH/berth-$r" import "$IMAGE"); berth_times+=("$t")
  containerd_start "$SCRATCH/ctrd-$r"
  sync; echo 3 > /proc/sys/vm/drop_caches
  t=$(seconds ctr -a "$CTRD_SOCK" -n bench images import --snapshotter overlayfs "$IMAGE"); ctr_times+=("$t")
  containerd_stop
  echo "round $r: berth ${berth_times[-1]}s  ctr ${ctr_times[-1]}s"
done
bm=$(printf '%s\n' "${berth_times[@]}" | median); cm=$(printf '%s\n' "${ctr_times[@]}" | median)
echo "unpack median: berth ${bm}s, ctr ${cm}s, ratio $(echo "$bm / $cm" | bc -l | cut -c1-5)"

R="$SCRATCH/berth-1"
co_times=()
for i in $(seq 20); do
  d="$SCRATCH/co-$i"
  t=$(seconds "$BERTH" --root "$R" checkout docker.io/library/debian-bench:3layers "$d"); co_times+=("$t")
  "$BERTH" --root "$R" discard "$d" >/dev/null
done
echo "checkout median: $(printf '%s\n' "${co_times[@]}" | median)s over 20 (includes process start)"

# A tiny image for contrast: the commit cost should follow the change, not the image.
d="$SCRATCH/small"; "$BERTH" --root "$R" checkout scratch "$d" >/dev/null
mkdir -p "$d/bin"; cp /bin/busybox "$d/bin/"; "$BERTH" --root "$R" commit "$d" localhost/small:bench >/dev/null
"$BERTH" --root "$R" discard "$d" >/dev/null
for base in localhost/small:bench docker.io/library/debian-bench:3layers; do
  for n in 10 1000 10000; do
    d="$SCRATCH/commit-$n"
    "$BERTH" --root "$R" checkout "$base" "$d" >/dev/null
    mkdir -p "$d/changes"; for i in $(seq "$n"); do head -c 1024 /dev/urandom > "$d/changes/f$i"; done
    sync
    t=$(seconds "$BERTH" --root "$R" commit "$d" "localhost/c$n:bench")
    echo "commit of $n changed files on $base: ${t}s"
    "$BERTH" --root "$R" discard "$d" >/dev/null
  done
done
