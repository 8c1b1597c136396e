#!/usr/bin/env bash
# Installs the Debian 12 packages NoKV-C builds and tests with, and checks that the
# installed upstream versions are the ones the build is pinned to (bazel/deps.bzl
# checks them again at build time). Idempotent: a machine that already has
# everything at the right versions is left alone, with no network access.
set -euo pipefail

# package  pinned upstream version prefix
PINNED="
bazel-bootstrap          4.2.3
bazel-rules-java         4.0.0
openjdk-17-jdk-headless  17.
build-essential          12.
pkg-config               1.8.
libgrpc++-dev            1.51.
protobuf-compiler-grpc   1.51.
libprotobuf-dev          3.21.
protobuf-compiler        3.21.
libprotobuf-c-dev        1.4.
protobuf-c-compiler      1.4.
libabsl-dev              20220623
libzstd-dev              1.5.
libxxhash-dev            0.8.
libmicrohttpd-dev        0.9.75
python3-prometheus-client 0.16.
googletest               1.12.
libgtest-dev             1.12.
libgmock-dev             1.12.
python3-grpcio           1.51.
python3-protobuf         3.21.
librocksdb-dev           7.8.
libleveldb-dev           1.23
golang-go                1.19
golang-github-dgraph-io-badger-dev 2.2007.
etcd-server              3.4.
podman                   4.3.
skopeo                   1.9.
libraft-dev              0.15.
libuv1-dev               1.44.
"

upstream_version() {  # installed version of $1 without epoch and Debian revision
  dpkg-query -W -f='${Status} ${Version}\n' "$1" 2>/dev/null |
    awk '$3 == "installed" { v = $4; sub(/^[0-9]+:/, "", v); print v }' || true
}

missing=()
while read -r pkg want; do
  [ -n "$pkg" ] || continue
  have=$(upstream_version "$pkg")
  case "$have" in
    "$want"*) ;;
    *) missing+=("$pkg") ;;
  esac
done <<<"$PINNED"

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

bad=0
while read -r pkg want; do
  [ -n "$pkg" ] || continue
  have=$(upstream_version "$pkg")
  case "$have" in
    "$want"*) ;;
    *) echo "setup: Debian package $pkg is '${have:-not installed}', NoKV-C is pinned to $want*" >&2
       bad=1 ;;
  esac
done <<<"$PINNED"
# The npm packages of the manifest checks, at the versions and hashes
# tests/deploy/package-lock.json pins (Node.js and npm come with the machine).
npm_dir=$(cd "$(dirname "$0")/../tests/deploy" && pwd)
if ! cmp -s "$npm_dir/package-lock.json" "$npm_dir/node_modules/.package-lock.json.installed" 2>/dev/null; then
  if ! command -v npm >/dev/null; then
    echo "setup: npm is missing (Node.js); the manifest checks need it" >&2
    exit 1
  fi
  echo "setup: npm ci in $npm_dir" >&2
  (cd "$npm_dir" && npm ci --no-audit --no-fund --loglevel=error) || exit 1
  cp "$npm_dir/package-lock.json" "$npm_dir/node_modules/.package-lock.json.installed"
fi
exit $bad
