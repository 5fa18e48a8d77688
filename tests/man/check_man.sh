#!/usr/bin/env bash
# The man pages: each renders with groff without a warning, each generated page names
# every long option its subcommand's --help names, and libsmtpbulk(3) names every
# function of the public headers.
# usage: check_man.sh BUILD_MAN_DIR SOURCE_MAN_DIR SMTPBULK
set -uo pipefail
built=$1 src=$2 bin=$3
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
for page in "$built"/smtpbulk-send.1 "$built"/smtpbulk-load.1 "$built"/smtpbulk-sink.1 \
            "$built"/smtpbulk-enqueue.1 "$src"/libsmtpbulk.3; do
  [ -s "$page" ] || { fail "$page missing"; continue; }
  warn=$(groff -man -Tutf8 -ww -z "$page" 2>&1)
  [ -z "$warn" ] || fail "$page: groff says: $warn"
done
for cmd in send load sink enqueue; do
  page="$built/smtpbulk-$cmd.1"
  [ -s "$page" ] || continue
  text=$(groff -man -Tutf8 "$page" 2>/dev/null | sed 's/\x1b\[[0-9;]*m//g; s/.\x08//g')
  for opt in $("$bin" "$cmd" --help | grep -o -- '--[a-z][a-z0-9-]*' | sort -u); do
    grep -q -- "$opt" <<< "$text" || fail "smtpbulk-$cmd(1) lacks $opt"
  done
done
hdrs="$(dirname "$0")/../../api/include"
for fn in $(grep -ho '^[a-z].* \**\(smtpbulk_[a-z_0-9]*\)(' "$hdrs"/smtpbulk.h "$hdrs"/smtpbulk_send.h | grep -o 'smtpbulk_[a-z_0-9]*(' | tr -d '(' | sort -u); do
  base=${fn#smtpbulk_}
  grep -q -e "$fn" -e "_${base#*_}" "$src/libsmtpbulk.3" || fail "libsmtpbulk(3) lacks $fn"
done
echo "man: $fails problems"
[ "$fails" -eq 0 ]
