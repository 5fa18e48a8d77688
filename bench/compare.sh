#!/usr/bin/env bash
# smtpbulk load -P 2 at two revisions, in one run on this machine: the rows of
# bench/run.sh for pipeline mode 2, against Postfix smtp-sink and against smtpbulk sink
# (the current tree's, for both clients), the two clients taking turns run after run,
# so a machine that gets busier or quieter weighs on both alike.
#
# Usage: bench/compare.sh OLD_REV [MESSAGES_PER_RUN] [ROUNDS]
#   OLD_REV   a git revision (built in a temporary worktree, removed at the end)
#   MESSAGES  default 50000 (a fifth with 1 session)
#   ROUNDS    runs per client and row, default 3 (the median is reported)
# Writes bench/results/compare.csv and prints a Markdown table with the new/old ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
OLD_REV=${1:?usage: bench/compare.sh OLD_REV [MESSAGES] [ROUNDS]}
N=${2:-50000}
ROUNDS=${3:-3}
SIZE=1000
scripts/setup-deps.sh
[ -x /usr/bin/time ] || { [ "$(id -u)" -eq 0 ] && s= || s=sudo; $s env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }

cmake --preset release >/dev/null
cmake --build --preset release --target smtpbulk_cli >/dev/null
NEW=./build/release/smtpbulk
tmp=$(mktemp -d)
SMTPBULK=$NEW  # the sink is the current tree's for both clients
. bench/lib.sh
cleanup() {
  stop_sink
  git worktree remove --force "$tmp/old" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
git worktree add --detach -q "$tmp/old" "$OLD_REV"
cmake -S "$tmp/old" -B "$tmp/old/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DSMTPBULK_BUILD_TESTS=OFF >/dev/null
cmake --build "$tmp/old/build" --target smtpbulk_cli >/dev/null
OLD=$tmp/old/build/smtpbulk

mkdir -p bench/results
csv=bench/results/compare.csv
echo "server,client,workers,sessions,messages,round,elapsed_s,msgs_per_s,cpu_us_per_msg" > "$csv"


one() { # server client binary workers sessions n round
  local server=$1 client=$2 bin=$3 workers=$4 sessions=$5 n=$6 round=$7 w=() tf
  [ "$workers" != default ] && w=(--workers "$workers")
  start_server "$server"
  tf=$(mktemp)
  /usr/bin/time -o "$tf" -f "%e %U %S" "$bin" load -q -P 2 "${w[@]}" -s "$sessions" -m "$n" \
    -l "$SIZE" "127.0.0.1:$port" >/dev/null || echo "warning: $client exited non-zero" >&2
  stop_sink
  read -r el us sy < <(tail -1 "$tf")
  rm -f "$tf"
  awk -v sv="$server" -v c="$client" -v w="$workers" -v s="$sessions" -v n="$n" -v r="$round" \
      -v el="$el" -v us="$us" -v sy="$sy" \
    'BEGIN { printf "%s,%s,%s,%d,%d,%d,%.2f,%.0f,%.2f\n", sv, c, w, s, n, r, el, n / el, (us + sy) / n * 1e6 }' >> "$csv"
}

for server in smtp-sink smtpbulk-sink; do
  for sessions in 1 10 100; do
    n=$N; [ "$sessions" -eq 1 ] && n=$((N / 5))
    for workers in 1 default; do
      for r in $(seq "$ROUNDS"); do
        one "$server" old "$OLD" "$workers" "$sessions" "$n" "$r"
        one "$server" new "$NEW" "$workers" "$sessions" "$n" "$r"
      done
    done
  done
done

echo
echo "old = $OLD_REV ($(git rev-parse --short "$OLD_REV")), new = $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' + changes'); median of $ROUNDS runs each, taking turns"
echo
echo "| server | workers | sessions | old msgs/s | new msgs/s | new/old | old CPU µs/msg | new CPU µs/msg | new/old |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
python3 - "$csv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
keys = []
for r in rows:
    k = (r["server"], r["workers"], r["sessions"])
    if k not in keys:
        keys.append(k)
for k in keys:
    def med(client, field):
        return statistics.median(float(r[field]) for r in rows
                                 if (r["server"], r["workers"], r["sessions"]) == k and r["client"] == client)
    om, nm = med("old", "msgs_per_s"), med("new", "msgs_per_s")
    oc, nc = med("old", "cpu_us_per_msg"), med("new", "cpu_us_per_msg")
    cpu = f"{nc / oc:.2f}" if oc else "-"  # /usr/bin/time counts in 10 ms steps
    print(f"| {k[0]} | {k[1]} | {k[2]} | {om:.0f} | {nm:.0f} | {nm / om:.2f} | {oc:.1f} | {nc:.1f} | {cpu} |")
PY
