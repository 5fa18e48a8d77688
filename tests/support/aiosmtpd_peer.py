#!/usr/bin/python3
"""aiosmtpd as a test peer for smtpbulk: plaintext, STARTTLS or implicit TLS, with
AUTH (aiosmtpd's own PLAIN and LOGIN, plus XOAUTH2, OAUTHBEARER and SCRAM-SHA-256
written here from Google's XOAUTH2 page, RFC 7628 and RFC 5802, so our client meets an
implementation that is not ours).

Every MAIL, AUTH and message is written to --events as one line, saying whether the
connection was TLS at that moment, and every MAIL and RCPT argument as the client sent
it (MAILARG, RCPTARG): the tests assert on what the server saw. --dsn offers DSN
(RFC 3461) and takes its parameters; --lmtp speaks LMTP (aiosmtpd's own LMTP class),
answering after the data for each recipient: local parts starting lmtp-temp get 452,
lmtp-perm 550, others 250; --unix listens on a unix-domain socket instead of --port.
--save-dir DIR keeps each message as it arrived; --data-delay SEC answers each
message's data that late (a slow server). --max-rcpts N refuses recipients beyond N in a transaction the way Postfix's
smtpd_recipient_limit does (452 4.5.3); local parts starting greylist get 450 4.2.0 the
first time each address is seen, tempfail always, rcpt-perm 550 5.1.1 (not under
--lmtp, whose recipients answer after the data); DATA lines list the recipients.
The token mechanisms' lines also say which connection (conn=, numbered from 1 in the
order they came) and which AUTH on it (n=), so a test counts logins per connection.
Runs until SIGTERM.
"""
import argparse
import asyncio
import base64
import hashlib
import hmac
import itertools
import os
import signal
import ssl
import sys
import threading

from aiosmtpd.controller import Controller, UnixSocketController
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, default=0)
p.add_argument("--unix", help="listen on this unix-domain socket path, not on --port")
p.add_argument("--lmtp", action="store_true", help="speak LMTP (RFC 2033)")
p.add_argument("--dsn", action="store_true", help="offer DSN (RFC 3461) and accept its parameters")
p.add_argument("--tls", choices=["none", "smtps", "starttls"], default="none")
p.add_argument("--cert")
p.add_argument("--key")
p.add_argument("--user")
p.add_argument("--password")
p.add_argument("--auth-plaintext", action="store_true", help="allow AUTH without TLS")
p.add_argument("--scram-bad-signature", action="store_true",
               help="answer SCRAM with a wrong server signature (a man in the middle)")
p.add_argument("--client-ca", help="require a client certificate signed by this CA")
p.add_argument("--token", action="append", default=[],
               help="a bearer token XOAUTH2 and OAUTHBEARER accept (repeatable); "
                    "none given: --password is the one")
p.add_argument("--refuse-first-token", action="store_true",
               help="refuse the first token AUTH of every connection, as a server does "
                    "a token that expired while the client held it")
p.add_argument("--max-rcpts", type=int, default=0,
               help="refuse recipients beyond this many per transaction (452 4.5.3)")
p.add_argument("--save-dir", help="write each message received to DIR/N.eml (N from 1)")
p.add_argument("--data-delay", type=float, default=0,
               help="answer each message's data this many seconds late (a slow server; "
                    "its DATA event is written on arrival)")
p.add_argument("--events", required=True)
args = p.parse_args()

lock = threading.Lock()
events = open(args.events, "a", buffering=1)
saved = itertools.count(1)


def event(line):
    with lock:
        events.write(line + "\n")


def is_tls(server, session):
    if session.ssl is not None:
        return True
    t = getattr(server, "transport", None)
    return bool(t and t.get_extra_info("ssl_object"))


def client_cn(server):
    t = getattr(server, "transport", None)
    cert = t.get_extra_info("peercert") if t else None
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value.replace(" ", "_")
    return "-"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword) and args.user is not None
          and auth_data.login.decode() == args.user
          and auth_data.password.decode() == args.password)
    event(f"AUTH {mechanism} {'ok' if ok else 'bad'} tls={int(is_tls(server, session))}")
    return AuthResult(success=ok, handled=False)  # handled=True would send no reply


def token_event_fields(server):
    """conn= this connection's number, n= which token AUTH on it this is."""
    return f"conn={server.conn_id} n={server.token_auths}"


def token_ok(server, auth):
    """The "auth" value carries an accepted bearer token, unless this is the first
    token AUTH of the connection and --refuse-first-token says no to those."""
    server.token_auths += 1
    if args.refuse_first_token and server.token_auths == 1:
        return False
    accepted = args.token or [args.password]
    return auth is not None and auth.startswith("Bearer ") and auth[7:] in accepted


greylisted = set()


class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if args.max_rcpts and len(envelope.rcpt_tos) >= args.max_rcpts:
            return "452 4.5.3 Error: too many recipients"
        if not args.lmtp:
            if address.startswith("greylist") and address not in greylisted:
                greylisted.add(address)
                return "450 4.2.0 <%s>: Recipient address rejected: Greylisted" % address
            if address.startswith("tempfail"):
                return "451 4.3.0 <%s>: Temporary lookup failure" % address
            if address.startswith("rcpt-perm"):
                return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        event(f"MAIL tls={int(is_tls(server, session))} client={client_cn(server)} "
              f"from={address}")
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if args.save_dir:  # before its event, so a test that saw the event finds the file
            with lock:
                n = next(saved)
            with open(os.path.join(args.save_dir, f"{n}.eml"), "wb") as f:
                f.write(envelope.original_content or envelope.content)
        event(f"DATA tls={int(is_tls(server, session))} bytes={len(envelope.content)} "
              f"rcpts={','.join(envelope.rcpt_tos)}")
        if args.data_delay:
            await asyncio.sleep(args.data_delay)  # this session only: the others go on
        if not args.lmtp:
            return "250 OK queued"
        # RFC 2033 §4.2: one reply per accepted recipient, in their order.
        replies = []
        for rcpt in envelope.rcpt_tos:
            if rcpt.startswith("lmtp-temp"):
                replies.append(f"452 4.2.2 <{rcpt}> mailbox full")
            elif rcpt.startswith("lmtp-perm"):
                replies.append(f"550 5.1.1 <{rcpt}> no such user here")
            else:
                replies.append(f"250 2.0.0 <{rcpt}> delivered")
            event(f"LMTP {replies[-1]}")
        return "\r\n".join(replies)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if args.dsn:
            responses.insert(len(responses) - 1, "250-DSN")
        return responses

    # Google's XOAUTH2: "user=" user ^A "auth=Bearer " token ^A ^A; a refusal is a 334
    # with an error report (JSON), answered with an empty line, then 535.
    async def auth_XOAUTH2(self, server, argv):
        if len(argv) < 2:
            return AuthResult(success=False, handled=False)
        raw = base64.b64decode(argv[1])
        parts = dict(kv.split("=", 1) for kv in raw.decode().split("\x01") if "=" in kv)
        ok = parts.get("user") == args.user and token_ok(server, parts.get("auth"))
        where = token_event_fields(server)
        if ok:
            event(f"AUTH XOAUTH2 ok tls={int(is_tls(server, server.session))} {where}")
            return AuthResult(success=True)
        reply = await server.challenge_auth(b'{"status":"401","schemes":"bearer"}')
        event(f"AUTH XOAUTH2 bad tls={int(is_tls(server, server.session))} {where} "
              f"reply={'empty' if reply == b'' else 'other'}")
        return AuthResult(success=False, handled=reply is MISSING)

    # RFC 7628 3.1: gs2-header ^A *(key "=" value ^A) ^A, the GS2 header "n,a=" authzid ","
    # (RFC 5801 saslname); a refusal is an error report (3.2.2), which the client must
    # answer with a single ^A (3.2.3) before the server's 535.
    async def auth_OAUTHBEARER(self, server, argv):
        if len(argv) < 2:
            return AuthResult(success=False, handled=False)
        raw = base64.b64decode(argv[1]).decode()
        header, sep, rest = raw.partition(",\x01")
        flag, _, authzid = header.partition(",")
        user = authzid[2:].replace("=2C", ",").replace("=3D", "=") if authzid else ""
        kvs = rest.split("\x01")
        # "k=v" ^A ... "k=v" ^A ^A: the split ends with two empty strings
        framed = (sep and flag == "n" and (not authzid or authzid.startswith("a="))
                  and len(kvs) >= 3 and kvs[-2:] == ["", ""]
                  and all("=" in kv for kv in kvs[:-2]))
        parts = dict(kv.split("=", 1) for kv in kvs[:-2]) if framed else {}
        ok = framed and user == args.user and token_ok(server, parts.get("auth"))
        where = (f"{token_event_fields(server)} host={parts.get('host', '-')} "
                 f"port={parts.get('port', '-')}")
        if ok:
            event(f"AUTH OAUTHBEARER ok tls={int(is_tls(server, server.session))} {where}")
            return AuthResult(success=True)
        report = (b'{"status":"invalid_token","scope":"mail",'
                  b'"openid-configuration":"https://peer.test/.well-known/openid-configuration"}')
        reply = await server.challenge_auth(report)
        answer = "kvsep" if reply == b"\x01" else "other"
        event(f"AUTH OAUTHBEARER bad tls={int(is_tls(server, server.session))} {where} "
              f"reply={answer}")
        return AuthResult(success=False, handled=reply is MISSING)

    # RFC 5802 with SHA-256 (RFC 7677), server side.
    async def auth_SCRAM__SHA__256(self, server, argv):
        first = base64.b64decode(argv[1]) if len(argv) > 1 else await server.challenge_auth("")
        first = first.decode()
        if not first.startswith("n,,"):
            return AuthResult(success=False, handled=False)
        bare = first[3:]
        fields = dict(kv.split("=", 1) for kv in bare.split(","))
        salt, iters = os.urandom(16), 4096
        nonce = fields["r"] + base64.b64encode(os.urandom(18)).decode()
        server_first = f"r={nonce},s={base64.b64encode(salt).decode()},i={iters}"
        final = (await server.challenge_auth(server_first)).decode()
        without_proof, proof = final.rsplit(",p=", 1)
        salted = hashlib.pbkdf2_hmac("sha256", args.password.encode(), salt, iters)
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        stored = hashlib.sha256(client_key).digest()
        auth_msg = f"{bare},{server_first},{without_proof}".encode()
        sig = hmac.new(stored, auth_msg, "sha256").digest()
        expected = bytes(a ^ b for a, b in zip(client_key, sig))
        ok = (fields.get("n") == args.user and f"r={nonce}" in without_proof
              and hmac.compare_digest(base64.b64decode(proof), expected))
        event(f"AUTH SCRAM-SHA-256 {'ok' if ok else 'bad'} "
              f"tls={int(is_tls(server, server.session))}")
        if not ok:
            return AuthResult(success=False, handled=False)
        server_key = hmac.new(salted, b"Server Key", "sha256").digest()
        server_sig = hmac.new(server_key, auth_msg, "sha256").digest()
        if args.scram_bad_signature:
            server_sig = bytes(32)
        await server.challenge_auth(f"v={base64.b64encode(server_sig).decode()}")
        return AuthResult(success=True)


def tls_context():
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.cert, args.key)
    if args.client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(args.client_ca)
    return ctx


class PeerSMTP(LMTP if args.lmtp else SMTP):
    """aiosmtpd's SMTP (or LMTP), with RFC 4954's 12,288 octets for an AUTH line (bearer
    tokens of a few kilobytes) instead of 512, and the counters the token mechanisms
    log."""
    line_length_limit = 12288
    conn_ids = itertools.count(1)

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.command_size_limits["AUTH"] = 12288
        self.conn_id = next(PeerSMTP.conn_ids)
        self.token_auths = 0

    async def smtp_MAIL(self, arg):
        event(f"MAILARG {arg}")
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg):
        event(f"RCPTARG {arg}")
        await super().smtp_RCPT(arg)

    def _getparams(self, params):
        # aiosmtpd knows no DSN: with --dsn its parameters are taken (and seen above).
        result = super()._getparams(params)
        if result is not None and args.dsn:
            for key in ("RET", "ENVID", "NOTIFY", "ORCPT"):
                result.pop(key, None)
        return result


class Factory:
    def factory(self):
        kw = dict(
            hostname="peer.test",
            authenticator=authenticator if args.user else None,
            # aiosmtpd counts only STARTTLS as TLS: with implicit TLS (smtps) every
            # connection is TLS already.
            auth_require_tls=not args.auth_plaintext and args.tls != "smtps",
        )
        if args.tls == "starttls":
            kw["tls_context"] = tls_context()
        return PeerSMTP(self.handler, **kw)


class PeerController(Factory, Controller):
    pass


class PeerUnixController(Factory, UnixSocketController):
    pass


ssl_ctx = tls_context() if args.tls == "smtps" else None
if args.unix:
    ctl = PeerUnixController(Handler(), unix_socket=args.unix, ssl_context=ssl_ctx,
                             ready_timeout=10)
else:
    ctl = PeerController(Handler(), hostname="127.0.0.1", port=args.port,
                         ssl_context=ssl_ctx, ready_timeout=10)
ctl.start()
print("ready", flush=True)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
signal.signal(signal.SIGINT, lambda *_: stop.set())
while not stop.wait(0.2):
    pass
ctl.stop()
sys.exit(0)
