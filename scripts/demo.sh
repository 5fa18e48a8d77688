#!/usr/bin/env bash
# Quick start, part 1: install what is missing, build the release preset, start
# Postfix's smtp-sink on a free loopback port and send 100,000 messages to it over 8
# connections with `smtpbulk send`. Extra arguments go to `smtpbulk send`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target smtpbulk_cli >/dev/null

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
user_args=()
[ "$(id -u)" -eq 0 ] && user_args=(-u nobody)
/usr/sbin/smtp-sink "${user_args[@]}" -c "127.0.0.1:$port" 1024 >/dev/null &
sink=$!
trap 'kill $sink 2>/dev/null; wait $sink 2>/dev/null || true' EXIT
for _ in $(seq 100); do  # wait (at most 5 s) until it listens
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.05
done
echo "smtp-sink listening on 127.0.0.1:$port; sending..." >&2
./build/release/smtpbulk send -m 100000 -s 8 "$@" "127.0.0.1:$port"
