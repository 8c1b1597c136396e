#!/usr/bin/env bash
# Runs docs_grpcurl_test.py with Debian's python3 (which has python3-grpcio).
set -euo pipefail
runfiles="${TEST_SRCDIR}/${TEST_WORKSPACE}"
export PYTHONPATH="${runfiles}/tests/service/protos:${runfiles}/tests/service"
export PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 "${runfiles}/tests/service/docs_grpcurl_test.py" "${runfiles}"
