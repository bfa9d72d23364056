#!/usr/bin/env bash
# Issue 4's benchmark: pull + unpack of the 3-layer Debian image from a local registry,
# berth against `ctr images pull --plain-http` (a private containerd on its own root),
# same machine, same run, each onto a fresh tmpfs so neither pays for the other's
# deletes; and berth's peak memory (/usr/bin/time -v). Then, for issue 7, the time from
# nothing to a mounted view: pull --no-unpack + mount --fuse against pull + checkout.
# Run as root: bench/pull.sh [RUNS]
source "$(dirname "$0")/lib/common.sh"
RUNS=${1:-3}
bench_setup
IMAGE_TAR=$(debian_image)
WORK=$(mktemp -d /var/tmp/berth-bench-pull-XXXXXX)
STATE=$WORK/state; mkdir -p "$STATE"
REG_PID=
cleanup() {
  containerd_stop
  [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null; wait "$REG_PID" 2>/dev/null || true
  grep " $STATE" /proc/self/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# A registry on a free loopback port, seeded by skopeo.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$WORK/registry.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $WORK/registry}}
http: {addr: 127.0.0.1:$PORT}
YML
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 & REG_PID=$!
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break; sleep 0.1; done
IMAGE=127.0.0.1:$PORT/bench/debian:bookworm
skopeo copy --quiet --dest-tls-verify=false "oci-archive:$IMAGE_TAR:debian" "docker://$IMAGE"

fresh() { umount -l "$STATE" 2>/dev/null || true; mount -t tmpfs -o size=6g tmpfs "$STATE"; }
wait_quiet
berth_times=(); ctr_times=(); rss=()
for i in $(seq "$RUNS"); do
  fresh
  containerd_start "$STATE/ctrd"   # started before the clock: only pull+unpack is timed
  ctr_times+=("$(seconds ctr -a "$CTRD_SOCK" -n bench images pull --plain-http "$IMAGE")")
  containerd_stop
  fresh
  berth_times+=("$(seconds /usr/bin/time -v -o "$WORK/time.txt" "$BERTH" --root "$STATE/berth" --run-root "$STATE/run" pull -q "$IMAGE")")
  rss+=("$(awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}' "$WORK/time.txt")")
  echo "run $i: ctr ${ctr_times[-1]} s, berth ${berth_times[-1]} s, berth peak RSS ${rss[-1]} KiB"
done
du -sh "$STATE/berth/blobs" | awk '{print "compressed image size: " $1}'
bm=$(printf '%s\n' "${berth_times[@]}" | median); cm=$(printf '%s\n' "${ctr_times[@]}" | median)
rm_kb=$(printf '%s\n' "${rss[@]}" | median)
echo "median: ctr $cm s, berth $bm s, ratio $(echo "scale=3; $bm / $cm" | bc); berth peak RSS $(echo "$rm_kb / 1024" | bc) MiB"

# From nothing to a mounted view of the pulled image: `pull --no-unpack` then
# `mount --fuse` (each layer streamed once into objects and a tree index, no layer
# dirs) against `pull` (which unpacks while downloading) then `checkout --readonly`.
vb() { "$BERTH" --root "$STATE/v" --run-root "$STATE/vrun" "$@"; }
to_fuse() { vb pull -q --no-unpack "$IMAGE" && vb mount --fuse "$IMAGE" "$STATE/view"; }
to_checkout() { vb pull -q "$IMAGE" && vb checkout --readonly "$IMAGE" "$STATE/view"; }
fuse_times=(); unpack_times=()
for i in $(seq "$RUNS"); do
  fresh; fuse_times+=("$(seconds to_fuse)"); vb umount "$STATE/view" >/dev/null
  fresh; unpack_times+=("$(seconds to_checkout)"); vb discard "$STATE/view" >/dev/null
  echo "run $i: pull --no-unpack + mount --fuse ${fuse_times[-1]} s, pull + checkout --readonly ${unpack_times[-1]} s"
done
fm=$(printf '%s\n' "${fuse_times[@]}" | median); um=$(printf '%s\n' "${unpack_times[@]}" | median)
echo "median to a mounted view: FUSE $fm s, unpack $um s, ratio $(echo "scale=3; $fm / $um" | bc)"
