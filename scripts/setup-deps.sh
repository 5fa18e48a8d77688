#!/usr/bin/env bash
# Install the Debian 12 packages that smtpbulk's build, tests and demo need, when they
# are missing. Idempotent: installs nothing when everything is there. Uses sudo when
# not root.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git   # toolchain
  clang                                              # the clang preset and fuzzers
  liburing-dev liburcu-dev libwolfssl-dev            # the library's dependencies
  libjansson-dev                                     # JSON: the journal, send's manifests
  libgmime-3.0-dev                                   # MIME: message files' envelopes, mail merge
  libcsv-dev                                         # CSV: send's mail-merge recipient lists
  libmicrohttpd-dev curl                             # send --metrics over HTTP; curl scrapes it in tests
  help2man groff-base                                # man pages from --help, and their check
  libhiredis-dev redis-server                        # send --source redis://: Redis Streams, and its test peer
  libperl-dev libanyevent-perl                       # the Perl module (bindings/perl), and its AnyEvent test
  libgtest-dev                                       # tests
  postfix                                            # smtp-sink, smtp-source: test peers
  python3-aiosmtpd openssl                            # TLS/AUTH test peer, test certs
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
echo "setup-deps: installing ${missing[*]}" >&2
# Postfix asks how to configure itself: it is only a source of test tools here.
echo "postfix postfix/main_mailer_type select No configuration" | "${sudo[@]}" debconf-set-selections
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
