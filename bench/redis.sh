#!/usr/bin/env bash
# smtpbulk send as 1, 2 and 3 consumers of a Redis stream, beside send from a manifest
# file, in one run on this machine, against our sink: messages per second, client CPU
# per message (all consumers together), and what Redis costs per message — its own CPU
# (from /proc) and the commands it ran (INFO commandstats: XREADGROUP, XADD, XACK, ...).
# A redis-server of its own (a free port, a temporary directory, no persistence: the
# cost of the protocol, not of the disk). Writes bench/results/redis.csv and prints a
# Markdown table. Usage: bench/redis.sh [MESSAGES] (default 60000).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-60000}
SIZE=1000 SESSIONS=4
. bench/lib.sh
bench_prepare
csv=bench/results/redis.csv
tmp=$(mktemp -d)

rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --dir "$tmp" --save '' --appendonly no \
  --daemonize no >/dev/null 2>&1 &
rpid=$!
trap 'stop_sink; kill "$rpid" 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$rport") 2>/dev/null && break; sleep 0.05; done
rcli() { redis-cli -p "$rport" "$@"; }

python3 - "$tmp/m.jsonl" "$N" "$SIZE" <<'PY'
import json, sys
path, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
head = "From: a@example.com\nTo: b@example.org\nSubject: bench\n\n"
body = head + "x" * (size - len(head) - 1) + "\n"
with open(path, "w") as f:
    for i in range(n):
        f.write(json.dumps({"id": f"m{i}", "from": "a@example.com", "to": [f"r{i}@example.org"], "raw": body}) + "\n")
PY

redis_cpu() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$rpid/stat"; }
calls() { rcli INFO commandstats | tr -d '\r' | awk -F'[:=,]' '/^cmdstat_/ { s += $3 } END { print s }'; }

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (before the run, $(nproc) CPUs)" >&2
echo "client,consumers,messages,elapsed_s,msgs_per_s,client_cpu_us_per_msg,redis_cpu_us_per_msg,redis_calls_per_msg" > "$csv"
# send from the file: the baseline
start_server smtpbulk-sink
/usr/bin/time -o "$tmp/file.time" -f "%e %U %S" "$b" send -q -s "$SESSIONS" "127.0.0.1:$port" "$tmp/m.jsonl"
stop_sink
read -r wall user sys < "$tmp/file.time"
python3 -c "print(f'file,0,$N,$wall,{$N/$wall:.0f},{($user+$sys)/$N*1e6:.1f},,')" >> "$csv"

for c in 1 2 3; do
  stream="s$c"
  "$b" enqueue --to "redis://127.0.0.1:$rport/$stream" "$tmp/m.jsonl" 2>/dev/null
  rcli CONFIG RESETSTAT >/dev/null
  r0=$(redis_cpu)
  start_server smtpbulk-sink
  t0=$(date +%s.%N)
  cps=()
  for k in $(seq "$c"); do
    /usr/bin/time -o "$tmp/c$c-$k.time" -f "%e %U %S" "$b" send -q --source "redis://127.0.0.1:$rport/$stream" \
      --group g --consumer "c$k" --exit-when-done -s "$SESSIONS" "127.0.0.1:$port" &
    cps+=($!)
  done
  for p in "${cps[@]}"; do wait "$p" || echo "warning: a consumer exited non-zero" >&2; done
  t1=$(date +%s.%N)
  stop_sink
  r1=$(redis_cpu)
  cl=$(calls)
  python3 - "$tmp" "$c" "$N" "$t0" "$t1" "$r0" "$r1" "$(getconf CLK_TCK)" "$cl" >> "$csv" <<'PY'
import sys
tmp, c, n, t0, t1, r0, r1, tck, calls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *map(float, sys.argv[4:8]), int(sys.argv[8]), int(sys.argv[9])
cpu = 0.0
for k in range(1, c + 1):
    w, u, s = map(float, open(f"{tmp}/c{c}-{k}.time").read().split()[-3:])
    cpu += u + s
wall = t1 - t0
print(f"redis,{c},{n},{wall:.2f},{n / wall:.0f},{cpu / n * 1e6:.1f},{(r1 - r0) / tck / n * 1e6:.1f},{calls / n:.3f}")
PY
done

python3 - "$csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print("| input | consumers | messages | elapsed s | msgs/s | client CPU µs/msg | Redis CPU µs/msg | Redis commands/msg |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for r in rows:
    print(f"| {'manifest file' if r['client'] == 'file' else 'Redis stream'} | {r['consumers'] if r['client'] != 'file' else '—'} | "
          f"{int(r['messages']):,} | {r['elapsed_s']} | {int(r['msgs_per_s']):,} | {r['client_cpu_us_per_msg']} | "
          f"{r['redis_cpu_us_per_msg'] or '—'} | {r['redis_calls_per_msg'] or '—'} |")
PY
