#!/usr/bin/env bash
# Runs the adversarial client suite with Debian's python3 (python3-grpcio).
set -euo pipefail
runfiles="${TEST_SRCDIR}/${TEST_WORKSPACE}"
export PYTHONPATH="${runfiles}/proto"
export PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 "${runfiles}/tests/service/adversarial_test.py" \
  "${runfiles}/service/nokv_server"
