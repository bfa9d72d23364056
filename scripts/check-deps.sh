#!/usr/bin/env bash
# Keeps the crate graph honest (see ARCHITECTURE.md): the CLI stands on berth-core only;
# the core on cas, fs, exec and net; exec may use only berth-mount of ours and must not
# pull storage, FUSE or HTTP code; fs, net and cas use nothing of ours beyond berth-mount.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
deny() { # crate, pattern of forbidden dependencies (matched against "name vX.Y")
  local bad
  bad=$(cargo tree -q -e normal -p "$1" --prefix none | tail -n +2 | grep -E "$2" | sort -u || true)
  if [ -n "$bad" ]; then echo "$1 must not depend on: $bad"; fail=1; fi
}
deny_direct() { # crate, pattern of forbidden direct dependencies
  local bad
  bad=$(cargo tree -q -e normal -p "$1" --prefix none --depth 1 | tail -n +2 | grep -E "$2" | sort -u || true)
  if [ -n "$bad" ]; then echo "$1 must not depend directly on: $bad"; fail=1; fi
}
deny berth-mount '^(berth-|rusqlite|fuser|reqwest|ureq|hyper)'
deny berth-exec  '^(berth-(cas|fs|net|core) |rusqlite|libsqlite3|fuser|reqwest|ureq|hyper)'
deny berth-net   '^(berth-|rusqlite|fuser|reqwest|ureq|hyper)'
deny berth-cas   '^berth-(fs|exec|net|mount|core) '
deny berth-fs    '^berth-(cas|exec|net|core) '
deny berth-core  '^(tokio|tonic|hyper) '
deny_direct berth '^berth-(cas|fs|exec|net|mount) '
[ $fail -eq 0 ] && echo "crate dependencies point one way"
exit $fail
