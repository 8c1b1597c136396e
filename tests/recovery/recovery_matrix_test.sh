#!/usr/bin/env bash
# Runs the recovery matrix under Bazel, writing its logs to the test's outputs.
set -euo pipefail
dir="$TEST_SRCDIR/$TEST_WORKSPACE/tests/recovery"
exec bash "$dir/recovery_scenarios.sh" --tool "$dir/recovery_tool" \
  --out "${TEST_UNDECLARED_OUTPUTS_DIR:-$TEST_TMPDIR}/recovery"
