#!/usr/bin/env bash
# Runs image_test.py with Debian's python3 (which has python3-grpcio).
set -euo pipefail
runfiles="${TEST_SRCDIR}/${TEST_WORKSPACE}"
export PYTHONPATH="${runfiles}/proto:${runfiles}/tests/service/protos"
export PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 "${runfiles}/deploy/image/image_test.py" "${runfiles}"
