#!/usr/bin/env bash
# Pacing (--limit-rate) in one run on this machine: how close the achieved rate comes to
# the requested one, whether any second at the server holds more than rate + burst, and
# what pacing costs in client CPU per message.
#
# Each row sends rate × SECONDS messages with `smtpbulk load --limit-rate RATE:BURST` to
# a fresh `smtpbulk sink --threads 1` (a separate process on loopback), and the same
# number of messages unpaced (no --limit-rate) to another fresh sink as the baseline:
# the CPU cost of pacing per message is paced − unpaced. /usr/bin/time gives the
# client's CPU; the load's JSON gives the elapsed time of the paced part (first submit
# to last result) and the delivered count; the sink's JSON gives the messages it
# accepted in each second (per_second). Before the rows it says the load average and how
# late a 1 ms sleep wakes here (the engine's pacing timers have millisecond timeouts).
# Writes bench/results/pacing.csv (with the in-process CPU figures of the load's JSON and
# the sink's counts per second) and prints a Markdown table.
# Usage: bench/pacing.sh [SECONDS] (default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
SIZE=1000
SESSIONS=10
# rate burst workers: the issue's three rates, bursts 1 and 100 at each of the higher
# two, 1,000 at 100k (a tolerance above the timers' millisecond), and the 10k row again
# with two workers sharing the one pacer.
ROWS=(
  "1000 1 1"
  "10000 1 1"
  "10000 100 1"
  "10000 1 2"
  "100000 1 1"
  "100000 100 1"
  "100000 1000 1"
)
. bench/lib.sh
bench_prepare
csv=bench/results/pacing.csv
tmp=$(mktemp -d)

trap 'stop_sink; rm -rf "$tmp"' EXIT

# One load against a fresh sink: $1 is the prefix of its output files ($1.load, $1.sink,
# $1.time); the rest are load options. Bounded: three times the planned time and 30 s.
load() {
  local out=$1; shift
  start_server smtpbulk-sink --json > "$out.sink"
  /usr/bin/time -o "$out.time" -f "%e %U %S" timeout $((3 * SECS + 30)) \
    "$b" load -q --json -s "$SESSIONS" -l "$SIZE" "$@" "127.0.0.1:$port" > "$out.load" || \
    echo "warning: load $* exited non-zero" >&2
  # The sink's CPU (clock ticks: user, system) before it goes; its status comes too late.
  awk '{ sub(/.*\) /, ""); print $12, $13 }' "/proc/$sink_pid/stat" > "$out.sinkcpu"
  stop_sink
}

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (before the run, $(nproc) CPUs)" >&2
# How late a 1 ms sleep wakes on this machine: the worker's pacing timers are millisecond
# timeouts, so this is about how late a waiting connection looks again.
python3 - <<'PY' >&2
import select, time
d = []
for _ in range(2000):
    t = time.perf_counter_ns(); select.select([], [], [], 0.001)
    d.append((time.perf_counter_ns() - t) / 1e3 - 1e3)
d.sort()
print("a 1 ms sleep wakes late by: median %.0f µs, mean %.0f, p90 %.0f, p99 %.0f" %
      (d[len(d) // 2], sum(d) / len(d), d[len(d) * 9 // 10], d[len(d) * 99 // 100]))
PY

cols=rate,burst,workers,messages,delivered,elapsed_s,achieved_per_s,achieved_ratio,sink_messages
cols+=,sink_max_per_s,rate_plus_burst,max_within,cpu_us_per_msg,unpaced_elapsed_s
cols+=,unpaced_cpu_us_per_msg,pacing_cpu_us_per_msg,client_core_pct,sink_cpu_us_per_msg
cols+=,sink_core_pct,load_cpu_us_per_msg,unpaced_load_cpu_us_per_msg,sink_per_second
echo "$cols" > "$csv"
for row in "${ROWS[@]}"; do
  read -r rate burst workers <<< "$row"
  n=$((rate * SECS))
  base="$tmp/unpaced-$n-$workers"
  [ -e "$base.load" ] || load "$base" --workers "$workers" -m "$n"
  paced="$tmp/paced-$rate-$burst-$workers"
  load "$paced" --workers "$workers" -m "$n" --limit-rate "$rate/s:$burst"
  python3 - "$cols" "$rate" "$burst" "$workers" "$n" "$paced" "$base" "$(getconf CLK_TCK)" >> "$csv" <<'PY'
import json, sys
cols = sys.argv[1].split(",")
rate, burst, workers, n = map(int, sys.argv[2:6])
paced, base = sys.argv[6:8]
tck = int(sys.argv[8])
def js(p):
    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, ValueError):
        print(f"warning: {rate}/s:{burst}: no report in {p.rsplit('.', 1)[1]}: row left out",
              file=sys.stderr)
        sys.exit(0)
def client(p): # wall seconds and CPU seconds (user + system) of the client process
    with open(p + ".time") as f:
        wall, user, system = map(float, f.read().split()[-3:])
    return wall, user + system
lp, lb, sink = js(paced + ".load"), js(base + ".load"), js(paced + ".sink")
if lp["delivered"] != n or lb["delivered"] != n or sink["messages"] != n:
    print(f"warning: {rate}/s:{burst}: delivered {lp['delivered']} paced, {lb['delivered']} "
          f"unpaced, sink took {sink['messages']}, of {n}", file=sys.stderr)
wall, cpu = client(paced)
_, cpu_base = client(base)
with open(paced + ".sinkcpu") as f:
    sink_cpu = sum(map(int, f.read().split())) / tck
per_s = sink["per_second"]
mx = max(per_s, default=0)
el = lp["elapsed_s"]
r = dict(rate=rate, burst=burst, workers=workers, messages=n, delivered=lp["delivered"],
         elapsed_s=f"{el:.3f}", achieved_per_s=f"{lp['delivered'] / el:.0f}",
         achieved_ratio=f"{lp['delivered'] / el / rate:.3f}", sink_messages=sink["messages"],
         sink_max_per_s=mx, rate_plus_burst=rate + burst,
         max_within="yes" if mx <= rate + burst else "no",
         cpu_us_per_msg=f"{cpu / n * 1e6:.1f}", unpaced_elapsed_s=f"{lb['elapsed_s']:.3f}",
         unpaced_cpu_us_per_msg=f"{cpu_base / n * 1e6:.1f}",
         pacing_cpu_us_per_msg=f"{(cpu - cpu_base) / n * 1e6:.1f}",
         client_core_pct=f"{cpu / wall * 100:.0f}",
         sink_cpu_us_per_msg=f"{sink_cpu / n * 1e6:.1f}",
         sink_core_pct=f"{sink_cpu / wall * 100:.0f}",
         load_cpu_us_per_msg=f"{lp['cpu_us_per_msg']:.2f}",
         unpaced_load_cpu_us_per_msg=f"{lb['cpu_us_per_msg']:.2f}",
         sink_per_second=" ".join(map(str, per_s)))
line = ",".join(str(r[c]) for c in cols)
print(line)
print(line, file=sys.stderr)
PY
done

echo
echo "| rate/s | burst | workers | messages | elapsed s | achieved/s | achieved/requested | sink max/s | rate+burst | client CPU µs/msg | unpaced µs/msg | pacing µs/msg | client % of a core | sink % of a core |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
python3 - "$csv" <<'PY'
import csv, sys
show = ["rate", "burst", "workers", "messages", "elapsed_s", "achieved_per_s", "achieved_ratio",
        "sink_max_per_s", "rate_plus_burst", "cpu_us_per_msg", "unpaced_cpu_us_per_msg",
        "pacing_cpu_us_per_msg", "client_core_pct", "sink_core_pct"]
for r in csv.DictReader(open(sys.argv[1])):
    print("| " + " | ".join(r[c] for c in show) + " |")
PY
