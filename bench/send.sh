#!/usr/bin/env bash
# smtpbulk send beside smtpbulk load, in one run, against our sink: what reading a
# JSONL manifest (half inline "raw", half "file" paths to messages on disk) and writing
# the journal cost in throughput, and whether peak memory stays flat as the manifest
# grows (100,000 vs 1,000,000 lines).
#
# Rows, each against a fresh `smtpbulk sink --threads 1` on loopback, the same sessions,
# window and 1,000-byte messages:
#   load          smtpbulk load -m N (synthetic messages: the engine's ceiling here)
#   send          smtpbulk send MANIFEST (no journal: the input path alone)
#   send+journal  smtpbulk send -j JOURNAL MANIFEST (the input and the journal)
# /usr/bin/time gives wall time, CPU and peak RSS of the client process; the sink's JSON
# its message count (every row must deliver N). Writes bench/results/send.csv and prints
# a Markdown table with each send row's throughput as a ratio of load's at the same N.
# Usage: bench/send.sh [N...] (default: 100000 1000000).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(100000 1000000)
SESSIONS=8 WINDOW=8 SIZE=1000
. bench/lib.sh
bench_prepare
csv=bench/results/send.csv
tmp=$(mktemp -d)

trap 'stop_sink; rm -rf "$tmp"' EXIT

# The manifests: line i inline when i is odd, else one of 100 files of the same size.
python3 - "$tmp" "$SIZE" "${SIZES[@]}" <<'PY'
import json, os, sys
tmp, size, sizes = sys.argv[1], int(sys.argv[2]), [int(x) for x in sys.argv[3:]]
head = "From: a@example.com\nTo: b@example.org\nSubject: bench\n\n"
body = head + "x" * (size - len(head) - 1) + "\n"
os.makedirs(f"{tmp}/files")
for k in range(100):
    with open(f"{tmp}/files/{k}.eml", "w") as f:
        f.write(body)
for n in sizes:
    with open(f"{tmp}/m{n}.jsonl", "w") as f:
        for i in range(n):
            rec = {"id": f"m{i}", "from": "a@example.com", "to": [f"r{i}@example.org"]}
            if i % 2:
                rec["raw"] = body
            else:
                rec["file"] = f"{tmp}/files/{i % 100}.eml"
            f.write(json.dumps(rec) + "\n")
PY

run() { # name n args...: one client run against a fresh sink
  local name=$1 n=$2; shift 2
  start_server smtpbulk-sink --json > "$tmp/$name-$n.sink"
  /usr/bin/time -o "$tmp/$name-$n.time" -f "%e %U %S %M" timeout 900 "$b" "$@" "127.0.0.1:$port" \
    "${tail_args[@]}" > "$tmp/$name-$n.out" 2>"$tmp/$name-$n.err" || \
    echo "warning: $name $n exited non-zero: $(head -c 300 "$tmp/$name-$n.err")" >&2
  stop_sink
}

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (before the run, $(nproc) CPUs)" >&2
echo "rows,n,elapsed_s,msgs_per_s,ratio_to_load,cpu_us_per_msg,peak_rss_mb,sink_messages" > "$csv"
for n in "${SIZES[@]}"; do
  tail_args=()
  run load "$n" load -q --json -m "$n" -l "$SIZE" -s "$SESSIONS" -w "$WINDOW"
  tail_args=("$tmp/m$n.jsonl")
  run send "$n" send -q --json -s "$SESSIONS" -w "$WINDOW"
  rm -f "$tmp/j$n.jsonl"
  run send+journal "$n" send -q --json -s "$SESSIONS" -w "$WINDOW" -j "$tmp/j$n.jsonl"
  python3 - "$tmp" "$n" >> "$csv" <<'PY'
import json, sys
tmp, n = sys.argv[1], int(sys.argv[2])
def row(name):
    wall, user, system, rss = open(f"{tmp}/{name}-{n}.time").read().split()[-4:]
    sink = json.loads(open(f"{tmp}/{name}-{n}.sink").read().strip().splitlines()[-1])
    return float(wall), float(user) + float(system), int(rss) / 1024, sink["messages"]
lw = row("load")[0]
for name in ("load", "send", "send+journal"):
    wall, cpu, rss, got = row(name)
    if got != n:
        print(f"warning: {name} {n}: the sink took {got}", file=sys.stderr)
    print(f"{name},{n},{wall:.2f},{n / wall:.0f},{lw / wall:.2f},{cpu / n * 1e6:.1f},{rss:.1f},{got}")
PY
done

python3 - "$csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print("| client | messages | elapsed s | msgs/s | of load's | CPU µs/msg | peak RSS MB | sink got |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for r in rows:
    print(f"| {r['rows']} | {int(r['n']):,} | {r['elapsed_s']} | {int(r['msgs_per_s']):,} | "
          f"{float(r['ratio_to_load']):.0%} | {r['cpu_us_per_msg']} | {r['peak_rss_mb']} | {int(r['sink_messages']):,} |")
PY
