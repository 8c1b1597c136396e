#!/usr/bin/env bash
# The recovery matrix: every scenario is a real process lifecycle — a workload
# written through the engine (recovery_tool load, which logs each operation as it
# starts and once it is acknowledged), a fault (kill -9 at a chosen file call, a
# power cut that drops every unsynced byte, a failing or full disk, or damage done
# to the files), then a fresh process that reopens the database and checks it
# against what was acknowledged (recovery_tool verify).
#
#   tests/recovery/recovery_scenarios.sh [--out DIR] [--tool PATH] [--only NAME]
#
# Writes DIR/<scenario>.log, one line per scenario
#   RECOVERY_METRIC <scenario>={json}
# on stdout and in DIR/summary.jsonl, and ends with "N passed, N failed". The
# JSON has the expected and actual outcome (recovered, refused), recovery wall
# time and phase times, WAL segments/records replayed, bytes truncated (WAL,
# value log), value-log bytes validated, tables checked, orphans removed, keys
# verified, acknowledged keys lost (0 wherever the outcome is recovered) and, for
# refused, the error text. A refused open must also leave every file as it was;
# the database is then repaired (nokv_repair) and the keys that come back are
# counted (the "repair" object: current, older, absent, damaged — damaged must
# be 0).
# $NOKV_RECOVERY_ROUNDS sizes the random power-cut scenario (default 6).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$root/artifacts/recovery"
tool=""
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --tool) tool=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    *) echo "usage: $0 [--out DIR] [--tool PATH] [--only NAME]" >&2; exit 64 ;;
  esac
done
if [ -z "$tool" ]; then
  (cd "$root" && bazel build -c opt //tests/recovery:recovery_tool >&2) || exit 1
  tool="$root/bazel-bin/tests/recovery/recovery_tool"
fi
mkdir -p "$out"
: >"$out/summary.jsonl"
work=$(mktemp -d "${TMPDIR:-/tmp}/nokv-recovery.XXXXXX")
trap 'rm -rf "$work"' EXIT
export NOKV_RECOVERY_TRACE=1
rounds=${NOKV_RECOVERY_ROUNDS:-6}
passed=0
failed=0

# ---- helpers (run inside a scenario: $db, $model, $log are set) ----

load() { "$tool" load "$db" "$model" "$@" >>"$log" 2>&1; echo "load exit $?" >>"$log"; }
# The verify JSON goes to $res (the last verify wins).
verify() { "$tool" verify "$db" "$model" "$@" 2>>"$log" | tee -a "$log" | tail -1 >"$res"; }
powercut() { "$tool" powercut "$model" >>"$log" 2>&1; }
# A digest of every file but LOCK: a refused open must not change it.
digest() { (cd "$db" && find . -type f ! -name LOCK -print0 | sort -z | xargs -0 sha256sum | sha256sum); }
newest() { ls "$db"/*"$1" 2>/dev/null | sort | tail -1; }
oldest() { ls "$db"/*"$1" 2>/dev/null | sort | head -1; }
# Flips one byte of file $1 at offset $2.
flip() {
  local b
  b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
  printf "$(printf '\\%03o' $(((b ^ 0x5a) & 0xff)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
size() { stat -c %s "$1"; }
fail_check() { extra="${extra:+$extra; }$*"; }
expect_json() {  # field value: a numeric field of the result must satisfy the test
  local v
  v=$(sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p" "$res")
  if ! [ -n "$v" ] || ! awk -v v="$v" "BEGIN { exit !(v $2) }"; then
    fail_check "$1=$v, want $2"
  fi
}
expect_error() {  # the refusal's text must mention $1
  grep -q -- "$1" "$res" || fail_check "error does not mention '$1'"
}
refused_untouched() {  # verify a refusal, and that it changed nothing
  local before
  before=$(digest)
  verify "$@"
  grep -q '"outcome":"refused"' "$res" || fail_check "an open was not refused"
  [ "$(digest)" = "$before" ] || fail_check "the refused open changed files"
}

run() {
  local name=$1 expected=$2
  [ -n "$only" ] && [ "$only" != "$name" ] && return 0
  db="$work/$name/db"
  model="$work/$name/model"
  res="$work/$name/result.json"
  log="$out/$name.log"
  extra=""
  mkdir -p "$work/$name"
  : >"$log"
  echo '{"outcome":"none"}' >"$res"
  "sc_$name" >>"$log" 2>&1
  local actual json pass=true
  actual=$(sed -n 's/^{"outcome":"\([a-z]*\)".*/\1/p' "$res")
  [ "$actual" = "$expected" ] || pass=false
  if [ "$actual" = recovered ]; then
    grep -q '"acked_keys_lost":0[,}]' "$res" || pass=false
    # Reads that fail are damage only where damage was done to a table.
    if [ "$name" != table_block_damaged ] && grep -q '"corrupt_reads":[1-9]' "$res"; then
      fail_check "some reads failed"
    fi
  fi
  [ -z "$extra" ] || pass=false
  json="{\"scenario\":\"$name\",\"expected\":\"$expected\",\"pass\":$pass"
  [ -z "$extra" ] || json="$json,\"check_failed\":\"${extra//\"/\'}\""
  # A refused database is then repaired (nokv_repair), and what comes back checked.
  if [ "$actual" = refused ] && [ -d "$db" ]; then
    "$tool" repair "$db" "$model" "${common[@]}" 2>>"$log" | tail -1 >"$work/$name/repair.json"
    cat "$work/$name/repair.json" >>"$log"
    grep -q '"repair":"ok"' "$work/$name/repair.json" || pass=false
    json="$json,\"repair\":$(cat "$work/$name/repair.json")"
  fi
  json="$json,$(tail -c +2 "$res")"
  echo "RECOVERY_METRIC $name=$json" | tee -a "$log"
  echo "$json" >>"$out/summary.jsonl"
  if [ "$pass" = true ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
}

common=(--ops 1200 --keys 150 --threshold 512)

# ---- the seven defects ----

# 1: unsynced large values, then a synced write; power cut at that write's sync.
sc_defect1_sync_covers_earlier_values() {
  load "${common[@]}" --large-pct 50 --sync-pct 10 --memtable 4194304 --crash sync:.wal:25 --power-loss
  powercut
  verify "${common[@]}" --power-loss
  expect_json synced_ops ">0"
}
# 2: CURRENT fails to open (EMFILE, then EIO): refused, nothing wiped; then clean.
sc_defect2_failed_open_of_current() {
  load "${common[@]}" --flush-every 300
  for err in 24 5 13; do
    refused_untouched "${common[@]}" --fail open:CURRENT:$err:1
  done
  verify "${common[@]}"
  expect_json tables_checked ">0"
}
# 3: a manifest append fails half-way (header written, payload not): EIO stops
# the database (no later edit follows the partial bytes) ...
sc_defect3_manifest_append_fails() {
  load "${common[@]}" --flush-every 200 --fail append:MANIFEST:5:6
  grep -q "load exit 4" "$log" || fail_check "the workload did not stop on the failed edit"
  verify "${common[@]}"
}
# ... a full disk does not (the next edit starts a new manifest once there is room).
sc_defect3_manifest_append_full() {
  load "${common[@]}" --flush-every 200 --fail append:MANIFEST:28:6
  grep -q "load exit 0" "$log" || fail_check "writes stopped after a full disk in the manifest"
  verify "${common[@]}"
}
# 4: reads without read_ts while flushes raise the history horizon.
sc_defect4_reads_without_read_ts() { "$tool" stale-reads "$db" "$model" --ops 20000 | tail -1 >"$res"; }
# 5: damage in the newest value-log segment under synced records: refused.
sc_defect5_vlog_damage_under_synced_records() {
  load "${common[@]}" --large-pct 60 --sync-pct 100 --memtable 4194304 --no-close
  local seg
  seg=$(oldest .vlog)
  flip "$seg" $(($(size "$seg") / 3))
  refused_untouched "${common[@]}"
  expect_error "$(basename "$seg")"
  expect_error "offset"
}
# 6: a transaction across a GC rewrite of what it read commits.
sc_defect6_gc_is_not_a_conflict() { "$tool" gc-txn "$db" "$model" | tail -1 >"$res"; }
# 7: hundreds of value-log segments hold a handful of descriptors.
sc_defect7_vlog_descriptors_bounded() { "$tool" fds "$db" "$model" | tail -1 >"$res"; }

# ---- the WAL ----

sc_wal_replay_after_kill9() {
  load "${common[@]}" --memtable 8388608 --no-close
  verify "${common[@]}"
  expect_json wal_records_replayed ">1000"
}
sc_wal_torn_tail() {
  load "${common[@]}" --memtable 8388608 --sync-pct 0 --no-close
  local wal
  wal=$(newest .wal)
  truncate -s $(($(size "$wal") - 7)) "$wal"
  verify "${common[@]}" --power-loss
  expect_json wal_bytes_truncated ">0"
}
sc_wal_unsynced_hole_is_torn() {  # out-of-order writeback of unsynced pages
  load "${common[@]}" --memtable 8388608 --sync-pct 0 --no-close
  local wal
  wal=$(newest .wal)
  flip "$wal" $(($(size "$wal") / 2))
  verify "${common[@]}" --power-loss
  expect_json wal_bytes_truncated ">0"
}
sc_wal_damage_before_synced_records() {
  load "${common[@]}" --memtable 8388608 --sync-pct 100 --no-close
  local wal
  wal=$(newest .wal)
  flip "$wal" $(($(size "$wal") / 2))
  refused_untouched "${common[@]}"
  expect_error "$(basename "$wal")"
  expect_error "offset"
}
sc_wal_segment_missing() {
  load --ops 3000 --keys 150 --large-pct 0 --memtable 8388608 --no-close
  local gone
  gone=$(ls "$db"/*.wal | sort | sed -n 2p)
  rm -f "$gone"
  refused_untouched --ops 3000 --keys 150
  expect_error "$(basename "$gone") is missing"
}

# ---- kill -9 inside background work ----

sc_kill9_during_flush() {
  load "${common[@]}" --flush-every 150 --crash flush-sync:.sst:3
  verify "${common[@]}"
}
sc_kill9_during_compaction() {
  load "${common[@]}" --flush-every 100 --compact-every 250 --crash compact-sync:.sst:4
  verify "${common[@]}"
}
sc_kill9_during_gc_rewrite() {
  load "${common[@]}" --large-pct 70 --segment 16384 --flush-every 100 --compact-every 200 \
    --gc-every 150 --crash gc-append:.vlog:3
  verify "${common[@]}" --segment 16384
}
sc_kill9_at_gc_segment_delete() {
  load "${common[@]}" --large-pct 70 --segment 16384 --flush-every 100 --compact-every 200 \
    --gc-every 150 --crash remove:.vlog:1
  verify "${common[@]}" --segment 16384
  expect_json vlog_segments_removed ">0"
}

# ---- the manifest and CURRENT ----

sc_manifest_torn_tail() {
  load "${common[@]}" --flush-every 300
  local m
  m="$db/$(cat "$db/CURRENT")"
  printf '\x31\x07\x00' >>"$m"
  verify "${common[@]}"
}
sc_manifest_damaged() {
  load "${common[@]}" --flush-every 300
  local m
  m="$db/$(cat "$db/CURRENT")"
  flip "$m" 20
  refused_untouched "${common[@]}"
  expect_error "$(cat "$db/CURRENT")"
}
sc_current_missing() {
  load "${common[@]}" --flush-every 300
  rm "$db/CURRENT"
  refused_untouched "${common[@]}"
  expect_error "no CURRENT"
}
sc_current_unreadable() {  # a directory where CURRENT should be: EISDIR
  load "${common[@]}" --flush-every 300
  mv "$db/CURRENT" "$work/current.saved"
  mkdir "$db/CURRENT"
  refused_untouched "${common[@]}"
  expect_error "CURRENT"
  rmdir "$db/CURRENT"
  mv "$work/current.saved" "$db/CURRENT"
  verify "${common[@]}"
}
sc_current_names_missing_manifest() {
  load "${common[@]}" --flush-every 300
  echo "MANIFEST-99999999" >"$db/CURRENT"
  refused_untouched "${common[@]}"
  expect_error "MANIFEST-99999999"
}
sc_current_tmp_leftover() {
  load "${common[@]}" --flush-every 300
  echo "MANIFEST-0000" >"$db/CURRENT.tmp"
  verify "${common[@]}"
  [ ! -e "$db/CURRENT.tmp" ] || fail_check "CURRENT.tmp was left"
}

# Several repairs a successful open would make (a torn manifest tail, a retired
# value-log segment still on disk, a torn WAL tail) and one reason to refuse (a
# missing table): the refusal must leave every byte as it was.
sc_refused_open_changes_nothing() {
  load "${common[@]}" --large-pct 70 --segment 16384 --sync-pct 0 --flush-every 100 \
    --compact-every 200 --gc-every 150 --crash remove:.vlog:1
  local wal t
  printf '\x31\x07\x00' >>"$db/$(cat "$db/CURRENT")"
  wal=$(newest .wal)
  truncate -s $(($(size "$wal") - 3)) "$wal"
  t=$(oldest .sst)
  rm "$t"
  refused_untouched "${common[@]}" --segment 16384
  expect_error "$(basename "$t")"
}

# ---- tables ----

sc_table_missing() {
  load "${common[@]}" --flush-every 300
  local t
  t=$(oldest .sst)
  rm "$t"
  refused_untouched "${common[@]}"
  expect_error "$(basename "$t")"
}
sc_table_block_damaged() {  # its keys read DATA_LOSS, all others are served
  load "${common[@]}" --large-pct 0 --flush-every 1100
  local t
  t=$(oldest .sst)
  flip "$t" 100
  verify "${common[@]}"
  expect_json corrupt_reads ">0"
}

# ---- the value log ----

sc_vlog_stale_segment() {  # GC retired it, the crash came before the delete
  load "${common[@]}" --large-pct 70 --segment 16384 --flush-every 100 --compact-every 200 \
    --gc-every 150 --crash remove:.vlog:2
  verify "${common[@]}" --segment 16384
  expect_json vlog_segments_removed ">0"
}
sc_vlog_orphan_segment() {  # a crash while a segment was created: part of its header
  load "${common[@]}" --large-pct 50 --no-close
  local seg next
  seg=$(newest .vlog)
  next=$(printf '%08d.vlog' $((10#$(basename "$seg" .vlog) + 1)))
  head -c 7 "$seg" >"$db/$next"
  verify "${common[@]}"
  # Gone, or (if GC has written enough since to roll the log) a new, whole segment.
  [ ! -e "$db/$next" ] || [ "$(size "$db/$next")" -ge 16 ] ||
    fail_check "the half-created segment was left"
}
sc_vlog_torn_tail() {
  load "${common[@]}" --large-pct 60 --sync-pct 0 --memtable 8388608 --no-close
  local seg
  seg=$(newest .vlog)
  truncate -s $(($(size "$seg") - 100)) "$seg"
  verify "${common[@]}" --power-loss
  expect_json vlog_bytes_truncated ">0"
  expect_json wal_records_dangling ">0"
}
sc_vlog_damaged_tail_unsynced() {
  load "${common[@]}" --large-pct 60 --sync-pct 0 --memtable 8388608 --no-close
  local seg
  seg=$(newest .vlog)
  flip "$seg" $(($(size "$seg") - 300))
  verify "${common[@]}" --power-loss
  expect_json vlog_bytes_truncated ">0"
}

# ---- a full disk: writes refused with a clear error, then working again once
# space is freed (no reopen); flushes and compactions retried ----

sc_enospc_during_writes() {
  load "${common[@]}" --large-pct 40 --space 400000 --free-after-full
  grep -q "disk full" "$log" || fail_check "no write was refused for a full disk"
  grep -q "load exit 0" "$log" || fail_check "writes did not work again once space was freed"
  verify "${common[@]}"
}
sc_enospc_during_flush() {
  load "${common[@]}" --flush-every 200 --fail flush-append:.sst:28:1:3
  grep -q "load exit 0" "$log" || fail_check "writes stopped after the failed flushes"
  verify "${common[@]}"
  expect_json tables_checked ">0"
}
sc_enospc_during_compaction() {
  load "${common[@]}" --flush-every 100 --compact-every 300 --fail compact-append:.sst:28:1:3
  grep -q "load exit 0" "$log" || fail_check "writes stopped after the failed compactions"
  verify "${common[@]}"
}

# ---- power cuts at random sync points, mixed values ----

sc_power_loss_random() {
  local r=0 ok=0 file n
  for r in $(seq 1 "$rounds"); do
    rm -rf "$db" "$model" "$model.powercut"
    file=$([ $((r % 2)) = 0 ] && echo .wal || echo .vlog)
    n=$(((r * 37) % 60 + 5))
    load "${common[@]}" --seed "$r" --large-pct 40 --sync-pct 15 --segment 32768 \
      --flush-every 250 --compact-every 600 --gc-every 400 --crash "sync:$file:$n" --power-loss
    if [ -e "$model.powercut" ]; then powercut; fi
    verify "${common[@]}" --segment 32768 --power-loss
    grep -q '"outcome":"recovered"' "$res" && grep -q '"acked_keys_lost":0' "$res" && ok=$((ok + 1))
  done
  [ "$ok" = "$rounds" ] || fail_check "$ok of $rounds power cuts recovered"
}

for s in $(declare -F | awk '{print $3}' | grep '^sc_' | sed 's/^sc_//'); do
  case "$s" in
    defect5_* | wal_damage_* | wal_segment_missing | manifest_damaged | current_missing | \
      current_names_missing_manifest | table_missing | refused_open_*) run "$s" refused ;;
    *) run "$s" recovered ;;
  esac
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
