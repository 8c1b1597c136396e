#!/usr/bin/env bash
# Runs the 3-process cluster test with Debian's python3 (which has python3-grpcio).
set -euo pipefail
runfiles="${TEST_SRCDIR}/${TEST_WORKSPACE}"
export PYTHONPATH="${runfiles}/proto:${runfiles}/tests/service"
export PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 "${runfiles}/tests/service/cluster_test.py" "${runfiles}/service/nokv_server" \
  "${runfiles}/core/cli/nokv" "$@"
