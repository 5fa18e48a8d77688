# Sourced by the bench scripts: one server at a time, on a free loopback port, waited
# for until it accepts, and stopped on exit. Sets $port and $sink_pid.
# shellcheck shell=bash

sink_pid=
port=

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# serve NAME COMMAND...: COMMAND in the background (listening on 127.0.0.1:$port), then
# up to 5 s for that port to accept; a server that exits or never listens ends the run.
serve() {
  local name=$1; shift
  "$@" &
  sink_pid=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return
    kill -0 "$sink_pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "$name did not start" >&2
  exit 1
}

# start_server smtp-sink|smtpbulk-sink [smtpbulk sink options...]: a fresh server on a
# new $port. Postfix smtp-sink drops to nobody when run as root; ours runs one thread
# (the client has the other core). $SMTPBULK is our binary (default: the release build).
start_server() {
  local kind=$1; shift
  port=$(free_port)
  if [ "$kind" = smtp-sink ]; then
    local u=(); [ "$(id -u)" -eq 0 ] && u=(-u nobody)
    serve smtp-sink /usr/sbin/smtp-sink "${u[@]}" -c "127.0.0.1:$port" 1024 >/dev/null
  else
    serve "smtpbulk sink" "${SMTPBULK:-./build/release/smtpbulk}" sink -q --threads 1 \
      --listen "127.0.0.1:$port" "$@"
  fi
}

stop_sink() {
  if [ -n "$sink_pid" ]; then
    kill "$sink_pid" 2>/dev/null || true
    wait "$sink_pid" 2>/dev/null || true  # its status is the signal's: not an error
    sink_pid=
  fi
}

# bench_prepare: the packages (and /usr/bin/time), the release build of the CLI, and
# bench/results; sets $b to the binary. Run from the top of the checkout.
bench_prepare() {
  scripts/setup-deps.sh
  if [ ! -x /usr/bin/time ]; then
    local s=sudo; [ "$(id -u)" -eq 0 ] && s=
    $s env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null
  fi
  cmake --preset release >/dev/null
  cmake --build --preset release --target smtpbulk_cli >/dev/null
  b=./build/release/smtpbulk
  mkdir -p bench/results
}
