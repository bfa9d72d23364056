#!/usr/bin/env bash
# Sets up a Debian 12 machine (as root) and runs berth's whole test suite:
# formatting, lints, the dependency direction between crates, unit tests and the
# end-to-end tests against real runc, overlayfs, skopeo, umoci and registries.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh
export CI="${CI:-false}"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== dependency direction"
bash scripts/check-deps.sh

echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== cargo test"
cargo test --workspace --no-fail-fast
