#!/usr/bin/env bash
# The cost of steering a user to its owning worker (issue 13 item 6), with bench/steering.rs:
# the real poll loop on an in-process ring port, a processor that answers every frame as it
# is, in three modes:
#   one      one worker: no steering at all (the loop peeks no user);
#   local    two workers, every frame on its owner's queue (each frame's user peeked);
#   steered  two workers, every frame on the other worker's queue (peeked, handed over).
# 1. Instructions per frame (callgrind, both worker lcores, --toggle-collect='*run_task*'):
#    the slope between runs of SMALL and LARGE frames, which leaves out the fixed costs; the
#    workers nap 2 ms after an idle pass so that few idle passes (a worker waiting for its
#    ring while valgrind runs the other thread) blur it.
# 2. A two-worker run on this machine: frames circulating (answers put back on RX queue 0)
#    for PHASE_S seconds per phase, ROUNDS alternating rounds; Mpps from the workers' own counts.
# Results in bench/results/steering.txt. --no-pci --no-huge, its own file prefix per run.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RESULT=${RESULT:-$ROOT/bench/results/steering.txt}
OUT=$ROOT/build/bench-steering
SMALL=${SMALL:-2000}
LARGE=${LARGE:-16000}
SECONDS_PER_PHASE=${PHASE_S:-3}
ROUNDS=${ROUNDS:-3}
mkdir -p "$OUT"
cd "$ROOT"

echo "bench-steering: building"
bench=$(cargo bench --bench steering --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "steering" and m.get("executable"):
        print(m["executable"])')

run() { # mode frames [env...] -> the output line
  local mode=$1 frames=$2 workers=2 steer=$1
  shift 2
  [ "$mode" = one ] && workers=1 steer=local
  env SHAKE_STEER_WORKERS=$workers SHAKE_STEER=$steer SHAKE_STEER_FRAMES="$frames" "$@"
}

ir() { # mode frames -> instructions collected in the worker lcores
  local out=$OUT/cg-$1-$2.out
  run "$1" "$2" SHAKE_STEER_IDLE_US=2000 timeout 600 valgrind --tool=callgrind --toggle-collect='*run_task*' \
    --callgrind-out-file="$out" "$bench" >"$OUT/cg-$1-$2.log" 2>&1
  grep -o 'Collected : [0-9]*' "$OUT/cg-$1-$2.log" | awk '{print $3}'
}

{
  echo "# make bench-steering (bash bench/steering.sh): bench/steering.rs, the real poll loop (dpdk::WorkerLoop)"
  echo "# on a ring port, a processor that answers every frame as it is; $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "# $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), kernel $(uname -r), DPDK $(pkg-config --modversion libdpdk), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "instructions per frame, both worker lcores (callgrind, slope from $SMALL to $LARGE frames):"
  printf '  %-8s %12s %12s %10s\n' mode "Ir@$SMALL" "Ir@$LARGE" "Ir/frame"
} | tee "$OUT/result.txt"
declare -A per
for mode in one local steered; do
  a=$(ir "$mode" "$SMALL")
  b=$(ir "$mode" "$LARGE")
  per[$mode]=$(python3 -c "print(f'{($b-$a)/($LARGE-$SMALL):.1f}')")
  printf '  %-8s %12s %12s %10s\n' "$mode" "$a" "$b" "${per[$mode]}" | tee -a "$OUT/result.txt"
done
python3 - "${per[one]}" "${per[local]}" "${per[steered]}" <<'EOF' | tee -a "$OUT/result.txt"
import sys
one, local, steered = map(float, sys.argv[1:])
print(f"  a frame on its owner's queue, two workers against one: {local - one:+.1f} (peeking its user, the staging)")
print(f"  a steered frame against one on its owner's queue:      {steered - local:+.1f} (the hand-off ring, the owner's routing)")
print(f"  a steered frame against one worker:                    {steered - one:+.1f}")
EOF
{
  echo
  echo "two-worker run, frames circulating (answers back onto RX queue 0), $SECONDS_PER_PHASE s per phase;"
  echo "worker 0 and the main lcore (which moves the frames) on CPU 0, worker 1 on CPU 1; Mpps:"
  printf '  %-6s %10s %10s %10s\n' round one local steered
} | tee -a "$OUT/result.txt"
for r in $(seq "$ROUNDS"); do
  line="  $(printf '%-6s' "$r")"
  for mode in one local steered; do
    rate=$(run "$mode" 8000 SHAKE_STEER_SECONDS="$SECONDS_PER_PHASE" timeout 120 "$bench" 2>/dev/null \
      | grep -o ': [0-9.]* Mpps' | awk '{print $2}')
    line="$line $(printf '%10s' "$rate")"
  done
  echo "$line" | tee -a "$OUT/result.txt"
done
echo "# load average at the end $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/result.txt"
cp "$OUT/result.txt" "$RESULT"
echo "bench-steering: results in $RESULT"
