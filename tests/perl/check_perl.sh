#!/usr/bin/env bash
# The Perl module as a user builds it: install the library into a scratch prefix
# (cmake --install), then `perl Makefile.PL && make && make test` in a copy of
# bindings/perl, finding the library with pkg-config; its tests start their own peers.
# Under a sanitizer build the library needs the sanitizer's runtime loaded first into
# perl, which is not built with it: LD_PRELOAD, and leak checks off (perl frees
# nothing at exit by design), and a small quarantine, so freed memory is reused as
# without ASan and the flat-memory test still means something.
# usage: check_perl.sh BUILD_DIR SOURCE_DIR SMTPBULK_BIN
set -euo pipefail
build=$1 src=$2 bin=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
so=$(find "$tmp/prefix" -name "libsmtpbulk.so" | head -1)
libdir=$(dirname "$so")
# The sources only, whatever a local build left beside them.
mkdir "$tmp/perl"
(cd "$src/bindings/perl" && cp -r Makefile.PL Bulk.xs lib t "$tmp/perl/")
cd "$tmp/perl"
# The POD of each package is well formed (perldoc shows what the tests check).
for pm in $(find lib -name '*.pm'); do podchecker "$pm" 2>&1 | grep 'pod syntax OK' >/dev/null ||
  { podchecker "$pm"; exit 1; }; done
PKG_CONFIG_PATH="$libdir/pkgconfig" perl Makefile.PL >/dev/null
make >/dev/null
export LD_LIBRARY_PATH="$libdir" SMTPBULK_BIN="$bin"
export SMTPBULK_CERTS_SCRIPT="$src/tests/support/make_certs.sh"
export SMTPBULK_AIOSMTPD="$src/tests/support/aiosmtpd_peer.py"
# (grep reads it all: with -q, nm could die of SIGPIPE and pipefail say "no")
if nm -D "$so" | grep __asan_init >/dev/null; then
  export LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0:quarantine_size_mb=8
elif nm -D "$so" | grep __tsan_init >/dev/null; then
  export LD_PRELOAD=$(gcc -print-file-name=libtsan.so)
  export TSAN_OPTIONS="suppressions=$src/tests/tsan.supp ${TSAN_OPTIONS:-}"
fi
make test
