#!/usr/bin/env bash
# Issue 5's benchmark: start-to-exit time of a container running `true` from a busybox
# image. `berth run --rm IMAGE true` (snapshot, bundle, supervisor, runc create/start/
# delete, removal) against the floor `runc run` of a ready bundle, `crun run` of the same
# bundle, and `ctr run --rm` through a private containerd, all in the same run on a fresh
# ext4. Run as root: bench/run.sh [ITERATIONS]
source "$(dirname "$0")/lib/common.sh"
N=${1:-30}
bench_setup
scratch_fs 2G
# Run state on tmpfs (/run), as in real use: berth's run root and the runtimes' roots.
RUNS=$(mktemp -d /run/berth-bench-XXXXXX)
trap 'containerd_stop; scratch_cleanup; rm -rf "$RUNS"' EXIT
S=$SCRATCH

# The image: static busybox, made by umoci; the same layout feeds berth and containerd.
umoci init --layout "$S/layout" >/dev/null
umoci new --image "$S/layout:bb" >/dev/null
umoci unpack --image "$S/layout:bb" "$S/mk" >/dev/null
mkdir -p "$S/mk/rootfs/bin"; cp /bin/busybox "$S/mk/rootfs/bin/"
for a in sh true; do ln -sf busybox "$S/mk/rootfs/bin/$a"; done
umoci repack --image "$S/layout:bb" "$S/mk" >/dev/null
umoci config --image "$S/layout:bb" --config.cmd sh --config.env PATH=/bin >/dev/null
tar -C "$S/layout" -cf "$S/bb.tar" .

# The floor: a ready bundle (rootfs already on disk, config.json from `runc spec`).
umoci unpack --image "$S/layout:bb" "$S/bundle" >/dev/null
(cd "$S/bundle" && rm -f config.json && runc spec && python3 - <<'EOF'
import json
c = json.load(open("config.json"))
c["process"]["terminal"] = False
c["process"]["args"] = ["true"]
json.dump(c, open("config.json", "w"))
EOF
)
# crun refuses this host's hybrid cgroups unless /sys/fs/cgroup/unified is hidden
# (MACHINE-NOTES); berth's driver does the same for crun, in-process.
CRUN="unshare -m --propagation slave sh -c 'umount -l /sys/fs/cgroup/unified 2>/dev/null; exec crun --root $RUNS/crun run -b $S/bundle bench-crun'"

export BERTH_ROOT="$S/berth" BERTH_RUN="$RUNS/berth"
"$BERTH" import --name localhost/bb:bench "$S/layout" >/dev/null
containerd_start "$S/ctrd"
CTR="ctr -a $CTRD_SOCK -n bench"
$CTR images import --index-name localhost/bb:bench "$S/bb.tar" >/dev/null

echo "iterations: $N, machine: $(nproc) cores, $(runc --version | head -1), $(crun --version | head -1), containerd $(containerd --version | awk '{print $3}')"
hyperfine -N --warmup 3 --runs "$N" --export-json "$S/results.json" \
  -n "runc run (floor)" "runc --root $RUNS/runc run -b $S/bundle bench-runc" \
  -n "crun run" "$CRUN" \
  -n "berth run --rm" "$BERTH run --rm localhost/bb:bench true" \
  -n "ctr run --rm" "$CTR run --rm localhost/bb:bench bench-ctr true" >/dev/null

python3 - "$S/results.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
floor = r[0]["median"]
print(f"{'':18} {'mean ms':>9} {'median ms':>10} {'× runc':>7}")
for x in r:
    print(f"{x['command']:18} {x['mean']*1000:9.1f} {x['median']*1000:10.1f} {x['median']/floor:7.2f}")
EOF
left=$("$BERTH" ps -aq | wc -l); mounts=$(grep -c " $RUNS" /proc/self/mountinfo || true)
echo "left behind: $left containers, $mounts mounts"
