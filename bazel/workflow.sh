#!/usr/bin/env bash
# The two things a newcomer does, each installing what it needs first:
#   bazel/workflow.sh serve [server flags]   build and start the server
#   bazel/workflow.sh test                   run every test, ending "N passed, N failed"
#   bazel/workflow.sh image                  build the container image (artifacts/image/)
set -euo pipefail
cd "$(dirname "$0")/.."
bash bazel/setup.sh

serve() {
  bazel build --config=opt //service:nokv_server
  exec bazel-bin/service/nokv_server "$@"
}

# The container image (deploy/image/build_image.py): nokv-c:$(cat VERSION) as an
# OCI layout and a docker-archive under artifacts/image/. Timestamps come from
# the last commit (or SOURCE_DATE_EPOCH), so a rebuild of the same commit on the
# same packages gives the same digests.
image() {
  bazel build --config=opt //service:nokv_server //service:nokv-remote //core/cli:nokv
  local epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
  /usr/bin/python3 deploy/image/build_image.py --out artifacts/image \
    --version "$(cat VERSION)" --revision "$(git rev-parse HEAD 2>/dev/null || true)" \
    --epoch "$epoch" \
    --binary nokv_server=bazel-bin/service/nokv_server \
    --binary nokv=bazel-bin/core/cli/nokv \
    --binary nokv-remote=bazel-bin/service/nokv-remote
}

# Runs one `bazel test` invocation and adds its per-target results to the
# totals. A build or analysis failure that names no target counts as one failure.
passed=0
failed=0
run_tests() {
  local label=$1
  shift
  local log
  log=$(mktemp)
  echo "== bazel test $* ($label)"
  set +e
  bazel test "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  set -e
  local p f
  p=$(grep -cE '^//[^ ]+ +(\(cached\) )?PASSED' "$log" || true)
  f=$(grep -cE '^//[^ ]+ +(\(cached\) )?(FAILED|TIMEOUT|FLAKY|NO STATUS|INCOMPLETE)' "$log" || true)
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  echo "== $label: $p passed, $f failed"
  passed=$((passed + p))
  failed=$((failed + f))
  rm -f "$log"
}

# The recovery matrix's logs and summary (a Bazel test's undeclared outputs)
# go to artifacts/recovery/, and its RECOVERY_METRIC lines to the output.
collect_recovery_artifacts() {
  local zip=bazel-testlogs/tests/recovery/recovery_matrix_test/test.outputs/outputs.zip
  [ -f "$zip" ] || return 0
  rm -rf artifacts/recovery
  mkdir -p artifacts
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
    "$zip" artifacts
  grep -h '^RECOVERY_METRIC' artifacts/recovery/*.log 2>/dev/null | cut -c1-300 || true
}

# The engine's, replication, crash, recovery and service C++ tests run under ASan+UBSan
# (they gain its checks, and run once: a plain build of them too would cost the
# two-core machine minutes for nothing ASan does not catch); everything else,
# and the tests too heavy for the sanitizers, in the plain build.
SANITIZED="//tests/core/... //repl/... //tests/crash/... //tests/recovery/... //tests/service:service_test
  //tests/service:txn_stream_test //tests/service:scan_wire_test //tests/service:security_test
  //tests/service:adversarial_test"
HEAVY="//tests/core:vlog_space_test"

run_all_tests() {
  local excluded=()
  for t in $SANITIZED; do excluded+=("-$t"); done
  # shellcheck disable=SC2086
  run_tests "default" -- //... "${excluded[@]}" $HEAVY
  # gRPC and abseil are not built with TSan (Debian's libraries), so only the
  # engine's and the replica's concurrent tests run under it. The sanitizer
  # builds build only the tests they run (--build_tests_only): under TSan, 8 of
  # the packages' 30-odd binaries.
  # shellcheck disable=SC2086
  run_tests "asan+ubsan" --config=asan --build_tests_only --test_tag_filters=-heavy -- $SANITIZED
  collect_recovery_artifacts
  run_tests "tsan" --config=tsan --build_tests_only --test_tag_filters=concurrent \
    //tests/core/... //repl/...
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}

# The long randomized runs and soaks the test command runs short: sizes from the
# environment, defaults here an hour or so on two cores.
run_soak() {
  run_tests "soak" --test_output=summary --test_timeout=7200 \
    --test_env=NOKV_MODEL_OPS="${NOKV_MODEL_OPS:-3000000}" \
    --test_env=NOKV_CRASH_ROUNDS="${NOKV_CRASH_ROUNDS:-300}" \
    --test_env=NOKV_SWEEP_OPS="${NOKV_SWEEP_OPS:-600}" \
    --test_env=NOKV_RECOVERY_ROUNDS="${NOKV_RECOVERY_ROUNDS:-100}" \
    --test_env=NOKV_BANK_MS="${NOKV_BANK_MS:-60000}" \
    //tests/core:model_test //tests/core:fault_sweep_test //tests/core:concurrent_test \
    //tests/crash:crash_test //tests/recovery:recovery_matrix_test
  bash tests/recovery/kill_soak.sh --cycles "${NOKV_SOAK_CYCLES:-1000}" | tail -1 || failed=$((failed + 1))
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}

case "${1:-}" in
  serve) shift; serve "$@" ;;
  image) image ;;
  test) run_all_tests ;;
  soak) run_soak ;;
  *) echo "usage: bazel/workflow.sh serve [flags] | test | image | soak" >&2; exit 2 ;;
esac
