#!/usr/bin/env bash
# SESSIONS (default 10,000) sessions from smtpbulk load to smtpbulk sink (separate
# processes, so each needs only that many files), and the client's resident memory per
# idle connection: RSS with SESSIONS idle sessions minus with 10, sampled mid-run under
# a slow --rate so the connections sit idle; then a run of 200,000 messages over them.
# Usage: bench/scale.sh (SESSIONS=N to change the count).
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SESSIONS:-10000}
cmake --preset release >/dev/null && cmake --build --preset release --target smtpbulk_cli >/dev/null
b=./build/release/smtpbulk
tmp=$(mktemp -d)
. bench/lib.sh
trap 'stop_sink; rm -rf "$tmp"' EXIT
ulimit -n "$(ulimit -Hn)"  # as many files as the hard limit allows: S sockets each side
start_server smtpbulk-sink --threads 2 --json > "$tmp/sink.out"
rss_at() { # sessions [load options]: VmRSS after 3.5 s of a 5 s run at 20 msgs/s
  local n=$1; shift
  $b load -q -s "$n" --rate 20 --duration 5 --json "$@" "127.0.0.1:$port" > "$tmp/l.$n.json" & local lp=$!
  sleep 3.5; awk '/VmRSS/ {print $2}' "/proc/$lp/status"; wait "$lp" || true
}
for recv in pooled plain; do
  opt=(); [ $recv = plain ] && opt=(--plain-recv)
  r10=$(rss_at 10 "${opt[@]}"); rs=$(rss_at "$S" "${opt[@]}")
  echo "client RSS ($recv receives): 10 sessions $r10 KB, $S sessions $rs KB => $(( (rs - r10) * 1024 / (S - 10) )) bytes per idle connection"
done
/usr/bin/time -f "client max RSS %M KB" $b load -s "$S" -m 200000 --json "127.0.0.1:$port"
stop_sink
cat "$tmp/sink.out"
