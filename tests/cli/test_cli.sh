#!/usr/bin/env bash
# The smtpbulk command's contract: options, exit statuses, one-line errors, the --json
# report, and load and sink end to end. usage: test_cli.sh SMTPBULK BACKEND
set -uo pipefail
bin=$1 backend=$2
fails=0 passes=0
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$tmp"; }
trap cleanup EXIT

check() { # name, then a command that must succeed
  local name=$1; shift
  if "$@"; then passes=$((passes + 1)); else echo "FAIL: $name" >&2; fails=$((fails + 1)); fi
}
status_is() { # want, command...
  local want=$1; shift
  "$@" >"$tmp/out" 2>"$tmp/err"; local got=$?
  [ "$got" -eq "$want" ] || { echo "  exit $got, want $want: $*" >&2; cat "$tmp/err" >&2; return 1; }
}
json_get() { /usr/bin/python3 -c "import json,sys; d=json.load(open('$tmp/out')); print(eval('d' + sys.argv[1]))" "$1"; }
one_line_err() { [ "$(wc -l < "$tmp/err")" -eq 1 ]; }

# Top level.
check "help" status_is 0 "$bin" --help
check "version" status_is 0 "$bin" --version
check "unknown command" status_is 2 "$bin" frobnicate
check "no command" status_is 2 "$bin"

# load: bad options are one line and status 2.
for bad in "-s 0" "-P 3" "-w 17" "--rate 0" "--rate x" "--duration -1" "-t <a@b>" \
           "--bogus" "-m" "--backend foo" "host1 host2"; do
  # shellcheck disable=SC2086
  check "load $bad" status_is 2 "$bin" load $bad
  check "load $bad: one line" one_line_err
done

check "load -f with CR" status_is 2 "$bin" load -f $'a\rb@x.test'
check "load -f with CR: one line" one_line_err

# A malformed HOST[:PORT] is a usage error (2) on one line, whatever it holds.
long=$(printf 'a%.0s' $(seq 300))
for bad in "a..b:25" ":" "[::1" "[::1]:" "host:0" "host:65536" ".host" "$long" $'two\nlines' "a b"; do
  check "load target '$bad'" status_is 2 "$bin" load -m 1 "$bad"
  check "load target '$bad': one line" one_line_err
done
check "load target: says what a target is" grep -q "HOST\[:PORT\]" "$tmp/err"
check "load -s above one host's ports" status_is 2 "$bin" load -s 1000000 127.0.0.1:1

# load against the built-in sink: the JSON report has the promised keys.
check "load builtin" status_is 0 "$bin" load -m 3000 -s 4 -r 2 --backend "$backend" --json
for k in "['messages']" "['delivered']" "['failed']" "['elapsed_s']" "['msgs_per_s']" \
         "['latency_ms']['p50']" "['latency_ms']['p90']" "['latency_ms']['p99']" \
         "['latency_ms']['p999']" "['latency_ms']['max']" "['cpu_user_s']" "['cpu_sys_s']"; do
  check "json key $k" json_get "$k"
done
check "all delivered" [ "$(json_get "['delivered']")" = 3000 ]
for mode in 0 1; do
  check "load -P $mode" status_is 0 "$bin" load -P "$mode" -m 500 -s 2 --backend "$backend" --json
  check "load -P $mode delivered" [ "$(json_get "['delivered']")" = 500 ]
done
# Per-category counts and per-phase percentiles: lockstep, every message has each
# transaction phase once, and each connection that carried one its setup once.
check "load -P 0" status_is 0 "$bin" load -P 0 -m 500 -s 2 --backend "$backend" --json
check "load -P 0 categories" [ "$(json_get "['categories']['delivered']")" = 500 ]
check "load -P 0 categories sum" /usr/bin/python3 -c "import json,sys; sys.exit(0 if sum(json.load(open('$tmp/out'))['categories'].values()) == 500 else 1)"
for ph in mail rcpt data dot queued; do
  check "load -P 0 phase $ph per message" [ "$(json_get "['phases_ms']['$ph']['samples']")" = 500 ]
done
check "load -P 0 phase connect per connection" /usr/bin/python3 -c "import json,sys; p=json.load(open('$tmp/out'))['phases_ms']; sys.exit(0 if 1 <= p['connect']['samples'] <= 2 and p['greeting']['samples'] == p['connect']['samples'] and p['tls']['samples'] == 0 and all(p[k]['p50'] <= p[k]['p99'] for k in p) else 1)"
check "load text report: categories and phases" bash -c "'$bin' load -P 0 -m 50 -s 2 --backend '$backend' > '$tmp/text' && grep -q '^categories  delivered 50\$' '$tmp/text' && grep -q '^phase ms .* connect .* mail .* dot' '$tmp/text' && grep -q '^     p99 ' '$tmp/text'"
if [ "$backend" = io_uring ]; then
  check "load receives pooled by default" bash -c "'$bin' load -m 50 -s 2 -q -d 5 --backend io_uring 2>&1 | grep -q 'multishot pooled receives'"
  check "load --plain-recv" bash -c "'$bin' load -m 50 -s 2 -q -d 5 --backend io_uring --plain-recv 2>&1 | grep -q ' plain receives'"
fi
check "load --rate paces" status_is 0 "$bin" load --rate 1000 -m 300 -q --json --backend "$backend"
check "load --rate took >= 0.25 s" /usr/bin/python3 -c "import sys; sys.exit(0 if $(json_get "['elapsed_s']") >= 0.25 else 1)"
check "load --duration" status_is 0 "$bin" load --duration 1 -q --json --backend "$backend"
check "load --duration ran 1 s" /usr/bin/python3 -c "import sys; sys.exit(0 if $(json_get "['elapsed_s']") >= 1.0 and $(json_get "['messages']") > 0 else 1)"

# sink, then load against it over the network; the sink stops at --max-messages.
start_sink() { # args...
  # Emptied here, before the fork: the child's own truncation may come after the wait
  # below has read the previous sink's "listening" line.
  : >"$tmp/sink.err"
  "$bin" sink --listen 127.0.0.1:0 --threads 2 --backend "$backend" --json "$@" \
    >"$tmp/sink.out" 2>"$tmp/sink.err" &
  pids+=($!)
  sink_pid=$!
  # Until it says where it listens or exits; 30 s bounds a machine that is very busy.
  for _ in $(seq 600); do
    grep -q listening "$tmp/sink.err" 2>/dev/null && break
    kill -0 "$sink_pid" 2>/dev/null || break
    sleep 0.05
  done
  port=$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\),.*/\1/p' "$tmp/sink.err")
  [ -n "$port" ] || { echo "  the sink did not start: $*" >&2; cat "$tmp/sink.err" >&2; return 1; }
}
check "sink bad option" status_is 2 "$bin" sink --threads 0
check "sink bad fault" status_is 2 "$bin" sink --reject-rcpt 60 --tempfail-rcpt 60
check "sink bad listen" status_is 2 "$bin" sink --listen nowhere
check "sink starts" start_sink --max-messages 2000
check "load to sink" status_is 0 "$bin" load -m 2000 -s 8 --backend "$backend" --json "127.0.0.1:$port"
for _ in $(seq 100); do kill -0 "$sink_pid" 2>/dev/null || break; sleep 0.05; done
check "sink stopped by itself" bash -c "! kill -0 $sink_pid 2>/dev/null"
check "sink counted 2000" grep -q '"messages": 2000' "$tmp/sink.out"

check "sink with faults starts" start_sink --reject-rcpt 100
check "load vs rejecting sink: status 1" status_is 1 "$bin" load -m 200 -s 2 -q --json --backend "$backend" "127.0.0.1:$port"
check "every one rejected" [ "$(json_get "['rejected']")" = 200 ]
check "rejected: categories count them" /usr/bin/python3 -c "import json,sys; c=json.load(open('$tmp/out'))['categories']; sys.exit(0 if sum(c.values()) == 200 and c['delivered'] == 0 else 1)"

kill -TERM "$sink_pid"; wait "$sink_pid" 2>/dev/null
check "sink printed counts on SIGTERM" grep -q '"connections": 2' "$tmp/sink.out"

check "sink temp-failing recipients starts" start_sink --tempfail-rcpt 30
check "load without --retry-temp-rcpts: some partial" status_is 1 "$bin" load -m 200 -s 2 -r 3 -q --json --max-attempts 1 --backend "$backend" "127.0.0.1:$port"
check "partial counted" /usr/bin/python3 -c "import json,sys; sys.exit(0 if json.load(open('$tmp/out'))['partial'] > 0 else 1)"
check "load --retry-temp-rcpts: all delivered" status_is 0 "$bin" load -m 200 -s 2 -r 3 -q --json --retry-temp-rcpts --max-attempts 30 --defer 0.01 --backend "$backend" "127.0.0.1:$port"
check "retried recipients: deferred counted" /usr/bin/python3 -c "import json,sys; d=json.load(open('$tmp/out')); sys.exit(0 if d['delivered'] == 200 and d['deferred'] > 0 else 1)"
kill -TERM "$sink_pid"; wait "$sink_pid" 2>/dev/null

# AUTH in the sink, checked by another client: Python's smtplib logs in with each
# mechanism (CRAM-MD5 verifies the sink's challenge handling end to end) and sends.
check "sink bad --auth-user" status_is 2 "$bin" sink --auth-user nocolon
check "sink with auth starts" start_sink --auth-user tim:tanstaaftanstaaf
check "smtplib logs in with PLAIN, LOGIN, CRAM-MD5 and sends" /usr/bin/python3 -c "
import smtplib, sys
for mech in ('PLAIN', 'LOGIN', 'CRAM-MD5'):
    s = smtplib.SMTP('127.0.0.1', $port, timeout=10)
    s.ehlo('c.test')
    s.user, s.password = 'tim', 'tanstaaftanstaaf'
    code, _ = s.auth(mech, getattr(s, 'auth_' + mech.lower().replace('-', '_')))
    assert code == 235, (mech, code)
    s.sendmail('a@b.test', ['c@d.test'], 'Subject: x' + chr(13) + chr(10) + chr(13) + chr(10) + 'hi' + chr(13) + chr(10))
    s.quit()
s = smtplib.SMTP('127.0.0.1', $port, timeout=10)
s.ehlo('c.test')
try:
    s.login('tim', 'wrong')
    sys.exit(1)
except smtplib.SMTPAuthenticationError as e:
    assert e.smtp_code == 535
s.quit()
"
kill -TERM "$sink_pid"; wait "$sink_pid" 2>/dev/null
check "sink counted the logins" grep -q '"messages": 3, .*"auth_ok": 3, "auth_failed": [1-9]' "$tmp/sink.out"

# TLS and AUTH from the command line: a throwaway CA and server certificate (openssl),
# the sink speaking STARTTLS and implicit TLS, load verifying it and logging in.
certs="$tmp/certs"
"$(dirname "$0")/../support/make_certs.sh" "$certs" >/dev/null 2>&1
check "test certificates made" [ -s "$certs/srv.pem" ]
printf 'tanstaaf\n' > "$tmp/pw"
check "sink --tls without --cert" status_is 2 "$bin" sink --tls starttls
check "sink --tls bad" status_is 2 "$bin" sink --tls ssl3 --cert "$certs/srv.pem" --key "$certs/srv.key"
check "sink --cert without --tls" status_is 2 "$bin" sink --cert "$certs/srv.pem" --key "$certs/srv.key"
check "sink unreadable key" status_is 3 "$bin" sink --listen 127.0.0.1:0 --tls smtps --cert "$certs/srv.pem" --key "$certs/srv.pem"
check "sink unreadable key: says so" grep -q "cannot load the key" "$tmp/err"
check "sink key of another certificate" status_is 3 "$bin" sink --listen 127.0.0.1:0 --tls smtps --cert "$certs/srv.pem" --key "$certs/ca.key"
check "sink key of another certificate: says so" grep -q "does not match" "$tmp/err"
for bad in "--tls ssl" "--tls-verify" "--tls starttls-optional --tls-verify" "--ca x.pem" \
           "--auth PLAIN" "--auth PLAIN --user u" "--auth KERBEROS --user u --password-file $tmp/pw" \
           "--no-tls-resume" "--reconnect-every 2" "--tls smtps" "--cert $certs/srv.pem --tls smtps 127.0.0.1:1" \
           "--tls smtps --tls-verify --ca $tmp/nonexistent.pem 127.0.0.1:1" \
           "--auth PLAIN --user u --password-file $tmp/pw 127.0.0.1:1" \
           "--auth PLAIN --user u --password-file $tmp/nonexistent 127.0.0.1:1"; do
  # shellcheck disable=SC2086
  check "load $bad" status_is 2 "$bin" load $bad
  check "load $bad: one line" one_line_err
done
check "load --password is refused" status_is 2 "$bin" load --password secret
check "load --password: says why" grep -q "password-file" "$tmp/err"
check "no password anywhere: says where to put it" status_is 2 env -u SMTPBULK_PASSWORD "$bin" load --tls smtps --auth PLAIN --user u 127.0.0.1:1
check "starttls sink starts" start_sink --tls starttls --cert "$certs/srv.pem" --key "$certs/srv.key" --auth-user tim:tanstaaf
check "load STARTTLS verified + AUTH AUTO (password file)" status_is 0 "$bin" load -m 300 -s 3 -q --json --backend "$backend" \
  --tls starttls --tls-verify --ca "$certs/ca.pem" --tls-name localhost --auth AUTO --user tim --password-file "$tmp/pw" "127.0.0.1:$port"
check "STARTTLS: all delivered, one handshake per connection" /usr/bin/python3 -c "import json,sys; d=json.load(open('$tmp/out')); sys.exit(0 if d['delivered'] == 300 and d['tls_handshakes'] == 3 else 1)"
check "load wrong CA name fails with a certificate error" status_is 1 "$bin" load -m 5 -s 1 --backend "$backend" \
  --tls starttls --tls-verify --ca "$certs/ca.pem" --tls-name other.example "127.0.0.1:$port"
check "certificate error named" grep -q "certificate not trusted" "$tmp/err"
check "load wrong password (env) fails with an auth error" status_is 1 env SMTPBULK_PASSWORD=nope "$bin" load -m 5 -s 2 --backend "$backend" \
  --tls starttls --auth PLAIN --user tim "127.0.0.1:$port"
check "auth error named" grep -q "authentication refused" "$tmp/err"
check "the password is not in the trace" bash -c "SMTPBULK_PASSWORD=tanstaaf '$bin' load -m 2 -s 1 -d 10 --backend '$backend' --tls starttls --auth LOGIN --user tim 127.0.0.1:$port 2>&1 | grep -q '<redacted>' && ! SMTPBULK_PASSWORD=tanstaaf '$bin' load -m 2 -s 1 -d 10 --backend '$backend' --tls starttls --auth LOGIN --user tim 127.0.0.1:$port 2>&1 | grep -q -e tanstaaf -e dGFuc3RhYWY"
check "load without --tls to a STARTTLS sink with AUTH needs --auth-plaintext" status_is 2 "$bin" load --auth PLAIN --user tim --password-file "$tmp/pw" "127.0.0.1:$port"
kill -TERM "$sink_pid"; wait "$sink_pid" 2>/dev/null
check "sink counted TLS handshakes" grep -q '"tls_handshakes": [1-9]' "$tmp/sink.out"
check "load smtps built-in sink, reconnects resume" status_is 0 "$bin" load -m 40 -s 2 -P 0 -q --json --backend "$backend" \
  --tls smtps --sink-cert "$certs/srv.pem" --sink-key "$certs/srv.key" --reconnect-every 2
check "resumed handshakes counted" /usr/bin/python3 -c "import json,sys; d=json.load(open('$tmp/out')); sys.exit(0 if d['delivered'] == 40 and d['tls_resumed'] >= 10 else 1)"
check "load --no-tls-resume" status_is 0 "$bin" load -m 40 -s 2 -P 0 -q --json --backend "$backend" \
  --tls smtps --sink-cert "$certs/srv.pem" --sink-key "$certs/srv.key" --reconnect-every 2 --no-tls-resume
check "no handshake resumed" /usr/bin/python3 -c "import json,sys; d=json.load(open('$tmp/out')); sys.exit(0 if d['delivered'] == 40 and d['tls_resumed'] == 0 and d['tls_handshakes'] >= 20 else 1)"

# Timeouts and retries: a sink that stops answering after 5 messages per connection;
# the watchdog ends each hung connection and its messages go again (unlimited).
check "load bad --timeout" status_is 2 "$bin" load --timeout abc
check "load bad --timeout: one line" one_line_err
check "load bad --retry-hang" status_is 2 "$bin" load --retry-hang -1
check "load bad --defer" status_is 2 "$bin" load --defer 0
check "load --debug-path without --debug" status_is 2 "$bin" load --debug-path x
check "load --debug-path" status_is 0 "$bin" load -m 20 -s 2 -q -d 8 --debug-path "$tmp/logs/[HOST]/c[THREAD].txt" --backend "$backend"
check "one log per connection" bash -c "[ \$(cat '$tmp'/logs/127.0.0.1:*/c0.txt '$tmp'/logs/127.0.0.1:*/c1.txt | grep -c delivered) -eq 20 ]"
check "hanging sink starts" start_sink --hang-after 5
check "load rides out hangs" status_is 0 "$bin" load -m 60 -s 3 -q --json --timeout 0.3 --retry-hang 0 --backend "$backend" "127.0.0.1:$port"
check "hangs counted, all delivered" /usr/bin/python3 -c "import sys; sys.exit(0 if $(json_get "['hangs']") >= 1 and $(json_get "['delivered']") == 60 and $(json_get "['timed_out']") == 0 else 1)"
kill -TERM "$sink_pid"; wait "$sink_pid" 2>/dev/null
check "tempfailing sink starts" start_sink --tempfail-data 50
# (--breaker 0: the retries alone; 20 refusals in a row, 1 in 10^6 here, would open it)
check "load retries 4xx" status_is 1 "$bin" load -m 400 -s 2 -q --json --defer 0.01 --max-attempts 3 --breaker 0 --backend "$backend" "127.0.0.1:$port"
check "-q still names undelivered messages" grep -q "not delivered" "$tmp/err"
check "4xx retries counted and add up" /usr/bin/python3 -c "import json,sys; d=json.load(open('$tmp/out')); sys.exit(0 if d['deferred'] > 100 and d['delivered'] + d['failed'] == 400 and d['delivered'] > 300 else 1)"
kill -TERM "$sink_pid"; wait "$sink_pid" 2>/dev/null
# Connection limits, against the built-in sink: 100 messages, 10 per connection.
check "load bad --max-per-conn" status_is 2 "$bin" load --max-per-conn 0
check "load bad --idle-close" status_is 2 "$bin" load --idle-close x
check "load --max-per-conn" status_is 0 "$bin" load -m 100 -s 2 -q --json --max-per-conn 10 --backend "$backend"
check "reconnected every 10 messages" /usr/bin/python3 -c "import json,sys; d=json.load(open('$tmp/out')); sys.exit(0 if d['delivered'] == 100 and d['reconnects'] >= 8 else 1)"
# Pacing and source addresses, against the built-in sink.
check "load bad --limit-rate" status_is 2 "$bin" load --limit-rate 10/x
check "load bad --limit-rate burst" status_is 2 "$bin" load --limit-rate 10/s:0
check "load bad --source" status_is 2 "$bin" load --source 127.0.0.2,nope
check "load --limit-rate" status_is 0 "$bin" load -m 60 -s 4 -q --json --limit-rate 100/s:10 --backend "$backend"
check "paced: no faster than 100/s" /usr/bin/python3 -c "import sys; sys.exit(0 if $(json_get "['delivered']") == 60 and $(json_get "['elapsed_s']") >= 0.49 else 1)"
check "load --source" status_is 0 "$bin" load -m 20 -s 2 -q --json --source 127.0.0.2=two.test,127.0.0.3 --backend "$backend"
check "a source that is not local" status_is 1 "$bin" load -m 3 -s 1 -q --json --source 192.0.2.1 --retry-fail 1 --backend "$backend"
check "it says why" grep -q "source address cannot be bound" "$tmp/err"
# LMTP and DSN: against our sink --lmtp (per-recipient replies after the data), and
# option errors.
check "load bad --dsn-notify" status_is 2 "$bin" load --dsn-notify NEVER,DELAY
check "load bad --dsn-notify word" status_is 2 "$bin" load --dsn-notify SOMETIMES
check "load bad --dsn-ret" status_is 2 "$bin" load --dsn-ret ALL
check "lmtp sink starts" start_sink --lmtp
check "load --lmtp" status_is 0 "$bin" load -m 200 -s 2 -r 3 -q --json --lmtp --dsn-notify success,failure --dsn-ret HDRS --envid --backend "$backend" "127.0.0.1:$port"
check "every one delivered over LMTP" [ "$(json_get "['delivered']")" = 200 ]
check "plain load to an LMTP sink fails" status_is 1 "$bin" load -m 2 -s 1 -q --json --retry-fail 1 --backend "$backend" "127.0.0.1:$port"
kill -TERM "$sink_pid"; wait "$sink_pid" 2>/dev/null
check "smtp sink starts" start_sink
check "load --lmtp to SMTP: status 1" status_is 1 "$bin" load -m 2 -s 1 -q --json --lmtp --backend "$backend" "127.0.0.1:$port"
check "it says LMTP" grep -q "does not speak LMTP" "$tmp/err"
kill -TERM "$sink_pid"; wait "$sink_pid" 2>/dev/null

# The circuit breaker: a sink that refuses every message's data with 4xx.
check "load bad --breaker" status_is 2 "$bin" load --breaker x
check "load bad --breaker-cooloff" status_is 2 "$bin" load --breaker-cooloff 0
check "always-tempfailing sink starts" start_sink --tempfail-data 100
check "load gives up on the host" status_is 1 "$bin" load -m 200 -s 2 -q --json --defer 0.01 --breaker 3 --breaker-cooloff 0.05 --breaker-trips 2 --backend "$backend" "127.0.0.1:$port"
check "the breaker says why" grep -q "circuit breaker" "$tmp/err"
# (what was in flight when it opened, up to 2 x 8, is answered too: < 50 of the 600
# refusals the messages' own retries would draw)
check "every message failed, few tried" /usr/bin/python3 -c "import json,sys; d=json.load(open('$tmp/out')); sys.exit(0 if d['failed'] == 200 and d['deferred'] < 50 else 1)"
kill -TERM "$sink_pid"; wait "$sink_pid" 2>/dev/null

# --delay-ms holds every reply back: the greeting and each message's reply wait 200 ms,
# so no message can finish sooner than that (a lower bound a slow machine only raises).
check "sink bad --delay" status_is 2 "$bin" sink --delay 101
check "sink bad --delay-ms" status_is 2 "$bin" sink --delay-ms 0
check "delaying sink starts" start_sink --delay-ms 200
check "load vs delaying sink" status_is 0 "$bin" load -m 4 -s 2 -q --json --backend "$backend" "127.0.0.1:$port"
check "replies were held" /usr/bin/python3 -c "import sys; sys.exit(0 if $(json_get "['latency_ms']['p50']") >= 200 and $(json_get "['delivered']") == 4 else 1)"
kill -TERM "$sink_pid"; wait "$sink_pid" 2>/dev/null

# Stop the sink started last and wait (bounded) until it has exited.
stop_sink() {
  kill -TERM "$sink_pid" 2>/dev/null
  for _ in $(seq 200); do kill -0 "$sink_pid" 2>/dev/null || break; sleep 0.05; done
  ! kill -0 "$sink_pid" 2>/dev/null && wait "$sink_pid" 2>/dev/null
  return 0
}
sink_json() { # a python expression over d, the stopped sink's --json report
  /usr/bin/python3 -c "import json,sys; d=json.load(open('$tmp/sink.out')); sys.exit(0 if ($1) else 1)"
}

# A unix-domain socket: the sink says where it listens, greets over it, refuses to
# clobber a file that is not a socket, replaces a stale one, removes its own at exit.
start_unix_sink() { # path, args...
  local path=$1; shift
  : >"$tmp/sink.err"
  "$bin" sink --listen "unix:$path" --threads 2 --backend "$backend" --json "$@" \
    >"$tmp/sink.out" 2>"$tmp/sink.err" &
  pids+=($!)
  sink_pid=$!
  for _ in $(seq 600); do
    grep -q listening "$tmp/sink.err" 2>/dev/null && break
    kill -0 "$sink_pid" 2>/dev/null || break
    sleep 0.05
  done
  grep -q "^smtpbulk sink: listening on unix:$path, 2 threads, " "$tmp/sink.err" ||
    { echo "  the unix sink did not start: $*" >&2; cat "$tmp/sink.err" >&2; return 1; }
}
unix_greets() { # path: a client reads the greeting and says QUIT
  /usr/bin/python3 -c "
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
f = s.makefile('rb')
assert f.readline().startswith(b'220 '), 'greeting'
s.sendall(b'QUIT\r\n')
assert f.readline().startswith(b'221 '), 'QUIT'
" "$1"
}
check "sink --help names the new options and keys" bash -c "'$bin' sink --help | grep -q -e '--listen unix:PATH' && '$bin' sink --help | grep -q -e '--lmtp' && '$bin' sink --help | grep -q -e '--max-rate N' && '$bin' sink --help | grep -q per_second"
check "sink --listen unix: without a path" status_is 2 "$bin" sink --listen unix:
: >"$tmp/not-a-socket"
check "sink refuses a path that is not a socket" status_is 3 timeout 10 "$bin" sink --listen "unix:$tmp/not-a-socket"
check "refusal says why" grep -q "exists and is not a socket" "$tmp/err"
check "the file is left alone" [ -f "$tmp/not-a-socket" ]
/usr/bin/python3 -c "import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])" "$tmp/s.sock"
check "a stale socket file is there" [ -S "$tmp/s.sock" ]
check "unix sink starts over the stale socket" start_unix_sink "$tmp/s.sock"
check "unix sink greets" unix_greets "$tmp/s.sock"
check "a second sink refuses a live socket" status_is 3 timeout 10 "$bin" sink --listen "unix:$tmp/s.sock"
check "unix sink still greets" unix_greets "$tmp/s.sock"
stop_sink
check "unix sink stopped" bash -c "! kill -0 $sink_pid 2>/dev/null"
check "unix sink removed its socket file" [ ! -e "$tmp/s.sock" ]
check "unix sink counted its connections" sink_json "d['connections'] >= 2"

# LMTP: LHLO, and after the dot one reply per recipient in RCPT order; EHLO refused.
check "lmtp sink starts" start_sink --lmtp
check "LMTP session: LHLO, two recipients, per-recipient replies" /usr/bin/python3 -c "
import socket
s = socket.create_connection(('127.0.0.1', $port), timeout=10)
f = s.makefile('rb')
def line():
    l = f.readline()
    assert l.endswith(b'\r\n'), l
    return l.decode()
def cmd(c, want):
    s.sendall(c.encode() + b'\r\n')
    while True:
        l = line()
        if l[3] == ' ':
            break
    assert l.startswith(want), (c, l)
assert 'LMTP' in line()
cmd('EHLO c.test', '500 5.5.1')
cmd('LHLO c.test', '250 ')
cmd('MAIL FROM:<a@b.test>', '250 ')
cmd('RCPT TO:<ok@d.test>', '250 ')
cmd('RCPT TO:<lmtp-perm@d.test>', '250 ')
cmd('DATA', '354 ')
s.sendall(b'Subject: x\r\n\r\nhi\r\n.\r\n')
r1, r2 = line(), line()
assert r1.startswith('250 2.1.5 <ok@d.test>'), r1
assert r2.startswith('550 5.2.1'), r2
cmd('QUIT', '221 ')
"
stop_sink
check "lmtp sink counted one message, one recipient failed after the data" \
  sink_json "d['messages'] == 1 and d['recipients'] == 1 and d['lmtp_rcpt_failed'] == 1"

# --max-rate: load pushes 300 messages as fast as it can; the sink admits at most 50
# in any second and throttles the rest with 421 (load reconnects and retries them).
check "sink bad --max-rate" status_is 2 "$bin" sink --max-rate 0
check "rate-limited sink starts" start_sink --max-rate 50
timeout 90 "$bin" load -m 300 -s 4 -q --json --defer 0.05 --breaker 0 --max-attempts 100 \
  --sleep-fail 0.05 --backend "$backend" "127.0.0.1:$port" >/dev/null 2>&1
stop_sink
check "no second above --max-rate, some throttled" \
  sink_json "d['per_second'] and max(d['per_second']) <= 50 and d['throttled'] > 0 and sum(d['per_second']) == d['messages']"

# Against Postfix smtp-sink, the peer the benchmarks use.
if [ -x /usr/sbin/smtp-sink ]; then
  # A port below the kernel's ephemeral range (tests/support's free_port does the same):
  # one the kernel hands out could be taken by a client socket before smtp-sink binds it.
  sport=$(/usr/bin/python3 -c '
import random, socket
lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for _ in range(200):
    p = random.randint(10000, lo - 1)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
    finally:
        s.close()
')
  u=(); [ "$(id -u)" -eq 0 ] && u=(-u nobody)
  /usr/sbin/smtp-sink "${u[@]}" -c "127.0.0.1:$sport" 256 >/dev/null 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$sport") 2>/dev/null && break; sleep 0.05; done
  check "load vs smtp-sink" status_is 0 "$bin" load -m 2000 -s 8 --backend "$backend" --json "127.0.0.1:$sport"
  check "load vs smtp-sink delivered" [ "$(json_get "['delivered']")" = 2000 ]
fi
check "unreachable host: status 1" status_is 1 "$bin" load -m 5 -q --backend "$backend" "127.0.0.1:1"

echo "cli: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
