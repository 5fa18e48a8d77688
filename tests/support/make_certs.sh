#!/usr/bin/env bash
# A throwaway CA and a server certificate for localhost and 127.0.0.1 (openssl), for the
# command-line tests: DIR/ca.pem, DIR/srv.pem, DIR/srv.key. usage: make_certs.sh DIR
set -euo pipefail
mkdir -p "$1"
cd "$1"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 2 -subj '/CN=smtpbulk test CA'
openssl req "${ec[@]}" -keyout srv.key -out srv.csr -subj '/CN=localhost'
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > ext
openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext
