#!/usr/bin/env bash
# Install the build tree into a scratch prefix, then build and run a consumer that finds
# it with find_package(smtpbulk) and with pkg-config; check the .so exports only the API.
# usage: check_install.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
so=$(find "$tmp/prefix" -name "libsmtpbulk.so" | head -1)
extra=$(nm -D --defined-only "$so" | awk '{print $3}' | grep -v '^smtpbulk_' | grep -v '^SMTPBULK_' || true)
if [ -n "$extra" ]; then echo "exported beyond the API: $extra"; exit 1; fi
libdir=$(dirname "$so")
cmake -S "$src/tests/install/consumer" -B "$tmp/consumer" -G Ninja \
  -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
PKG_CONFIG_PATH="$libdir/pkgconfig" cmake --build "$tmp/consumer" >/dev/null
# The pkg-config file was configured for the real prefix; point the loader at ours.
LD_LIBRARY_PATH="$libdir" "$tmp/consumer/by_cmake"
LD_LIBRARY_PATH="$libdir" "$tmp/consumer/by_pkgconfig"
"$tmp/consumer/by_cmake_static"
echo "install: find_package, pkg-config and static link ok; exports only smtpbulk_*"
