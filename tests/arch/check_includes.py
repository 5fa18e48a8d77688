#!/usr/bin/env python3
"""The include arrows of DESIGN.md, checked: a module is a .c and its .h (same stem);
an arrow runs from a module to each local header it includes.

- engine/ has no include cycle among its modules;
- engine/ includes nothing of api/ but the public header, nothing of tools/ or tests/;
- the protocol modules include no I/O header (liburing, epoll, wolfSSL's TLS, io.h,
  transport.h, tls.h); SASL may use wolfCrypt's hashes (pure functions over buffers);
- each third-party header has one home (wolfCrypt: TLS and SASL);
- tools/ includes only the public headers and tools' own files, except the built-in
  sink (sink_server, sink_proto), a server on the engine's I/O layer, and load's
  phase percentiles (load_phases), which use the engine's latency histogram rather
  than a second one.
Prints what breaks a rule and exits 1; prints the module order and exits 0 otherwise.
"""
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
inc = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)
PROTOCOL = {"smtp_reply", "smtp_cmd", "command", "smtp_caps", "dotstuff", "session", "sasl", "conn_policy",
            "message", "timer_heap"}
IO_HEADERS = {"liburing.h", "sys/epoll.h", "io.h", "transport.h", "tls.h"}
HOMES = {"liburing.h": {"io_uring_backend"}, "sys/epoll.h": {"epoll_backend"},
         "wolfssl/ssl.h": {"tls"}, "urcu/wfcqueue.h": {"queue"}}
PUBLIC = {"smtpbulk.h", "smtpbulk_send.h"}  # api/include: the installed headers
SINK = {"sink_server", "sink_proto"}
ENGINE_USERS = SINK | {"load_phases"}
errors = []


def files(d):
    for f in sorted(os.listdir(os.path.join(root, d))):
        if f.endswith((".c", ".h")):
            yield f, open(os.path.join(root, d, f), encoding="utf-8").read()


# engine: module graph
local = {f[:-2] for f, _ in files("engine")}
graph = {m: set() for m in local}
for f, text in files("engine"):
    mod = f[:-2]
    for kind, name in inc.findall(text):
        base = os.path.basename(name)
        if name.startswith("../") or "tools/" in name or "tests/" in name:
            errors.append(f"engine/{f} includes {name}: engine/ sees only itself and the public header")
        for hdr, homes in HOMES.items():
            if name == hdr and mod not in homes:
                errors.append(f"engine/{f} includes {name}: its home is {', '.join(sorted(homes))}")
        if name.startswith("wolfssl/") and name != "wolfssl/ssl.h" and mod not in {"tls", "sasl"}:
            errors.append(f"engine/{f} includes {name}: wolfCrypt's homes are tls and sasl")
        if mod in PROTOCOL and (name in IO_HEADERS or name == "wolfssl/ssl.h"):
            errors.append(f"engine/{f} includes {name}: a protocol module does no I/O")
        if kind == '"' and base.endswith(".h") and base[:-2] in local and base[:-2] != mod:
            graph[mod].add(base[:-2])

# cycles (Tarjan)
index, low, stack, on, order, sccs = {}, {}, [], set(), [], []
counter = [0]


def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in sorted(graph[v]):
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on.discard(w)
            comp.append(w)
            if w == v:
                break
        sccs.append(comp)


sys.setrecursionlimit(10000)
for v in sorted(graph):
    if v not in index:
        visit(v)
for comp in sccs:
    if len(comp) > 1:
        errors.append("engine/ include cycle: " + " -> ".join(sorted(comp)))

# tools
for f, text in files("tools"):
    mod = f[:-2]
    for kind, name in inc.findall(text):
        if kind != '"':
            continue
        own = os.path.exists(os.path.join(root, "tools", name))
        if name in PUBLIC or own:
            continue
        if mod in ENGINE_USERS and os.path.exists(os.path.join(root, "engine", name)):
            continue
        errors.append(f"tools/{f} includes {name}: tools/ uses the public header and its own files")

if errors:
    print("\n".join(errors))
    sys.exit(1)
print("engine modules, each after what it includes: " + " ".join(c[0] for c in sccs))
print("no cycle; tools/ and engine/ arrows as DESIGN.md says")
