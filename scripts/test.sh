#!/usr/bin/env bash
# Quick start, part 2: install what is missing, then build and run the whole test suite
# under each preset given (default: release and asan). Every engine test runs on the
# io_uring and the epoll backend.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
presets=("$@")
[ ${#presets[@]} -eq 0 ] && presets=(release asan)
for p in "${presets[@]}"; do
  echo "== preset $p" >&2
  cmake --preset "$p" >/dev/null
  cmake --build --preset "$p"
  ctest --preset "$p"
done
