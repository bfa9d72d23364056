#!/usr/bin/env bash
# Builds berth (release) and installs it as root: the binary in $PREFIX/bin, man pages
# in $PREFIX/share/man/man1 (`man berth`, `man berth-commit`, ...), and bash
# completions. PREFIX defaults to /usr/local.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
cargo build --release --quiet -p berth
install -D -m 0755 target/release/berth "$PREFIX/bin/berth"
"$PREFIX/bin/berth" manpages "$PREFIX/share/man/man1" >/dev/null
mkdir -p "$PREFIX/share/bash-completion/completions"
"$PREFIX/bin/berth" completion bash > "$PREFIX/share/bash-completion/completions/berth"
command -v mandb >/dev/null && mandb -q 2>/dev/null || true
echo "installed $PREFIX/bin/berth, its man pages and bash completions"
