#!/usr/bin/env bash
# Makes the certificates the TLS tests use, with openssl, into DIR:
#   ca.crt                     the CA the server trusts for clients and clients for the server
#   server.crt/.key            localhost and 127.0.0.1, signed by ca
#   client.crt/.key            signed by ca
#   expired-client.crt/.key    signed by ca, no longer valid
#   other-ca.crt               a second CA
#   other-server.crt/.key      localhost and 127.0.0.1, signed by other-ca (a rotation's target)
#   other-client.crt/.key      signed by other-ca
# EC P-256 keys: quick to make. Usage: make_certs.sh DIR
set -euo pipefail
dir=$1
mkdir -p "$dir"
cd "$dir"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

ca() {  # name subject
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -out "$1.crt" -days 30 -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

leaf() {  # name ca days usage [san]
  local ext
  ext=$(mktemp)
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\n' \
    "$4" >"$ext"
  [ -z "${5:-}" ] || printf 'subjectAltName=%s\n' "$5" >>"$ext"
  key "$1.key"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$1" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA "$2.crt" -CAkey "$2.key" -CAcreateserial -days "$3" \
    -extfile "$ext" -out "$1.crt" 2>/dev/null
  rm -f "$1.csr" "$ext"
}

ca ca "NoKV-C test CA"
ca other-ca "NoKV-C other test CA"
leaf server ca 30 serverAuth "DNS:localhost,IP:127.0.0.1"
leaf other-server other-ca 30 serverAuth "DNS:localhost,IP:127.0.0.1"
leaf client ca 30 clientAuth
leaf other-client other-ca 30 clientAuth
leaf expired-client ca -1 clientAuth
