#!/usr/bin/env bash
# Runs the Python client test with Debian's python3 (which has python3-grpcio),
# importing the stubs Bazel generated from the .proto files.
set -euo pipefail
runfiles="${TEST_SRCDIR}/${TEST_WORKSPACE}"
export PYTHONPATH="${runfiles}/proto:${runfiles}/tests/service/protos:${runfiles}/tests/service"
export PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 "${runfiles}/tests/service/python_client_test.py" \
  "${runfiles}/service/nokv_server"
