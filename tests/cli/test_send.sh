#!/usr/bin/env bash
# smtpbulk send end to end: a manifest with good and bad records against our sink and
# aiosmtpd, the journal and reruns (skip what is final, --retry-failed, changed input),
# kill -9 at five moments with every record ending with exactly one journal line and
# the server-side duplicates within the in-flight bound, SIGTERM, and --mail (message
# files, a directory, a Maildir, an mbox: the envelope from the headers, Bcc not sent),
# and mail merge (10,000 CSV rows with non-ASCII names, decoded back from what the
# server received; bad rows, a header injection refused), --metrics scraped with curl
# while sending, the progress line in a pseudo-terminal (script(1)), and --resume with
# next-attempt times (a schedule of seconds, so the test waits for a due time it reads),
# TLS + AUTH against our sink (STARTTLS verified by a throwaway CA, a wrong password),
# and a manifest's per-record host, headers and DSN as the servers received them.
# usage: test_send.sh SMTPBULK BACKEND PEER_SCRIPT
set -uo pipefail
bin=$1 backend=$2 peer=$3
fails=0 passes=0
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$tmp"; }
trap cleanup EXIT
check() { # name, then a command that must succeed
  local name=$1; shift
  if "$@"; then passes=$((passes + 1)); else echo "FAIL: $name" >&2; fails=$((fails + 1)); fi
}
status_is() { # want, command...
  local want=$1; shift
  "$@" >"$tmp/out" 2>"$tmp/err"; local got=$?
  [ "$got" -eq "$want" ] || { echo "  exit $got, want $want: $*" >&2; head -5 "$tmp/err" >&2; return 1; }
}
py() { /usr/bin/python3 - "$@"; }
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { # port: until it accepts, 30 s at most
  for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "  nothing listens on $1" >&2; return 1
}
send() { "$bin" send --backend "$backend" "$@"; }

# Our sink, its totals printed on SIGTERM.
start_sink() { # args...
  sink_port=$(free_port)
  "$bin" sink --listen "127.0.0.1:$sink_port" --threads 1 --backend "$backend" --json "$@" \
    >"$tmp/sink.out" 2>"$tmp/sink.err" &
  sink_pid=$!; pids+=("$sink_pid")
  wait_port "$sink_port"
}
stop_sink() { kill -TERM "$sink_pid"; wait "$sink_pid" 2>/dev/null; }
sink_messages() { py "$tmp/sink.out" <<'PY'
import json, sys
print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["messages"])
PY
}

# A manifest of N good records (half inline, half from a file), then one of each kind
# of bad record.
make_manifest() { # file N
  printf 'Subject: from a file\n\nbody\n' > "$tmp/m.eml"
  py "$1" "$2" "$tmp/m.eml" <<'PY'
import json, sys
path, n, eml = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(path, "w") as f:
    for i in range(n):
        rec = {"id": f"m{i}", "from": "a@example.com", "to": [f"r{i}@example.org"]}
        if i % 2: rec["raw"] = f"Subject: {i}\n\nhello {i}\n"
        else: rec["file"] = eml
        f.write(json.dumps(rec) + "\n")
PY
}
add_bad_records() { # file
  cat >> "$1" <<'EOF'
this is not JSON
["an", "array"]
{"id": "b1", "from": "a@example.com", "to": [], "raw": "x"}
{"id": "b2", "from": "a@example.com", "to": ["c@example.org"], "file": "/nonexistent/m.eml"}
{"id": "m3", "from": "a@example.com", "to": ["c@example.org"], "raw": "a duplicate id"}
{"id": "b3", "from": "not an address@", "to": ["c@example.org"], "raw": "x"}
{"id": "b4", "to": ["c@example.org"], "raw": "x"}
{"id": "b5", "from": "a@example.com", "to": ["c@example.org"]}
EOF
}
journal_check() { # journal records want_delivered: one line per id, counts; prints problems
  py "$@" <<'PY'
import json, sys
path, records, want = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ids, last = {}, {}
for line in open(path):
    d = json.loads(line)
    ids[d["id"]] = ids.get(d["id"], 0) + 1
    last[d["id"]] = d
twice = [i for i, c in ids.items() if c > 1]
delivered = sum(1 for d in last.values() if d["status"] == "delivered")
ok = not twice and len(ids) == records and delivered == want
if not ok:
    print(f"  journal: {len(ids)} ids (want {records}), {delivered} delivered (want {want}),"
          f" {len(twice)} with more than one line: {twice[:5]}", file=sys.stderr)
sys.exit(0 if ok else 1)
PY
}

# ---- usage --------------------------------------------------------------------------
check "send --help" status_is 0 "$bin" send --help
check "send --help names the journal" grep -q -- "--journal FILE" "$tmp/out"
check "send without a target" status_is 2 "$bin" send
check "send bad option" status_is 2 "$bin" send --frobnicate 127.0.0.1:1
check "send bad value" status_is 2 "$bin" send -s 0 127.0.0.1:1
check "send bad value: one line naming it" grep -q -- "--sessions" "$tmp/err"
check "send --retry-failed without --journal" status_is 2 "$bin" send --retry-failed 127.0.0.1:1
check "send missing manifest" status_is 3 "$bin" send 127.0.0.1:1 "$tmp/nonexistent.jsonl"
printf 'garbage\n' > "$tmp/notjournal"
check "send refuses a foreign journal" status_is 3 "$bin" send -j "$tmp/notjournal" 127.0.0.1:1 /dev/null
check "foreign journal untouched" [ "$(cat "$tmp/notjournal")" = garbage ]

# ---- good and bad records, reruns --------------------------------------------------
N=3000
make_manifest "$tmp/m.jsonl" $N
add_bad_records "$tmp/m.jsonl"
records=$((N + 8))
start_sink
check "send: input errors are status 4" status_is 4 send -q -j "$tmp/j.jsonl" "127.0.0.1:$sink_port" "$tmp/m.jsonl"
check "journal: a line per record, every good one delivered" journal_check "$tmp/j.jsonl" $records $N
check "each bad kind has its reason" py "$tmp/j.jsonl" <<'PY'
import json, sys
bad = {d["position"].split(":")[-1]: d["error"] for d in map(json.loads, open(sys.argv[1])) if d["status"] == "bad_input"}
want = ["not JSON", "not a JSON object", "no recipients", "/nonexistent/m.eml", "duplicate id", "bad address", "\"from\"", "\"raw\" and \"file\""]
got = [bad.get(str(3001 + i), "") for i in range(8)]
miss = [(w, g) for w, g in zip(want, got) if w not in g]
if miss: print("  ", miss, file=sys.stderr)
sys.exit(1 if miss else 0)
PY
check "queue ids: none from our sink" bash -c "! grep -q queue_id '$tmp/j.jsonl'"
check "send: rerun sends nothing" status_is 4 send --json -j "$tmp/j.jsonl" "127.0.0.1:$sink_port" "$tmp/m.jsonl"
check "rerun: all skipped as delivered" py "$tmp/out" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if d["submitted"] == 0 and d["skipped_delivered"] == 3000 and d["bad_input"] == 8 else 1)
PY
check "rerun: no line added" [ "$(wc -l < "$tmp/j.jsonl")" -eq $records ]
sed -i 's/hello 7\\n"/hello seven\\n"/' "$tmp/m.jsonl"
check "changed record: status 4" status_is 4 send -q -j "$tmp/j.jsonl" "127.0.0.1:$sink_port" "$tmp/m.jsonl"
check "changed record: said" grep -q 'id "m7" has a final line in the journal, but the record changed' "$tmp/err"
stop_sink
check "sink got each good message once" [ "$(sink_messages)" -eq $N ]

# Without a journal: just send; all delivered is status 0.
make_manifest "$tmp/small.jsonl" 200
start_sink
check "send from stdin, no journal" status_is 0 bash -c "'$bin' send -q --backend $backend 127.0.0.1:$sink_port < '$tmp/small.jsonl'"
stop_sink
check "stdin: 200 at the sink" [ "$(sink_messages)" -eq 200 ]

# ---- 100,000 records, through our sink and through Postfix smtp-sink ----------------
py "$tmp/big.jsonl" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(100000):
        f.write(json.dumps({"id": f"b{i}", "from": "a@example.com", "to": [f"r{i}@example.org"],
                            "raw": f"Subject: {i}\n\n" + "x" * 200 + "\n"}) + "\n")
PY
start_sink
check "100k records to our sink" status_is 0 send -q -j "$tmp/big1.jsonl" "127.0.0.1:$sink_port" "$tmp/big.jsonl"
stop_sink
check "100k: our sink took each once" [ "$(sink_messages)" -eq 100000 ]
check "100k: one delivered line each" journal_check "$tmp/big1.jsonl" 100000 100000
pport=$(free_port)
u=(); [ "$(id -u)" -eq 0 ] && u=(-u nobody)
/usr/sbin/smtp-sink "${u[@]}" "127.0.0.1:$pport" 1024 >/dev/null 2>&1 &
ppid_=$!; pids+=("$ppid_")
check "smtp-sink up" wait_port "$pport"
check "100k records to Postfix smtp-sink" status_is 0 send -q -j "$tmp/big2.jsonl" "127.0.0.1:$pport" "$tmp/big.jsonl"
check "100k via smtp-sink: one delivered line each" journal_check "$tmp/big2.jsonl" 100000 100000
kill "$ppid_"; wait "$ppid_" 2>/dev/null
rm -f "$tmp"/big*.jsonl

# ---- --retry-failed: a sink that temp-fails 30% of recipients, one attempt each ----
make_manifest "$tmp/r.jsonl" 500
start_sink --tempfail-rcpt 30
check "send: some failed is status 1" status_is 1 send -q -j "$tmp/rj.jsonl" --max-attempts 1 "127.0.0.1:$sink_port" "$tmp/r.jsonl"
check "some failed in the journal" grep -q '"status":"failed"' "$tmp/rj.jsonl"
check "rerun without --retry-failed sends nothing" status_is 1 send --json -j "$tmp/rj.jsonl" "127.0.0.1:$sink_port" "$tmp/r.jsonl"
check "rerun without --retry-failed: none submitted" py "$tmp/out" <<'PY'
import json, sys
sys.exit(0 if json.load(open(sys.argv[1]))["submitted"] == 0 else 1)
PY
stop_sink
start_sink
check "--retry-failed: the rest delivered" status_is 0 send -q -j "$tmp/rj.jsonl" --retry-failed "127.0.0.1:$sink_port" "$tmp/r.jsonl"
check "--retry-failed: every id's last line delivered" py "$tmp/rj.jsonl" <<'PY'
import json, sys
last = {}
for d in map(json.loads, open(sys.argv[1])): last[d["id"]] = d["status"]
sys.exit(0 if len(last) == 500 and set(last.values()) == {"delivered"} else 1)
PY
stop_sink

# ---- kill -9 at five moments, against aiosmtpd (it names each message's recipients) --
K=2000 BOUND=50 SESSIONS=4
make_manifest "$tmp/k.jsonl" $K
aport=$(free_port)
/usr/bin/python3 "$peer" --port "$aport" --events "$tmp/events" >/dev/null 2>&1 &
apid=$!; pids+=("$apid")
check "aiosmtpd up" wait_port "$aport"
lines() { [ -f "$tmp/kj.jsonl" ] && wc -l < "$tmp/kj.jsonl" || echo 0; }
for at in 150 500 900 1300 1700; do
  # (the binary itself in the background, so that the kill reaches it, not a subshell)
  "$bin" send --backend "$backend" -q -j "$tmp/kj.jsonl" --flush 0.02 --queue-bound $BOUND -s $SESSIONS -P 1 \
    "127.0.0.1:$aport" "$tmp/k.jsonl" >/dev/null 2>&1 &
  sp=$!
  for _ in $(seq 1500); do [ "$(lines)" -ge $at ] && break; kill -0 $sp 2>/dev/null || break; sleep 0.02; done
  n=$(lines)
  kill -9 $sp 2>/dev/null; wait $sp 2>/dev/null
  check "killed at $at journal lines (had $n, the run not over)" [ "$n" -ge $at ] && [ "$n" -lt $K ]
  check "after kill at $at: every journal line whole" py "$tmp/kj.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]): json.loads(line)
PY
done
check "the rerun after the kills finishes" status_is 0 send -q -j "$tmp/kj.jsonl" --queue-bound $BOUND -s $SESSIONS -P 1 "127.0.0.1:$aport" "$tmp/k.jsonl"
check "after 5 kills: exactly one journal line per record, all delivered" journal_check "$tmp/kj.jsonl" $K $K
# What the server received twice: at most what was in flight at each kill — the queue
# bound, one per session, and the results not yet flushed (0.02 s of them; 100 here).
check "duplicates within 5 x the in-flight bound" py "$tmp/events" $K $((5 * (BOUND + SESSIONS + 100))) <<'PY'
import sys, collections
events, k, bound = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
seen = collections.Counter()
for line in open(events):
    if line.startswith("DATA ") and "rcpts=" in line:
        for r in line.split("rcpts=", 1)[1].strip().split(","): seen[r] += 1
missing = [f"r{i}@example.org" for i in range(k) if seen[f"r{i}@example.org"] == 0]
dups = sum(c - 1 for c in seen.values() if c > 1)
print(f"  kill -9 x5: {dups} messages received twice (bound {bound}), {len(missing)} never", file=sys.stderr)
sys.exit(0 if not missing and dups <= bound else 1)
PY

# ---- SIGTERM: stop reading, finish what is in flight, flush, summary ---------------
rm -f "$tmp/tj.jsonl"
"$bin" send --backend "$backend" --json -j "$tmp/tj.jsonl" --queue-bound $BOUND -s $SESSIONS -P 1 "127.0.0.1:$aport" "$tmp/k.jsonl" >"$tmp/term.out" 2>&1 &
sp=$!
for _ in $(seq 1500); do [ -f "$tmp/tj.jsonl" ] && [ "$(wc -l < "$tmp/tj.jsonl")" -ge 300 ] && break; sleep 0.02; done
kill -TERM $sp
wait $sp; rc=$?
check "SIGTERM: it exits (not killed by the signal), status 1 (not all sent)" [ $rc -eq 1 ]
check "SIGTERM: summary printed" grep -q '"submitted"' "$tmp/term.out"
check "SIGTERM: every submitted message has its line or was cancelled" py "$tmp/term.out" "$tmp/tj.jsonl" <<'PY'
import json, sys
s = json.loads([l for l in open(sys.argv[1]) if l.startswith("{")][-1])
lines = sum(1 for _ in open(sys.argv[2]))
ok = lines == s["submitted"] - s["cancelled"] and s["submitted"] < 2000
if not ok: print("  ", s, lines, file=sys.stderr)
sys.exit(0 if ok else 1)
PY
check "after SIGTERM the rerun completes" status_is 0 send -q -j "$tmp/tj.jsonl" -s $SESSIONS -P 1 "127.0.0.1:$aport" "$tmp/k.jsonl"
check "after SIGTERM: one line per record" journal_check "$tmp/tj.jsonl" $K $K

# ---- --mail: message files, a directory, a Maildir and an mbox, against aiosmtpd ----
check "--mail without a path" status_is 2 "$bin" send --mail 127.0.0.1:1
check "--from without --mail" status_is 2 "$bin" send --from a@example.com 127.0.0.1:1 /dev/null
check "--from a bad address" status_is 2 "$bin" send --mail --from 'a b@c' 127.0.0.1:1 x.eml
check "send --help names --mail" bash -c "'$bin' send --help | grep -q -- '--mail'"
mt="$tmp/mail"; mkdir -p "$mt/md/cur" "$mt/md/new" "$mt/md/tmp" "$mt/dir/sub" "$tmp/saved"
printf 'From: Ann <ann@example.com>\nTo: b@example.org, "C" <c@example.org>\nCc: grp: d@example.org;\nBcc: secret@example.org\nSubject: one\n\nthe body\n' > "$mt/one.eml"
printf 'From: ann@example.com\nTo: md1@example.org\nSubject: maildir cur\n\nx\n' > "$mt/md/cur/1.host:2,S"
printf 'From: ann@example.com\nTo: md2@example.org\nSubject: maildir cur 2\n\nx\n' > "$mt/md/cur/2.host:2,"
printf 'From: ann@example.com\nTo: md3@example.org\nSubject: maildir new\n\nx\n' > "$mt/md/new/3.host"
printf 'From: ann@example.com\nTo: tmp@example.org\nSubject: maildir tmp\n\nx\n' > "$mt/md/tmp/4.host"
printf 'From: ann@example.com\nTo: dir1@example.org\nSubject: dir 1\n\nx\n' > "$mt/dir/a.eml"
printf 'Sender: sender@example.com\nTo: dir2@example.org\nSubject: dir 2\n\nx\n' > "$mt/dir/b.eml"
printf 'From: ann@example.com\nTo: dot@example.org\nSubject: hidden\n\nx\n' > "$mt/dir/.hidden"
printf 'From: ann@example.com\nTo: sub@example.org\nSubject: in a subdirectory\n\nx\n' > "$mt/dir/sub/c.eml"
printf 'To: nofrom@example.org\nSubject: no sender\n\nx\n' > "$mt/dir/nofrom.eml"
printf 'From: ann@example.com\nSubject: no recipients\n\nx\n' > "$mt/dir/norcpt.eml"
: > "$mt/dir/empty.eml"
{ printf 'From MAILER-DAEMON Thu Jan  1 00:00:00 2026\nFrom: ann@example.com\nTo: mb1@example.org\nSubject: mbox 1\n\nhi\n\n'
  printf 'From MAILER-DAEMON Thu Jan  1 00:00:00 2026\nFrom: ann@example.com\nSubject: mbox 2 without recipients\n\nhi\n\n'
  printf 'From MAILER-DAEMON Thu Jan  1 00:00:00 2026\nFrom: ann@example.com\nTo: mb3@example.org\nSubject: mbox 3\n\nhi\n'; } > "$mt/box.mbox"
mport=$(free_port)
/usr/bin/python3 "$peer" --port "$mport" --events "$tmp/mevents" --save-dir "$tmp/saved" >/dev/null 2>&1 &
mpid=$!; pids+=("$mpid")
check "aiosmtpd (saving messages) up" wait_port "$mport"
( cd "$mt" && status_is 4 "$bin" send --backend "$backend" -q -j "$tmp/mj.jsonl" --mail "127.0.0.1:$mport" one.eml md dir box.mbox missing.eml ); check "--mail: input errors are status 4" [ $? -eq 0 ]
check "--mail: one journal line per message, the right ones delivered or bad" py "$tmp/mj.jsonl" <<'PY'
import json, sys
got = {d["id"]: (d["status"], d.get("error", "")) for d in map(json.loads, open(sys.argv[1]))}
want = {"one.eml": "delivered", "md/cur/1.host:2,S": "delivered", "md/cur/2.host:2,": "delivered",
        "md/new/3.host": "delivered", "dir/a.eml": "delivered", "dir/b.eml": "delivered",
        "box.mbox#1": "delivered", "box.mbox#3": "delivered",
        "dir/nofrom.eml": "bad_input", "dir/norcpt.eml": "bad_input", "dir/empty.eml": "bad_input",
        "box.mbox#2": "bad_input", "missing.eml": "bad_input"}
reasons = {"dir/nofrom.eml": "From or Sender", "dir/norcpt.eml": "recipients", "dir/empty.eml": "empty",
           "box.mbox#2": "recipients", "missing.eml": "No such file"}
bad = [(k, got.get(k), v) for k, v in want.items() if got.get(k, ("",))[0] != v]
bad += [(k, got[k][1]) for k, r in reasons.items() if k in got and r not in got[k][1]]
extra = set(got) - set(want)
if bad or extra: print("  ", bad, extra, file=sys.stderr)
sys.exit(0 if not bad and not extra and sum(1 for _ in open(sys.argv[1])) == len(want) else 1)
PY
check "--mail: the envelope from the headers (From, Sender; To, Cc, a group, Bcc)" py "$tmp/mevents" <<'PY'
import sys
mails = [l.split("from=", 1)[1].strip() for l in open(sys.argv[1]) if l.startswith("MAIL ")]
rcpts = [l.split("rcpts=", 1)[1].strip() for l in open(sys.argv[1]) if l.startswith("DATA ")]
ok = sorted(mails) == sorted(["ann@example.com"] * 7 + ["sender@example.com"]) and \
     "b@example.org,c@example.org,d@example.org,secret@example.org" in rcpts and \
     not [r for r in rcpts if "tmp@" in r or "dot@" in r or "sub@" in r] and len(rcpts) == 8
if not ok: print("  ", mails, rcpts, file=sys.stderr)
sys.exit(0 if ok else 1)
PY
check "--mail: the Bcc header was not sent, the rest was" py "$tmp/saved" <<'PY'
import os, sys
d = sys.argv[1]
one = [open(os.path.join(d, f), "rb").read() for f in os.listdir(d)]
one = [m for m in one if b"Subject: one" in m]
ok = len(one) == 1 and b"secret@" not in one[0] and b"Bcc" not in one[0] and \
     b"the body" in one[0] and b"To: b@example.org" in one[0] and b"Cc: grp: d@example.org;" in one[0]
if not ok: print("  ", one, file=sys.stderr)
sys.exit(0 if ok else 1)
PY
( cd "$mt" && status_is 4 "$bin" send --backend "$backend" --json -j "$tmp/mj.jsonl" --mail "127.0.0.1:$mport" one.eml md dir box.mbox missing.eml && cp "$tmp/out" "$tmp/mrerun" ); check "--mail rerun: status 4 again" [ $? -eq 0 ]
check "--mail rerun: nothing sent, nothing journaled again" py "$tmp/mrerun" "$tmp/mj.jsonl" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
ok = d["submitted"] == 0 and d["skipped_delivered"] == 8 and d["bad_input"] == 5 and sum(1 for _ in open(sys.argv[2])) == 13
if not ok: print("  ", d, file=sys.stderr)
sys.exit(0 if ok else 1)
PY
printf 'From: ann@example.com\nTo: nofrom@example.org\nSubject: no sender, fixed\n\nx\n' > "$mt/dir/nofrom.eml"
( cd "$mt" && status_is 0 "$bin" send --backend "$backend" -q -j "$tmp/mj.jsonl" --mail "127.0.0.1:$mport" dir/nofrom.eml one.eml ); check "--mail: a file fixed since is sent on the rerun" [ $? -eq 0 ]
check "--mail: the fixed file's last line is delivered" py "$tmp/mj.jsonl" <<'PY'
import json, sys
last = {}
for d in map(json.loads, open(sys.argv[1])): last[d["id"]] = d["status"]
sys.exit(0 if last["dir/nofrom.eml"] == "delivered" and len(last) == 13 else 1)
PY
: > "$tmp/mevents"
check "--mail --from: one sender for all" status_is 0 send -q --mail --from bounce@example.net "127.0.0.1:$mport" "$mt/md"
check "--mail --from: MAIL FROM is it" py "$tmp/mevents" <<'PY'
import sys
mails = [l.split("from=", 1)[1].strip() for l in open(sys.argv[1]) if l.startswith("MAIL ")]
sys.exit(0 if mails == ["bounce@example.net"] * 3 else 1)
PY
kill "$mpid"; wait "$mpid" 2>/dev/null

# ---- mail merge: --template and --recipients, 10,000 rows with non-ASCII names ------
check "--template without --recipients" status_is 2 "$bin" send --template x.eml 127.0.0.1:1
check "--template with --mail" status_is 2 "$bin" send --template x.eml --recipients x.csv --mail 127.0.0.1:1 y
check "--template: a missing CSV cannot start" status_is 3 "$bin" send --template "$mt/one.eml" --recipients "$tmp/none.csv" 127.0.0.1:1
printf 'From: News <news@example.com>\nTo: "{{name}}" <{{email}}>\nSubject: Hallo {{name}}\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nDear {{ name }},\nyour code is {{code}}.\n' > "$tmp/merge.eml"
M=10000
py "$tmp/merge.csv" $M <<'PY'
import csv, sys
names = ["Jürgen Müller", "Zoë Ångström", "Łukasz Żółć", "山田 太郎", "Smith, John", "Ольга", "O'Brien"]
with open(sys.argv[1], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["email", "name", "code"])
    for i in range(int(sys.argv[2])):
        w.writerow([f"m{i}@example.org", f"{names[i % len(names)]} {i}", f"C{i}"])
    w.writerow(["short@example.org", "only two"])                        # too few fields
    w.writerow(["inj@example.org", "x\nBcc: victim@example.net", "C"])   # a header injection
    w.writerow(["not an address", "Bad", "C"])                           # a bad address
    w.writerow(["a@example.org", "too", "many", "fields"])               # too many fields
PY
rm -rf "$tmp/saved"; mkdir -p "$tmp/saved"
gport=$(free_port)
/usr/bin/python3 "$peer" --port "$gport" --events "$tmp/gevents" --save-dir "$tmp/saved" >/dev/null 2>&1 &
gpid=$!; pids+=("$gpid")
check "aiosmtpd for the merge up" wait_port "$gport"
check "merge: bad rows make status 4" status_is 4 send -q -j "$tmp/gj.jsonl" --template "$tmp/merge.eml" --recipients "$tmp/merge.csv" "127.0.0.1:$gport"
check "merge: one journal line per row, every good one delivered" journal_check "$tmp/gj.jsonl" $((M + 4)) $M
check "merge: each bad row has its reason and its row number" py "$tmp/gj.jsonl" $M <<'PY'
import json, sys
m = int(sys.argv[2])
bad = {d["position"].rsplit(":", 1)[1]: d["error"] for d in map(json.loads, open(sys.argv[1])) if d["status"] == "bad_input"}
want = {str(m + 2): "2 fields", str(m + 3): "line break", str(m + 4): "", str(m + 5): "4 fields"}
miss = [(k, w, bad.get(k)) for k, w in want.items() if k not in bad or w not in bad[k]]
if miss or len(bad) != 4: print("  ", miss, bad, file=sys.stderr)
sys.exit(0 if not miss and len(bad) == 4 else 1)
PY
check "merge: the injected Bcc reached no one" bash -c "! grep -q victim '$tmp/gevents'"
check "merge: what the server got decodes to each row's name (headers ASCII, RFC 2047)" py "$tmp/saved" $M <<'PY'
import email, email.policy, os, sys
d, m = sys.argv[1], int(sys.argv[2])
names = ["Jürgen Müller", "Zoë Ångström", "Łukasz Żółć", "山田 太郎", "Smith, John", "Ольга", "O'Brien"]
files = os.listdir(d)
bad = []
for f in files:
    raw = open(os.path.join(d, f), "rb").read()
    head, _, body = raw.partition(b"\r\n\r\n") if b"\r\n\r\n" in raw else raw.partition(b"\n\n")
    if any(c >= 0x80 for c in head): bad.append((f, "8-bit header")); continue
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    to = msg["To"].addresses[0]
    i = int(to.addr_spec[1:].split("@")[0])
    name = f"{names[i % len(names)]} {i}"
    if to.display_name != name or str(msg["Subject"]) != f"Hallo {name}":
        bad.append((f, to.display_name, str(msg["Subject"]), name))
    elif f"Dear {name},\nyour code is C{i}.".encode() not in body.replace(b"\r\n", b"\n"):
        bad.append((f, "body", body[:80]))
if bad or len(files) != m: print(f"  {len(files)} messages, {len(bad)} wrong: {bad[:3]}", file=sys.stderr)
sys.exit(0 if not bad and len(files) == m else 1)
PY
check "merge: a rerun sends nothing" status_is 4 send --json -j "$tmp/gj.jsonl" --template "$tmp/merge.eml" --recipients "$tmp/merge.csv" "127.0.0.1:$gport"
check "merge rerun: none submitted" py "$tmp/out" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if d["submitted"] == 0 and d["skipped_delivered"] == 10000 else 1)
PY
printf 'id,email\nx1,a@example.org\nx2,b@example.org\n' > "$tmp/few.csv"
check "merge: a variable without a column is each row's error" status_is 4 send -q -j "$tmp/fj.jsonl" --template "$tmp/merge.eml" --recipients "$tmp/few.csv" "127.0.0.1:$gport"
check "merge: both rows say which variable, by their id column's position" py "$tmp/fj.jsonl" <<'PY'
import json, sys
lines = list(map(json.loads, open(sys.argv[1])))
ok = len(lines) == 2 and all(d["status"] == "bad_input" and "{{name}}" in d["error"] for d in lines)
if not ok: print("  ", lines, file=sys.stderr)
sys.exit(0 if ok else 1)
PY
printf 'From: {{from}}\nTo: {{to}}\nSubject: t {{n}}\n\nrow {{n}}\n' > "$tmp/mt.eml"
printf '{"id": "t1", "from": "a@example.com", "to": ["t1@example.org"], "template": "%s", "vars": {"from": "a@example.com", "to": "t1@example.org", "n": 7}}\n{"id": "t2", "from": "a@example.com", "to": ["t2@example.org"], "template": "%s", "vars": {"n": 8}}\n' "$tmp/mt.eml" "$tmp/mt.eml" > "$tmp/tm.jsonl"
check "manifest template records: one sent, one without a variable" status_is 4 send -q -j "$tmp/tmj.jsonl" "127.0.0.1:$gport" "$tmp/tm.jsonl"
check "manifest template: t1 delivered, t2 names its missing variable" py "$tmp/tmj.jsonl" <<'PY'
import json, sys
d = {x["id"]: x for x in map(json.loads, open(sys.argv[1]))}
ok = d["t1"]["status"] == "delivered" and d.get("t2", d.get(next((k for k in d if k.endswith(":2")), ""), {})).get("status") == "bad_input"
sys.exit(0 if ok else 1)
PY
kill "$gpid"; wait "$gpid" 2>/dev/null

# ---- --metrics, scraped with curl while sending; the progress line on a pty --------
check "--metrics without a port" status_is 2 "$bin" send --metrics 127.0.0.1 127.0.0.1:1
make_manifest "$tmp/p.jsonl" 2000
start_sink --delay 100 --delay-ms 3
hport=$(free_port)
"$bin" send --backend "$backend" -q -s 2 -w 1 --metrics "127.0.0.1:$hport" "127.0.0.1:$sink_port" "$tmp/p.jsonl" 2>"$tmp/herr" &
hp=$!
check "metrics endpoint up" wait_port "$hport"
rm -f "$tmp"/scrape.*
k=0
for _ in $(seq 400); do  # 20 s at most: until the run ends, a scrape each 50 ms
  kill -0 $hp 2>/dev/null || break
  curl -sf --max-time 5 "http://127.0.0.1:$hport/metrics" > "$tmp/scrape.$k" 2>/dev/null && k=$((k + 1))
  sleep 0.05
done
check "metrics: another path is 404" bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://127.0.0.1:$hport/nothing)\" = 404 ] || ! kill -0 $hp 2>/dev/null"
wait $hp; hrc=$?
check "metrics run: all delivered" [ $hrc -eq 0 ]
check "metrics: the address said on stderr" grep -q "metrics at http://127.0.0.1:$hport/metrics" "$tmp/herr"
stop_sink
check "metrics: scrapes mid-run are consistent and move forward" py "$tmp" "$k" <<'PY'
import os, re, sys
d, k = sys.argv[1], int(sys.argv[2])
line = re.compile(r'^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$')
scrapes, problems = [], []
for i in range(k):
    m = {}
    for l in open(os.path.join(d, f"scrape.{i}")):
        l = l.rstrip("\n")
        if not l or l.startswith("# HELP ") or l.startswith("# TYPE "): continue
        g = line.match(l)
        if not g: problems.append(f"not exposition format: {l!r}"); continue
        m[g[1] + (g[2] or "")] = float(g[3])
    scrapes.append(m)
for m in scrapes:
    st = sum(v for n, v in m.items() if n.startswith("smtpbulk_send_messages_total{"))
    cat = sum(v for n, v in m.items() if n.startswith("smtpbulk_send_messages_by_category_total{"))
    bk = [v for n, v in m.items() if n.startswith("smtpbulk_send_latency_seconds_bucket{")]
    # Each value is exact, a scrape is no snapshot: results that end while it is
    # written may be in one count and not yet in the next.
    if bk != sorted(bk) or bk[-1] != m["smtpbulk_send_latency_seconds_count"] or \
       abs(st - cat) > 64 or abs(bk[-1] - st) > 64:
        problems.append(("inconsistent", st, cat, bk[-1:]))
    if not any(n.startswith('smtpbulk_host_messages_total{host="127.0.0.1:') for n in m):
        problems.append("no host label")
mid = [m["smtpbulk_send_messages_total{status=\"delivered\"}"] for m in scrapes
       if 0 < m["smtpbulk_send_messages_total{status=\"delivered\"}"] < 2000]
inflight = max((m["smtpbulk_send_in_flight"] for m in scrapes), default=0)
if len(mid) < 2 or mid != sorted(mid) or mid[0] == mid[-1] or inflight <= 0:
    problems.append(("not seen moving", mid[:3], mid[-3:], inflight))
print(f"  {k} scrapes, {len(mid)} mid-run, in flight up to {inflight:.0f}", file=sys.stderr)
if problems: print("  ", problems[:5], file=sys.stderr)
sys.exit(1 if problems else 0)
PY
start_sink --delay 100 --delay-ms 3
script -qfec "'$bin' send --backend $backend -s 2 -w 1 127.0.0.1:$sink_port '$tmp/p.jsonl'" /dev/null > "$tmp/pty.out" 2>&1
check "progress on a terminal: the run ends delivered" [ $? -eq 0 ]
check "progress on a terminal: counts, rate and ETA redrawn in place" py "$tmp/pty.out" <<'PY'
import re, sys
out = open(sys.argv[1], "rb").read().decode("utf-8", "replace")
lines = [l for l in out.split("\r") if l.startswith("sent ")]
eta = [l for l in lines if re.search(r"delivered \d+ .* msgs/s .*% .*ETA \d+:\d\d:\d\d", l)]
ok = len(eta) >= 2 and "\x1b[K" in out and "records 2000" in out
if not ok: print("  ", repr(out[:300]), file=sys.stderr)
sys.exit(0 if ok else 1)
PY
check "no progress line when stderr is no terminal" status_is 0 send -s 2 -w 1 "127.0.0.1:$sink_port" "$tmp/p.jsonl"
check "no progress line: stderr empty" [ ! -s "$tmp/err" ]
stop_sink

# ---- --metrics: a throttled host's pace in force, below the configured one ----------
make_manifest "$tmp/t.jsonl" 1000
start_sink --max-rate 100   # 421 4.7.0 beyond 100 a second: a throttling reply
hport=$(free_port)
"$bin" send --backend "$backend" -q -s 2 -w 1 --limit-rate 1000 --metrics "127.0.0.1:$hport" "127.0.0.1:$sink_port" "$tmp/t.jsonl" 2>"$tmp/terr" &
tp=$!
check "throttled run: metrics endpoint up" wait_port "$hport"
slowed=
for _ in $(seq 400); do  # 20 s at most: until a scrape shows the host slowed
  kill -0 $tp 2>/dev/null || break
  curl -sf --max-time 5 "http://127.0.0.1:$hport/metrics" > "$tmp/tscrape" 2>/dev/null &&
    py "$tmp/tscrape" <<'PY' && { slowed=1; break; }
import re, sys
t = open(sys.argv[1]).read()
now = [float(v) for v in re.findall(r'^smtpbulk_host_pace_per_second\{host="127\.0\.0\.1:\d+"\} (\S+)$', t, re.M)]
conf = [float(v) for v in re.findall(r'^smtpbulk_host_pace_configured_per_second\{host="127\.0\.0\.1:\d+"\} (\S+)$', t, re.M)]
sys.exit(0 if now and conf == [1000.0] and 0 < now[0] < 1000 else 1)
PY
  sleep 0.05
done
check "metrics: a throttled host's pace in force is below the configured 1000/s" [ -n "$slowed" ]
[ -n "$slowed" ] || tail -5 "$tmp/tscrape" >&2
kill "$tp" 2>/dev/null; wait "$tp" 2>/dev/null
stop_sink

# ---- --resume: temporary failures get a next attempt; what is due goes again -------
check "--resume without --journal" status_is 2 "$bin" send --resume 127.0.0.1:1
check "--retry-schedule bad" status_is 2 "$bin" send --retry-schedule 5x 127.0.0.1:1
make_manifest "$tmp/d.jsonl" 1000
start_sink --tempfail-rcpt 10
check "resume: 10% tempfailed, status 1" status_is 1 send -q -j "$tmp/dj.jsonl" --max-attempts 1 --retry-schedule 2s,1h "127.0.0.1:$sink_port" "$tmp/d.jsonl"
stop_sink
check "resume: each failed line has its next attempt about 2 s on, no delivered one has" py "$tmp/dj.jsonl" <<'PY'
import json, sys
lines = list(map(json.loads, open(sys.argv[1])))
failed = [d for d in lines if d["status"] == "failed"]
ok = 30 <= len(failed) <= 200 and all(0 < d["next_attempt"] - d["at"] <= 3 for d in failed) \
     and not any("next_attempt" in d for d in lines if d["status"] == "delivered")
if not ok: print("  ", len(failed), failed[:2], file=sys.stderr)
open(sys.argv[1] + ".failed", "w").write(str(len(failed)))
sys.exit(0 if ok else 1)
PY
nfailed=$(cat "$tmp/dj.jsonl.failed")
start_sink
# Right away (within the 2 s), before the first due time: nothing is due.
due=$(py "$tmp/dj.jsonl" <<'PY'
import json, sys
print(min(d["next_attempt"] for d in map(json.loads, open(sys.argv[1])) if d.get("next_attempt")))
PY
)
if [ "$(date +%s)" -lt "$due" ]; then
  check "resume before the due time: nothing sent, status 1" status_is 1 send --json -j "$tmp/dj.jsonl" --resume "127.0.0.1:$sink_port" "$tmp/d.jsonl"
  check "resume before the due time: all not due" py "$tmp/out" "$nfailed" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if d["submitted"] == 0 and d["not_due"] == int(sys.argv[2]) else 1)
PY
fi
# Wait for the last due time to pass (the journal says when), then resume.
last=$(py "$tmp/dj.jsonl" <<'PY'
import json, sys
print(max(d["next_attempt"] for d in map(json.loads, open(sys.argv[1])) if d.get("next_attempt")))
PY
)
for _ in $(seq 100); do [ "$(date +%s)" -ge "$last" ] && break; sleep 0.1; done
check "resume when due: the failed ones delivered, status 0" status_is 0 send --json -j "$tmp/dj.jsonl" --resume "127.0.0.1:$sink_port" "$tmp/d.jsonl"
check "resume when due: exactly the failed ones sent" py "$tmp/out" "$nfailed" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
ok = d["submitted"] == int(sys.argv[2]) and d["delivered"] == d["submitted"] and d["not_due"] == 0
if not ok: print("  ", d, file=sys.stderr)
sys.exit(0 if ok else 1)
PY
stop_sink
check "resume: every record's last line delivered, the failed ones had two" py "$tmp/dj.jsonl" "$nfailed" <<'PY'
import collections, json, sys
lines = list(map(json.loads, open(sys.argv[1])))
last, count = {}, collections.Counter(d["id"] for d in lines)
for d in lines: last[d["id"]] = d["status"]
ok = len(last) == 1000 and set(last.values()) == {"delivered"} and \
     sum(1 for c in count.values() if c == 2) == int(sys.argv[2]) and max(count.values()) == 2
if not ok: print("  ", len(last), collections.Counter(last.values()), collections.Counter(count.values()), file=sys.stderr)
sys.exit(0 if ok else 1)
PY
# A schedule used up: the message gives up (no next attempt), and --resume leaves it.
printf '{"id": "g1", "from": "a@example.com", "to": ["g@example.org"], "raw": "Subject: g\\n\\nx\\n"}\n' > "$tmp/g.jsonl"
start_sink --tempfail-rcpt 100
check "give up: first try fails" status_is 1 send -q -j "$tmp/gu.jsonl" --max-attempts 1 --retry-schedule 0s "127.0.0.1:$sink_port" "$tmp/g.jsonl"
check "give up: the resume sends it (due at once) and it fails again" status_is 1 send --json -j "$tmp/gu.jsonl" --resume --max-attempts 1 --retry-schedule 0s "127.0.0.1:$sink_port" "$tmp/g.jsonl"
check "give up: that second try was sent" py "$tmp/out" <<'PY'
import json, sys
sys.exit(0 if json.load(open(sys.argv[1]))["submitted"] == 1 else 1)
PY
check "give up: its last line has no next attempt" py "$tmp/gu.jsonl" <<'PY'
import json, sys
l = list(map(json.loads, open(sys.argv[1])))
sys.exit(0 if len(l) == 2 and "next_attempt" in l[0] and "next_attempt" not in l[1] else 1)
PY
check "give up: a further resume sends nothing" status_is 1 send --json -j "$tmp/gu.jsonl" --resume "127.0.0.1:$sink_port" "$tmp/g.jsonl"
check "give up: counted as final, not delivered" py "$tmp/out" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if d["submitted"] == 0 and d["skipped_undelivered"] == 1 else 1)
PY
stop_sink

# ---- TLS and AUTH: our sink with STARTTLS and an account ---------------------------
certs="$tmp/certs"
"$(dirname "$0")/../support/make_certs.sh" "$certs" >/dev/null 2>&1
check "test certificates made" [ -s "$certs/srv.pem" ]
printf 'tanstaaf\n' > "$tmp/pw"; printf 'wrong\n' > "$tmp/badpw"
check "send --password is refused" status_is 2 "$bin" send --password x 127.0.0.1:1
check "send --auth without --tls needs --auth-plaintext" status_is 2 "$bin" send --auth PLAIN --user tim --password-file "$tmp/pw" 127.0.0.1:1
check "send --tls-verify without --tls" status_is 2 "$bin" send --tls-verify 127.0.0.1:1
check "send --ca unreadable" status_is 2 "$bin" send --tls smtps --tls-verify --ca "$tmp/nonexistent.pem" 127.0.0.1:1
make_manifest "$tmp/s.jsonl" 300
start_sink --tls starttls --cert "$certs/srv.pem" --key "$certs/srv.key" --auth-user tim:tanstaaf
check "send over verified STARTTLS with AUTH AUTO" status_is 0 send -q -j "$tmp/sj.jsonl" --tls starttls --tls-verify --ca "$certs/ca.pem" --tls-name localhost --auth AUTO --user tim --password-file "$tmp/pw" "127.0.0.1:$sink_port" "$tmp/s.jsonl"
check "TLS + AUTH: one delivered line each" journal_check "$tmp/sj.jsonl" 300 300
check "a wrong password: every message failed, the reason in its line" status_is 1 send -q -j "$tmp/sbad.jsonl" --tls starttls --auth PLAIN --user tim --password-file "$tmp/badpw" "127.0.0.1:$sink_port" "$tmp/s.jsonl"
check "wrong password: failed lines say authentication" py "$tmp/sbad.jsonl" <<'PY'
import json, sys
l = list(map(json.loads, open(sys.argv[1])))
sys.exit(0 if len(l) == 300 and all(d["status"] == "failed" and "authentication" in d.get("error", "") for d in l) else 1)
PY
check "the wrong CA name: a certificate error" status_is 1 send -q -j "$tmp/scert.jsonl" --tls starttls --tls-verify --ca "$certs/ca.pem" --tls-name other.example "127.0.0.1:$sink_port" "$tmp/s.jsonl"
check "certificate error in the lines" grep -q "certificate" "$tmp/scert.jsonl"
stop_sink
check "the sink took the 300 of the good run only" [ "$(sink_messages)" -eq 300 ]

# ---- per-record "host", "headers" and "dsn" ---------------------------------------
start_sink
rm -rf "$tmp/saved"; mkdir -p "$tmp/saved"
xport=$(free_port)
/usr/bin/python3 "$peer" --port "$xport" --dsn --events "$tmp/xevents" --save-dir "$tmp/saved" >/dev/null 2>&1 &
xpid=$!; pids+=("$xpid")
check "aiosmtpd with DSN up" wait_port "$xport"
py "$tmp/x.jsonl" "127.0.0.1:$sink_port" "127.0.0.1:$xport" <<'PY'
import json, sys
path, sink, peer = sys.argv[1:4]
with open(path, "w") as f:
    for i in range(20):
        f.write(json.dumps({"id": f"s{i}", "from": "a@example.com", "to": [f"s{i}@example.org"],
                            "raw": "Subject: to the sink\n\nx\n", "host": sink}) + "\n")
    for i in range(10):
        f.write(json.dumps({"id": f"p{i}", "from": "a@example.com", "to": [f"p{i}@example.org", f"q{i}@example.org"],
                            "raw": f"Subject: to aiosmtpd {i}\n\nx\n", "host": peer,
                            "headers": {"X-Campaign": "spring", "X-Owner": "Jürgen"},
                            "dsn": {"ret": "HDRS", "envid": f"env+{i}=", "notify": "SUCCESS,FAILURE",
                                    "orcpt": [f"orig{i}@example.net", None]}}) + "\n")
    f.write(json.dumps({"id": "bad1", "from": "a@example.com", "to": ["b@example.org"], "raw": "x",
                        "host": "127.0.0.1:1"}) + "\n")
    f.write(json.dumps({"id": "bad2", "from": "a@example.com", "to": ["b@example.org"], "raw": "x",
                        "dsn": {"notify": "NEVER,SUCCESS"}}) + "\n")
    f.write(json.dumps({"id": "bad3", "from": "a@example.com", "to": ["b@example.org"], "raw": "x",
                        "headers": {"Bad Name": "v"}}) + "\n")
    f.write(json.dumps({"id": "bad4", "from": "a@example.com", "to": ["b@example.org"], "raw": "x",
                        "headers": {"X-Inject": "v\r\nBcc: victim@example.net"}}) + "\n")
PY
check "--extra-host: bad records make status 4" status_is 4 send -q -j "$tmp/xj.jsonl" --extra-host "127.0.0.1:$sink_port" "127.0.0.1:$xport" "$tmp/x.jsonl"
check "--extra-host: a line per record, the 30 good ones delivered" journal_check "$tmp/xj.jsonl" 34 30
check "per-record hosts: each went where it said" py "$tmp/xj.jsonl" "$sink_port" "$xport" <<'PY'
import json, sys
sink, peer = sys.argv[2], sys.argv[3]
d = {x["id"]: x for x in map(json.loads, open(sys.argv[1]))}
bad = [i for i, x in d.items() if x["status"] == "delivered" and
       x["host"] != "127.0.0.1" ]
reasons = {k: d[k]["error"] for k in d if k.startswith("bad") or d[k]["status"] == "bad_input"}
ok = len(reasons) == 4 and all(len(v) > 0 for v in reasons.values())
if not ok or bad: print("  ", reasons, bad[:3], file=sys.stderr)
sys.exit(0 if ok and not bad else 1)
PY
stop_sink
check "per-record hosts: the sink got its 20" [ "$(sink_messages)" -eq 20 ]
check "per-record hosts: aiosmtpd got its 10" [ "$(grep -c '^DATA ' "$tmp/xevents")" -eq 10 ]
check "DSN as aiosmtpd received it: RET, ENVID (xtext), NOTIFY, ORCPT on the first recipient only" py "$tmp/xevents" <<'PY'
import sys
ev = open(sys.argv[1]).read().splitlines()
mails = [l for l in ev if l.startswith("MAILARG ")]
rcpts = [l for l in ev if l.startswith("RCPTARG ")]
ok = len(mails) == 10 and all("RET=HDRS" in m and "ENVID=env+2B" in m and "+3D" in m for m in mails) and \
     len(rcpts) == 20 and all("NOTIFY=SUCCESS,FAILURE" in r for r in rcpts) and \
     sum("ORCPT=rfc822;orig" in r for r in rcpts) == 10 and not any("victim" in l for l in ev)
if not ok: print("  ", mails[:1], rcpts[:2], file=sys.stderr)
sys.exit(0 if ok else 1)
PY
check "headers in front of the message, the non-ASCII one encoded" py "$tmp/saved" <<'PY'
import email, email.policy, os, sys
d = sys.argv[1]
msgs = [email.message_from_bytes(open(os.path.join(d, f), "rb").read(), policy=email.policy.default) for f in os.listdir(d)]
raw = [open(os.path.join(d, f), "rb").read() for f in os.listdir(d)]
ok = len(msgs) == 10 and all(m["X-Campaign"] == "spring" and str(m["X-Owner"]) == "Jürgen" and m["Subject"].startswith("to aiosmtpd") for m in msgs) \
     and all(max(r.split(b"\n\n")[0].replace(b"\r", b"")) < 0x80 for r in raw)
if not ok: print("  ", [dict(m) for m in msgs[:1]], file=sys.stderr)
sys.exit(0 if ok else 1)
PY
kill "$xpid"; wait "$xpid" 2>/dev/null

echo "send: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
