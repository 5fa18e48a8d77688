#!/usr/bin/env bash
# 10,000 sessions from smtpbulk load to smtpbulk sink (separate processes, so each
# needs only 10,000 files), and the client's resident memory per idle connection.
cd "$(dirname "$0")/.."
cmake --preset release >/dev/null && cmake --build --preset release --target smtpbulk_cli >/dev/null
b=./build/release/smtpbulk
$b sink --listen 127.0.0.1:${PORT:-25251} --threads 2 --json > /tmp/s.out 2>/tmp/s.err & spid=$!
sleep 0.3
rss_at() { # sessions [load options]: a slow rate keeps the connections idle; VmRSS after 3.5 s
  local n=$1; shift
  $b load -q -s "$n" --rate 20 --duration 5 --json "$@" 127.0.0.1:${PORT:-25251} > "/tmp/l.$n.json" & local lp=$!
  sleep 3.5; awk '/VmRSS/ {print $2}' /proc/$lp/status; wait $lp
}
for recv in pooled plain; do
  opt=(); [ $recv = plain ] && opt=(--plain-recv)
  r10=$(rss_at 10 "${opt[@]}"); r10k=$(rss_at 10000 "${opt[@]}")
  echo "client RSS ($recv receives): 10 sessions $r10 KB, 10000 sessions $r10k KB => $(( (r10k - r10) * 1024 / 9990 )) bytes per idle connection"
done
/usr/bin/time -f "client max RSS %M KB" $b load -s 10000 -m 200000 --json 127.0.0.1:${PORT:-25251}
kill -TERM $spid; wait $spid; cat /tmp/s.out
