#!/usr/bin/env bash
# `make bench-worker-ir`: instructions per frame of the whole DPDK worker, side by side with
# dpdk-testpmd 5tswap, on net_pcap replaying requests forever (infinite_rx=1, TX dropped), one
# worker lcore: the end-to-end phase of bench/e2e.sh counted by callgrind instead of timed.
#
# The datapath benchmark (bench/datapath.rs, bench/cost_curve.sh) counts only the burst
# function. This counts everything the worker lcore runs a frame: the PMD's receive and
# transmit, the worker loop (staging, the mbufs' lengths and offload flags, the answer counters,
# the backlog) and the decisions, every request a full decision (throttle floor 1 ms), with
# software checksums (net_pcap offloads none). Instruction counts do not move with the
# machine's load, so two builds compare here where the timed ratio of bench/e2e.sh is noise.
#
# Method: each process runs under valgrind's callgrind for WARM_S seconds, its counters are
# zeroed (callgrind_control -z), it runs MEASURE_S seconds more and is dumped
# (callgrind_control -d), then stopped by its PID. The worker is shake's run_task (collected
# alone: --toggle-collect) and testpmd's forwarding lcore (its own thread's file:
# --separate-threads); frames are the net_pcap receive function's calls times 32 (it always
# fills a burst from the replayed ring; checked against shake's decision count).
#
# WARM_S, MEASURE_S (20 s each), SKIP_TESTPMD=1 (shake alone, to compare two builds) and
# CALLGRIND_OPTS (say --dump-instr=yes, to read a function's instructions afterwards).
#
# Safety: --no-pci, --no-huge, a --file-prefix of this run's own; every process is stopped by
# its PID and bounded by timeout.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/bench/lib.sh"
OUT=$ROOT/build/bench-worker-ir
WARM_S=${WARM_S:-20}
MEASURE_S=${MEASURE_S:-20}
FRAMES=${FRAMES:-65536}
B=$ROOT/target/release/shake
G=$ROOT/target/release/shake-gen
TAG=$$
PREFIX=shake-bench-wir-$TAG
mkdir -p "$OUT"
cd "$ROOT"
command -v valgrind >/dev/null || { echo "bench-worker-ir: valgrind not found (make deps)" >&2; exit 1; }
TESTPMD=$(command -v dpdk-testpmd || true)

PIDS=()
cleanup() {
  # Each PID is a `timeout` whose child is valgrind: on the way out (an error, a signal)
  # nothing it would still write is wanted, and under valgrind a node takes long to stop.
  local p c
  for p in "${PIDS[@]}"; do
    kill -0 "$p" 2>/dev/null || continue
    for c in $(cat "/proc/$p/task/$p/children" 2>/dev/null); do kill -KILL "$c" 2>/dev/null || true; done
    kill -TERM "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "/var/run/dpdk/$PREFIX" "/var/run/dpdk/$PREFIX-tpmd"
}
trap cleanup EXIT

echo "bench-worker-ir: building"
cargo build --release --quiet --workspace

MBUFS=$(((FRAMES + 8192) | 1023))
VDEV="net_pcap0,rx_pcap=$OUT/requests.pcap,infinite_rx=1"
{
  demo_node_head 10.99.0.1
  cat <<TOML
[stats]
interval_s = 1

[throttle]
floor_ms = 1

TOML
  one_worker_dpdk false "$PREFIX" "$VDEV" 1024 "mbufs = $MBUFS"
} >"$OUT/node.toml"
"$G" --io none --node-config "$OUT/node.toml" --users "$FRAMES" --bad-share 0.01 \
  --count "$FRAMES" --pcap-out "$OUT/requests.pcap" --quiet >/dev/null

# Runs "$@" under callgrind with its own output file; zeroes, dumps and stops it.
profile() { # name, then the command and its callgrind options first
  local name=$1; shift
  rm -f "$OUT/$name.out"*
  # shellcheck disable=SC2086 # CALLGRIND_OPTS: extra options, word-split on purpose
  timeout $((WARM_S + MEASURE_S + 120)) valgrind --tool=callgrind ${CALLGRIND_OPTS:-} \
    --callgrind-out-file="$OUT/$name.out" "$@" >"$OUT/$name.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  sleep "$WARM_S"
  local vg
  vg=$(cat "/proc/$pid/task/$pid/children" 2>/dev/null | awk '{print $1}')
  [ -n "$vg" ] || { echo "bench-worker-ir: $name did not start" >&2; tail "$OUT/$name.log" >&2; exit 1; }
  callgrind_control -z "$vg" >/dev/null 2>&1
  sleep "$MEASURE_S"
  callgrind_control -d "$vg" >/dev/null 2>&1
  kill -TERM "$vg" 2>/dev/null || true
  # valgrind finishes the worker's loop slowly: bounded, then killed.
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$vg" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

echo "bench-worker-ir: shake serve --io dpdk under callgrind (${WARM_S}s + ${MEASURE_S}s)"
profile shake --toggle-collect='*run_task*' "$B" serve --config "$OUT/node.toml" -- --no-shconf --no-huge
rm -f "$OUT"/testpmd.out*
if [ -n "$TESTPMD" ] && [ "${SKIP_TESTPMD:-0}" != 1 ]; then
  echo "bench-worker-ir: dpdk-testpmd 5tswap under callgrind (${WARM_S}s + ${MEASURE_S}s)"
  profile testpmd --separate-threads=yes "$TESTPMD" -l 0,1 --main-lcore 0 -m 1024 --no-pci \
    --no-huge --no-shconf --file-prefix "$PREFIX-tpmd" --log-level notice --vdev "$VDEV" \
    -- --forward-mode=5tswap --nb-cores=1 --rxq=1 --txq=1 --total-num-mbufs="$MBUFS" --stats-period 5
fi
python3 "$ROOT/bench/worker_ir.py" "$OUT" | tee "$OUT/result.txt"
