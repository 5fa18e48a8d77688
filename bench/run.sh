#!/usr/bin/env bash
# Throughput of smtpbulk beside Postfix smtp-source, in one run on this machine.
#
# Both clients send the same messages (count, body size, sessions) to a fresh server on
# loopback: Postfix smtp-sink, then smtpbulk sink (which has CHUNKING); /usr/bin/time
# gives wall time and the client's CPU time.
# Writes bench/results/results.csv and bench/results/throughput-*.png (with gnuplot),
# and prints a Markdown table. Usage: bench/run.sh [MESSAGES_PER_RUN] (default 50000;
# runs with 1 session send a fifth of that).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-50000}
SIZE=1000
scripts/setup-deps.sh
[ -x /usr/bin/time ] && command -v gnuplot >/dev/null || { [ "$(id -u)" -eq 0 ] && s= || s=sudo; $s env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time gnuplot-nox >/dev/null; }
cmake --preset release >/dev/null
cmake --build --preset release --target smtpbulk_cli >/dev/null
mkdir -p bench/results
csv=bench/results/results.csv
echo "server,client,mode,sessions,messages,elapsed_s,msgs_per_s,cpu_user_s,cpu_sys_s,cpu_us_per_msg" > "$csv"

. bench/lib.sh
trap stop_sink EXIT
server=smtp-sink

run() { # client mode sessions messages command...
  local client=$1 mode=$2 sessions=$3 n=$4; shift 4
  start_server "$server"
  local tf; tf=$(mktemp)
  /usr/bin/time -o "$tf" -f "%e %U %S" "$@" "127.0.0.1:$port" >/dev/null || \
    echo "warning: $client mode $mode exited non-zero" >&2
  stop_sink
  read -r el us sy < <(tail -1 "$tf")
  rm -f "$tf"
  awk -v sv="$server" -v c="$client" -v m="$mode" -v s="$sessions" -v n="$n" -v el="$el" -v us="$us" -v sy="$sy" \
    'BEGIN { printf "%s,%s,%s,%d,%d,%.2f,%.0f,%.2f,%.2f,%.1f\n", sv, c, m, s, n, el, n / el, us, sy, (us + sy) / n * 1e6 }' >> "$csv"
  tail -1 "$csv" >&2
}

for server in smtp-sink smtpbulk-sink; do
  for sessions in 1 10 100; do
    n=$N; [ "$sessions" -eq 1 ] && n=$((N / 5))
    run smtp-source - "$sessions" "$n" /usr/sbin/smtp-source -d -s "$sessions" -m "$n" -l "$SIZE" \
      -f sender@example.com -t rcpt@example.com
    # One worker: the server shares this machine, and a second pinned worker takes the
    # core the server needs. The default (one worker per CPU) is shown too.
    for mode in 0 1 2; do
      run "smtpbulk load" "$mode" "$sessions" "$n" ./build/release/smtpbulk load -q -P "$mode" \
        --workers 1 -s "$sessions" -m "$n" -l "$SIZE"
    done
    run "smtpbulk load (1 worker per CPU)" 2 "$sessions" "$n" ./build/release/smtpbulk load -q \
      -P 2 -s "$sessions" -m "$n" -l "$SIZE"
  done
done

if command -v gnuplot >/dev/null; then
  for sv in smtp-sink smtpbulk-sink; do
    gnuplot <<GP
set terminal png size 1000,500
set output "bench/results/throughput-$sv.png"
set title "Messages/s against $sv (1,000-byte bodies, one recipient)"
set style data histogram
set style histogram clustered gap 1
set xtics rotate by -20
set style fill solid 0.8 border -1
set ylabel "messages per second"
set key top left
set datafile separator ","
plot "< awk -F, '\$1==\"$sv\" && \$4==1' $csv" using 7:xtic(strcol(3) eq "-" ? strcol(2)." -d" : strcol(2)." -P".strcol(3)) title "1 session", \
     "< awk -F, '\$1==\"$sv\" && \$4==10' $csv" using 7 title "10 sessions", \
     "< awk -F, '\$1==\"$sv\" && \$4==100' $csv" using 7 title "100 sessions"
GP
  done
fi

echo
echo "| server | client | pipeline | sessions | messages | elapsed s | msgs/s | client CPU µs/msg |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
awk -F, 'NR>1 { printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $10 }' "$csv"
