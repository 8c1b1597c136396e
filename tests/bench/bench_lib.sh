# Shared by the benchmark scripts (sourced, not run): starting and stopping
# nokv_server, and building the Badger harnesses offline.

pid=""

# Starts nokv_server ($1) on a free loopback port with data directory $2,
# logging to $3, with any further flags; sets pid and addr once it listens.
start_nokv_server() {
  local server=$1 dir=$2 log=$3
  shift 3
  "$server" --listen=127.0.0.1:0 --data_dir="$dir" "$@" > "$log" 2>&1 &
  pid=$!
  local line=""
  for _ in $(seq 300); do
    line=$(grep -m1 'listening on' "$log" || true)
    [ -n "$line" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.1  # polling the server's log for its port
  done
  [ -n "$line" ] || { echo "nokv_server did not start" >&2; exit 1; }
  addr=$(sed -E 's/.*listening on ([^ ,]+).*/\1/' <<<"$line")
}

# A free loopback TCP port.
free_port() {
  /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts a single-node etcd (Debian's etcd-server) named $1 with data directory
# $2, logging to $3; sets pid and addr. Callers wait for it to answer.
start_etcd() {
  local name=$1 dir=$2 log=$3 cport pport
  cport=$(free_port) pport=$(free_port)
  etcd --name "$name" --data-dir "$dir" \
    --listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
    --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
    --initial-cluster "$name=http://127.0.0.1:$pport" --log-level error --logger zap \
    > "$log" 2>&1 &
  pid=$!
  addr="127.0.0.1:$cport"
}

# Stops the server started last (SIGTERM, then waits for it).
stop_server() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
  fi
}

# Builds tests/bench/badger/$2 (with common.go) into $1, offline in GOPATH
# mode from Debian's Badger sources; the build log goes to $1.log.
build_badger() {
  local out=$1 main=$2
  if [[ ! -d /usr/share/gocode/src/github.com/dgraph-io/badger ]] || ! command -v go >/dev/null; then
    echo "needs golang-go and golang-github-dgraph-io-badger-dev (run bazel/setup.sh)" >&2
    exit 1
  fi
  GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="${GOCACHE:-$(dirname "$out")/gocache}" GOFLAGS= \
    go build -o "$out" tests/bench/badger/common.go "tests/bench/badger/$main" 2> "$out.log" || {
    cat "$out.log" >&2
    exit 1
  }
}
