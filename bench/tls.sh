#!/usr/bin/env bash
# TLS beside plaintext, in one run on this machine: smtpbulk load against smtpbulk sink
# (separate processes) over plaintext, implicit TLS and STARTTLS; reconnects per second
# with and without TLS session resumption; resident memory per idle TLS connection.
# A throwaway CA and server certificate are made with openssl for the run.
# Usage: bench/tls.sh [MESSAGES] (default 50000). Prints Markdown tables and writes
# bench/results/tls.csv.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-50000}
SIZE=1000
scripts/setup-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target smtpbulk_cli >/dev/null
b=./build/release/smtpbulk
mkdir -p bench/results
csv=bench/results/tls.csv
tmp=$(mktemp -d)
. bench/lib.sh
trap 'stop_sink; rm -rf "$tmp"' EXIT

ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
(cd "$tmp" &&
  openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 2 -subj '/CN=bench CA' &&
  openssl req "${ec[@]}" -keyout srv.key -out srv.csr -subj '/CN=localhost' &&
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > ext &&
  openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem \
    -days 2 -extfile ext) >/dev/null 2>&1

tls_sink() { # none|smtps|starttls
  if [ "$1" = none ]; then start_server smtpbulk-sink
  else start_server smtpbulk-sink --tls "$1" --cert "$tmp/srv.pem" --key "$tmp/srv.key"; fi
}
tls_load() { # none|smtps|starttls
  [ "$1" = none ] || echo "--tls $1 --tls-verify --ca $tmp/ca.pem --tls-name localhost"
}
field() { python3 -c "import json,sys; d=json.load(open('$tmp/out')); print(d['$1'])"; }

echo "kind,tls,sessions,messages,elapsed_s,msgs_per_s,cpu_us_per_msg,reconnects,reconnects_per_s,tls_handshakes,tls_resumed" > "$csv"

echo "| transport | sessions | messages | elapsed s | msgs/s | client CPU µs/msg |"
echo "| --- | --- | --- | --- | --- | --- |"
for sessions in 10 100; do
  for tls in none smtps starttls; do
    tls_sink "$tls"
    # shellcheck disable=SC2046
    $b load -q --json --workers 1 -s "$sessions" -m "$N" -l "$SIZE" $(tls_load "$tls") \
      "127.0.0.1:$port" > "$tmp/out" || echo "warning: load exited non-zero" >&2
    stop_sink
    el=$(field elapsed_s); mps=$(field msgs_per_s); cpu=$(field cpu_us_per_msg)
    echo "throughput,$tls,$sessions,$N,$el,$mps,$cpu,,,$(field tls_handshakes),$(field tls_resumed)" >> "$csv"
    echo "| $tls | $sessions | $N | $el | $mps | $cpu |"
  done
done

# Reconnect storms: each connection closes and reconnects after every message
# (lockstep, so nothing is in flight when it does). Resumption is TLS 1.3 PSK with
# (EC)DHE, wolfSSL's default: the certificate is not sent or verified again, but the
# key exchange is still done.
R=$((N / 10))
echo
echo "| transport | resumption | sessions | messages | reconnects/s | handshakes | resumed | client CPU µs/msg |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for tls in none smtps; do
  for resume in yes no; do
    [ "$tls" = none ] && [ "$resume" = no ] && continue
    extra=(); [ "$resume" = no ] && extra=(--no-tls-resume)
    tls_sink "$tls"
    # shellcheck disable=SC2046
    $b load -q --json --workers 1 -P 0 -s 10 -m "$R" -l "$SIZE" --reconnect-every 1 "${extra[@]}" \
      $(tls_load "$tls") "127.0.0.1:$port" > "$tmp/out" || echo "warning: load exited non-zero" >&2
    stop_sink
    el=$(field elapsed_s); rc=$(field reconnects)
    rps=$(python3 -c "print(round($rc / $el))")
    echo "reconnect,$tls,10,$R,$el,$(field msgs_per_s),$(field cpu_us_per_msg),$rc,$rps,$(field tls_handshakes),$(field tls_resumed)" >> "$csv"
    echo "| $tls | $([ "$tls" = none ] && echo - || echo "$resume") | 10 | $R | $rps | $(field tls_handshakes) | $(field tls_resumed) | $(field cpu_us_per_msg) |"
  done
done

# Memory: client RSS with 2,000 idle sessions minus with 10, sampled mid-run under a slow
# --rate so the connections sit idle (as bench/scale.sh does for plaintext).
rss_at() { # sessions tls
  local n=$1 tls=$2
  # shellcheck disable=SC2046
  $b load -q -s "$n" --rate 20 --duration 8 --json $(tls_load "$tls") "127.0.0.1:$port" > /dev/null & local lp=$!
  sleep 6; awk '/VmRSS/ {print $2}' "/proc/$lp/status"; wait "$lp" || true
}
echo
echo "| transport | RSS, 10 sessions | RSS, 2000 sessions | per idle connection |"
echo "| --- | --- | --- | --- |"
for tls in none smtps; do
  tls_sink "$tls"
  r10=$(rss_at 10 "$tls"); r2k=$(rss_at 2000 "$tls")
  stop_sink
  per=$(( (r2k - r10) * 1024 / 1990 ))
  echo "memory,$tls,2000,,,,,,,," >> "$csv"
  echo "| $tls | $r10 KB | $r2k KB | $(python3 -c "print(f'{$per/1024:.1f} KB')") |"
done
