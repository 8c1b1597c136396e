#!/usr/bin/env bash
# Kill -9 soak: `tests/recovery/kill_soak.sh --cycles N [--seed S]` starts the
# server, checks every acknowledged write, runs a mixed workload and SIGKILLs the
# server mid-way, N times (tests/recovery/kill_soak.py). Needs Debian's
# python3-grpcio (bazel/setup.sh installs it). Prints a JSON line per cycle and
# "KILL_SOAK {...}" with the totals; exit 1 if anything acknowledged was lost.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
if [ -z "${NOKV_SERVER:-}" ]; then
  bazel build -c opt //service:nokv_server //proto:kv_py_grpc >&2
  NOKV_SERVER="$root/bazel-bin/service/nokv_server"
  export PYTHONPATH="$root/bazel-bin/proto${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 "$root/tests/recovery/kill_soak.py" "$NOKV_SERVER" "$@"
