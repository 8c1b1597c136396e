#!/usr/bin/env bash
# A short kill -9 soak under Bazel: $NOKV_SOAK_CYCLES cycles (default 12).
set -euo pipefail
runfiles="$TEST_SRCDIR/$TEST_WORKSPACE"
export PYTHONPATH="$runfiles/proto"
export PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 "$runfiles/tests/recovery/kill_soak.py" "$runfiles/service/nokv_server" \
  --cycles "${NOKV_SOAK_CYCLES:-12}" --out "${TEST_UNDECLARED_OUTPUTS_DIR:-$TEST_TMPDIR}"
