#!/usr/bin/env bash
# Install the build tree into a scratch prefix, then build and run a consumer that finds
# it with find_package(smtpbulk) and with pkg-config; check that both installed libraries
# export only the API: the .so through its version script, the .a through the one
# partially linked object it holds.
# usage: check_install.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
so=$(find "$tmp/prefix" -name "libsmtpbulk.so" | head -1)
libdir=$(dirname "$so")
a="$libdir/libsmtpbulk.a"
[ -f "$a" ] || { echo "no libsmtpbulk.a next to $so"; exit 1; }

# Every defined global symbol: smtpbulk_*, and for the .so its version node SMTPBULK_0.1.
check_exports() { # what, nm arguments...
  local what=$1
  shift
  local syms extra
  syms=$(nm "$@" | awk 'NF == 3 { sub(/@.*/, "", $3); print $3 }')
  if ! grep -qx 'smtpbulk_version' <<<"$syms"; then
    echo "$what: smtpbulk_version not exported"
    exit 1
  fi
  extra=$(grep -v '^smtpbulk_' <<<"$syms" | grep -v '^SMTPBULK_[0-9.]*$' || true)
  if [ -n "$extra" ]; then
    echo "$what exports beyond the API ($(wc -l <<<"$extra") symbols):" $extra
    exit 1
  fi
  echo "$what: $(wc -l <<<"$syms") global symbols, none outside the API"
}
check_exports "libsmtpbulk.so (dynamic)" -D --defined-only "$so"
check_exports "libsmtpbulk.so" -g --defined-only "$so"
check_exports "libsmtpbulk.a" -g --defined-only "$a"
if nm -g --defined-only "$a" | awk 'NF == 3 { print $3 }' | grep -q '^SMTPBULK_'; then
  echo "libsmtpbulk.a: unexpected SMTPBULK_ symbol"
  exit 1
fi

cmake -S "$src/tests/install/consumer" -B "$tmp/consumer" -G Ninja \
  -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
PKG_CONFIG_PATH="$libdir/pkgconfig" cmake --build "$tmp/consumer" >/dev/null
# The pkg-config file was configured for the real prefix; point the loader at ours.
LD_LIBRARY_PATH="$libdir" "$tmp/consumer/by_cmake"
LD_LIBRARY_PATH="$libdir" "$tmp/consumer/by_pkgconfig"
# The static ones run without the loader finding any libsmtpbulk.so, and need none.
for exe in by_cmake_static own_names_static; do
  if readelf -d "$tmp/consumer/$exe" | grep -q 'libsmtpbulk'; then
    echo "$exe: links libsmtpbulk.so, not the archive"
    exit 1
  fi
  "$tmp/consumer/$exe"
done
echo "install: find_package, pkg-config and static link ok; both libraries export only smtpbulk_*"
