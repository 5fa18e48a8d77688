#!/usr/bin/env bash
# The Perl module (bindings/perl) beside the C facade and smtpbulk load, with the same
# settings — 10 connections, Pipeline 2, 1,000-byte messages — against Postfix's
# smtp-sink and against our sink, the three clients taking turns run after run (the
# median of ROUNDS is reported), so a machine that gets busier weighs on all alike.
# /usr/bin/time gives wall time and CPU (user + system: the engine's threads included)
# of the client process. Then perf (when there is one) says where the Perl run's CPU
# goes, by library.
#
# Usage: bench/perl.sh [MESSAGES] [ROUNDS]   (default 20000 and 3)
# Writes bench/results/perl.csv and prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
ROUNDS=${2:-3}
SIZE=1000 THREADS=10 PIPELINE=2
. bench/lib.sh
bench_prepare
cmake --build --preset release --target smtpbulk >/dev/null
tmp=$(mktemp -d)
trap 'stop_sink; rm -rf "$tmp"' EXIT

# The library as a user installs it, the module built against it, the facade program.
cmake --install build/release --prefix "$tmp/prefix" >/dev/null
libdir=$(dirname "$(find "$tmp/prefix" -name libsmtpbulk.so | head -1)")
cp -r bindings/perl "$tmp/perl"
(cd "$tmp/perl" && PKG_CONFIG_PATH="$libdir/pkgconfig" perl Makefile.PL >/dev/null && make >/dev/null)
cc -O2 -o "$tmp/facade_send" bench/facade_send.c -I"$tmp/prefix/include" -L"$libdir" -lsmtpbulk
export LD_LIBRARY_PATH=$libdir
perl_cmd=(perl -I"$tmp/perl/blib/lib" -I"$tmp/perl/blib/arch" bench/perl_send.pl)

csv=bench/results/perl.csv
echo "server,client,round,messages,elapsed_s,msgs_per_s,cpu_us_per_msg" > "$csv"
one() { # server client round
  local server=$1 client=$2 round=$3 tf out
  start_server "$server"
  tf=$(mktemp) out=$(mktemp)
  case $client in
    load) /usr/bin/time -o "$tf" -f "%e %U %S" "$b" load -q -P "$PIPELINE" -s "$THREADS" \
            -m "$N" -l "$SIZE" "127.0.0.1:$port" >"$out" 2>&1 ;;
    facade) /usr/bin/time -o "$tf" -f "%e %U %S" "$tmp/facade_send" "127.0.0.1:$port" "$N" \
              "$SIZE" "$THREADS" "$PIPELINE" >"$out" 2>&1 ;;
    perl) /usr/bin/time -o "$tf" -f "%e %U %S" "${perl_cmd[@]}" 127.0.0.1 "$port" "$N" \
            "$SIZE" "$THREADS" "$PIPELINE" >"$out" 2>&1 ;;
  esac || echo "warning: $client exited non-zero: $(head -c 300 "$out")" >&2
  stop_sink
  read -r el us sy < <(tail -1 "$tf")
  rm -f "$tf" "$out"
  awk -v sv="$server" -v c="$client" -v r="$round" -v n="$N" -v el="$el" -v us="$us" -v sy="$sy" \
    'BEGIN { printf "%s,%s,%d,%d,%.2f,%.0f,%.2f\n", sv, c, r, n, el, n / el, (us + sy) / n * 1e6 }' >> "$csv"
}

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (before the run, $(nproc) CPUs)" >&2
for server in smtp-sink smtpbulk-sink; do
  for round in $(seq "$ROUNDS"); do
    for client in load facade perl; do one "$server" "$client" "$round"; done
  done
done

echo "| server | client | msgs/s | CPU µs/msg | CPU vs facade |"
echo "| --- | --- | --- | --- | --- |"
python3 - "$csv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
med = {}
for r in rows:
    k = (r["server"], r["client"])
    med.setdefault(k, []).append((float(r["msgs_per_s"]), float(r["cpu_us_per_msg"])))
for server in ("smtp-sink", "smtpbulk-sink"):
    fac = statistics.median(c for _, c in med[(server, "facade")])
    for client in ("load", "facade", "perl"):
        v = med[(server, client)]
        rate, cpu = statistics.median(r for r, _ in v), statistics.median(c for _, c in v)
        print(f"| {server} | {client} | {rate:,.0f} | {cpu:.1f} | {cpu / fac:.2f}x |")
PY

# Where the Perl run's CPU goes, by library (all threads), against our sink.
if command -v perf >/dev/null && perf record -q -o "$tmp/p.data" -- true 2>/dev/null; then
  start_server smtpbulk-sink
  perf record -q -g -o "$tmp/p.data" -- "${perl_cmd[@]}" 127.0.0.1 "$port" "$N" "$SIZE" \
    "$THREADS" "$PIPELINE" >/dev/null 2>&1 || true
  stop_sink
  echo
  echo "Perl run's samples by library (perf, all threads):"
  perf report -q -i "$tmp/p.data" --no-children --sort dso 2>/dev/null | grep '%' | grep -v -- '--' | head -8
  echo "Top symbols:"
  perf report -q -i "$tmp/p.data" --no-children --sort dso,sym 2>/dev/null | grep '%' | grep -v -- '--' | head -15
fi
