#!/usr/bin/env bash
# Runs every fuzz target (built by `cargo fuzz build -s none`) for SECONDS each, one after
# another, and prints executions, corpus size and findings per target. Exits 1 if any target
# found something (a crash, a timeout or an out-of-memory), with the input under
# fuzz/artifacts/<target>/ and how to replay it.
#
#   bash fuzz/run.sh SECONDS [TARGET...]
#
# Each target starts from its committed seeds (fuzz/seeds/<target>/, read only) and its own
# growing corpus (fuzz/corpus/<target>/, not committed).
set -uo pipefail

cd "$(dirname "$0")"
seconds="${1:?usage: run.sh SECONDS [TARGET...]}"
shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(frame node_config activity shard manifest journal)
fi
bin=target/x86_64-unknown-linux-gnu/release

# Inputs longer than this are cut; the file formats need a 4096-byte header and some records.
declare -A max_len=([frame]=4096 [node_config]=8192 [activity]=8192 [shard]=16384 [manifest]=8192 [journal]=16384)

# Dictionaries: the TOML targets get the keys and edge numbers of the files they read.
declare -A dict=([node_config]=dict/toml.dict [activity]=dict/toml.dict [manifest]=dict/toml.dict)

# The file targets write into TMPDIR; keep it inside fuzz/target and remove it afterwards.
export TMPDIR="$PWD/target/tmp"
mkdir -p "$TMPDIR"
trap 'rm -rf "$TMPDIR"' EXIT

printf '%-12s %8s %12s %10s %8s %9s\n' target seconds executions exec/s corpus findings
failed=0
for t in "${targets[@]}"; do
  if [ ! -x "$bin/$t" ]; then
    echo "fuzz: $bin/$t is not built (cargo fuzz build -s none)" >&2
    exit 2
  fi
  mkdir -p "corpus/$t" "artifacts/$t"
  before=$(ls "artifacts/$t" | wc -l)
  log="target/fuzz-$t.log"
  extra=()
  if [ -n "${dict[$t]:-}" ]; then extra+=(-dict="${dict[$t]}"); fi
  "$bin/$t" "corpus/$t" "seeds/$t" "${extra[@]}" \
    -max_total_time="$seconds" -max_len="${max_len[$t]:-4096}" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="artifacts/$t/" -print_final_stats=1 -print_pcs=0 >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  after=$(ls "artifacts/$t" | wc -l)
  findings=$((after - before))
  if [ "$rc" -ne 0 ] && [ "$findings" -eq 0 ]; then
    findings="rc=$rc"
  fi
  printf '%-12s %8s %12s %10s %8s %9s\n' "$t" "$seconds" "${runs:-?}" "${rate:-?}" \
    "$(ls "corpus/$t" | wc -l)" "$findings"
  if [ "$rc" -ne 0 ] || [ "$after" -ne "$before" ]; then
    failed=1
    grep -m1 -A3 -E 'panicked|ERROR: libFuzzer' "$log" | sed "s/^/  $t: /"
    for a in $(ls -t "artifacts/$t" | head -n "$((after - before))"); do
      echo "  $t: replay with: fuzz/$bin/$t fuzz/artifacts/$t/$a"
    done
    echo "  $t: log in fuzz/$log"
  fi
done
exit "$failed"
