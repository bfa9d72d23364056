#!/usr/bin/env bash
# Installs every Debian package berth and its tests need. Idempotent; run as root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(
  build-essential pkg-config
  runc crun busybox-static
  docker-registry skopeo umoci containerd
  fuse3 libfuse3-dev iproute2 e2fsprogs
  apache2-utils python3 zstd
  openssl debootstrap time man-db curl
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The Debian docker-registry and containerd packages start services on install
# where systemd runs; berth's tests start their own instances, so stop those.
for svc in docker-registry containerd; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" || true
  fi
done
command -v cargo >/dev/null || { echo "setup: cargo not found (install Rust with rustup)" >&2; exit 1; }
