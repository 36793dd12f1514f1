#!/usr/bin/env bash
# End to end, side by side, in one run on one machine (SPEC section 5), reported as ratios:
#
#   memif   dpdk-testpmd --forward-mode=macswap (the I/O limit) vs `shake serve --io dpdk`,
#           both driven by `shake-gen --io dpdk` as a net_memif client;
#   pcap    dpdk-testpmd --forward-mode=5tswap vs `shake serve --io dpdk`, both on net_pcap
#           replaying a pcap of requests forever (infinite_rx=1; TX dropped);
#   socket  `shake serve --io socket` on loopback driven by `shake-gen --io socket`;
#   micro   the datapath micro-benchmark (cargo bench --bench datapath).
#
# The appliance runs each DPDK setup twice: with the default throttle floor (5 s: a replayed
# or flooding stream comes back too soon, so most answers are THROTTLED, the cheapest
# decision) and with a floor of 1 ms, where every request is a full decision (token, user
# table, round, draw), as at the event, where phones wait the retry_after_ms they are given.
# The full-decision figure is the headline.
#
# Same core layout everywhere: lcore 0 (control, on CPU 0) and one worker/forwarding lcore on
# CPU 1; the generator's single lcore on CPU 0. Every DPDK process: --no-pci, its own
# --file-prefix, --no-shconf; only virtual devices. Hugepages (2 GB of 2 MB pages, reserved by
# nic-config/hugepages.sh) with --huge-unlink, so no hugepage file outlives a phase; where they
# cannot be reserved, --no-huge (slower, and on this kind of VM bimodal: see the README).
# Every phase is bounded in time and every process is stopped by its PID. Results:
# build/bench/e2e.md and build/bench/e2e.json.
#
# Environment: PHASE_S (seconds per phase, default 10), ROUNDS (rounds of the memif and
# socket phases, default 4), USERS (default 100000), PCAP_FRAMES (distinct requests replayed,
# default 65536), SKIP_MICRO=1 to read the last criterion estimate instead of running the
# micro-benchmark, NO_HUGE=1 to run without hugepages.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/bench/lib.sh"
OUT=$ROOT/build/bench
B=$ROOT/target/release/shake
G=$ROOT/target/release/shake-gen
PHASE_S=${PHASE_S:-10}
USERS=${USERS:-100000}
PCAP_FRAMES=${PCAP_FRAMES:-65536}
ROUNDS=${ROUNDS:-4}
TAG=$$
TESTPMD=$(command -v dpdk-testpmd || true)
mkdir -p "$OUT"
cd "$ROOT"

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  rm -rf /var/run/dpdk/shake-bench-*-"$TAG"*
  rm -f "$OUT/memif-$TAG.sock"
}
trap cleanup EXIT

# SIGINT (testpmd and shake both stop cleanly on it), then SIGKILL after 10 s.
stop_pid() {
  local p=$1 kids k
  kill -0 "$p" 2>/dev/null || return 0
  # Every process here runs under `timeout`, which passes the signal on to its command; that
  # command (its child) is checked too, so a wrapper killed below never leaves it running.
  kids=$(pgrep -P "$p" || true)
  kill -INT "$p" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  for k in $kids; do
    kill -0 "$k" 2>/dev/null || continue
    kill -INT "$k" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$k" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$k" 2>/dev/null && kill -KILL "$k" 2>/dev/null || true
  done
}

# Starts a command in the background, logging to $1; sets $LAST_PID.
start() {
  local log=$1; shift
  "$@" >"$log" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

# Waits up to 15 s for a line in a log.
wait_for() {
  local log=$1 pattern=$2
  for _ in $(seq 150); do
    grep -q "$pattern" "$log" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench: timed out waiting for '$pattern' in $log" >&2
  tail -20 "$log" >&2
  return 1
}

if [ "${NO_HUGE:-0}" != 1 ] && bash nic-config/hugepages.sh 1024 >"$OUT/hugepages.log" 2>&1; then
  MEM=--huge-unlink HUGE=true
else
  MEM=--no-huge HUGE=false
fi
echo "bench: DPDK memory: $MEM"
echo "$MEM" >"$OUT/memory-mode"

# Every prefix has the run's tag in it, so the cleanup finds them (eal runs in a subshell).
eal() { # prefix, then extra EAL arguments
  local prefix=$1; shift
  echo --no-pci "$MEM" --no-shconf --file-prefix "$prefix" --log-level notice "$@"
}

echo "bench: building"
cargo build --release --quiet --workspace

# A node for the benches: the demo activity, in-memory seeds (no journal fsyncs in the
# way: the I/O path is what is measured), one worker lcore on CPU 1, no idle naps.
node_config() { # file, prefix, vdev, memory MB, extra port lines, throttle floor ms
  {
    demo_node_head 10.99.0.1
    cat <<TOML
[stats]
interval_s = 1

[throttle]
floor_ms = ${6:-5000}

[socket]
workers = 1

TOML
    one_worker_dpdk "$HUGE" "$2" "$3" "${4:-512}" "${5:-}"
  } >"$1"
}

SOCK=$OUT/memif-$TAG.sock
GEN_VDEV="net_memif0,role=client,socket=$SOCK,id=0"
gen_dpdk() { # report file, then extra generator options
  local report=$1; shift
  timeout $((PHASE_S + 40)) "$G" --io dpdk --node-config "$OUT/node-memif.toml" --quiet \
    --users "$USERS" --bad-share 0.01 --duration "$PHASE_S" --report "$report" "$@" \
    -- $(eal "shake-bench-gen-$TAG-$(basename "$report" .json)" --lcores "0@0" --vdev "$GEN_VDEV")
}
json() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))$2)" "$1"; }

node_config "$OUT/node-memif.toml" "shake-bench-app-$TAG" "net_memif0,role=server,socket=$SOCK,id=0"
node_config "$OUT/node-memif-full.toml" "shake-bench-app-$TAG" "net_memif0,role=server,socket=$SOCK,id=0" 512 "" 1

# --- rounds of (a) testpmd macswap on memif, (b) the appliance on memif, (c) its socket backend
# Traffic between the two CPUs is only as fast as the host keeps the two vCPUs close, which
# changes under the guest (bench/cacheline_probe.c); so ROUNDS rounds alternate the three
# phases, the cache-line round trip between CPU 0 and 1 is probed before and after each
# phase, and the report compares two phases only when they ran at the same probe level.
PROBE=$OUT/cacheline_probe
cc -O2 -pthread -o "$PROBE" bench/cacheline_probe.c
probe() { "$PROBE" 0 1 >>"$OUT/probe-$1" 2>&1 || echo 0 >>"$OUT/probe-$1"; }
rm -rf "$OUT"/probe-* "$OUT"/gen-testpmd-memif-*.json "$OUT"/gen-serve-memif-*.json "$OUT"/serve-*.log \
  "$OUT"/gen-serve-socket-*.json "$OUT"/svg-* "$OUT"/*.svg
[ -n "$TESTPMD" ] || echo "bench: dpdk-testpmd not found (Debian package dpdk-dev): skipping the testpmd phases" >&2
# One phase of the appliance on memif: round, log suffix, node config, extra generator options.
serve_memif() {
  local round=$1 mode=$2 config=$3; shift 3
  echo "bench: memif round $round/$ROUNDS, shake serve --io dpdk${mode:+, every request a full decision} (${PHASE_S}s)"
  start "$OUT/serve-memif$mode-$round.log" timeout $((PHASE_S + 60)) "$B" serve --config "$OUT/$config" -- --no-shconf "$MEM"
  APP=$LAST_PID
  wait_for "$OUT/serve-memif$mode-$round.log" "serving SHAKE/1"
  mkdir -p "$OUT/svg-$round"
  gen_dpdk "$OUT/gen-serve-memif$mode-$round.json" "$@" >"$OUT/gen-serve-memif$mode-$round.log" 2>&1 || true
  stop_pid "$APP"
  rm -f "$SOCK"
  probe "$round"
}

for round in $(seq "$ROUNDS"); do
  probe "$round"
  if [ -n "$TESTPMD" ]; then
    echo "bench: memif round $round/$ROUNDS, dpdk-testpmd macswap (${PHASE_S}s)"
    start "$OUT/testpmd-memif-$round.log" timeout $((PHASE_S + 60)) "$TESTPMD" -l 0,1 --main-lcore 0 -m 1024 \
      $(eal "shake-bench-tpmd-$TAG" --vdev "net_memif0,role=server,socket=$SOCK,id=0") \
      -- --forward-mode=macswap --nb-cores=1 --rxq=1 --txq=1 --stats-period 1
    TPMD=$LAST_PID
    wait_for "$OUT/testpmd-memif-$round.log" "Press enter to exit\|Port statistics\|forwarding packets"
    gen_dpdk "$OUT/gen-testpmd-memif-$round.json" >"$OUT/gen-testpmd-memif-$round.log" 2>&1 || true
    stop_pid "$TPMD"
    rm -f "$SOCK"
    probe "$round"
  fi

  serve_memif "$round" "" node-memif.toml --svg "$OUT/svg-$round"
  serve_memif "$round" -full node-memif-full.toml

  # The socket backend on loopback: one socket worker on CPU 1, the generator on CPU 0.
  echo "bench: round $round/$ROUNDS, socket backend on loopback (${PHASE_S}s)"
  start "$OUT/serve-socket-$round.log" timeout $((PHASE_S + 60)) taskset -c 1 "$B" serve --io socket \
    --config "$OUT/node-memif.toml" --bind 127.0.0.1:0 --workers 1
  APP=$LAST_PID
  wait_for "$OUT/serve-socket-$round.log" "serving SHAKE/1"
  ADDR=$(grep -o -m1 'udp [0-9.:]*' "$OUT/serve-socket-$round.log" | cut -d' ' -f2 || true)
  [ -n "$ADDR" ] || { echo "bench: no UDP address in serve-socket-$round.log" >&2; exit 1; }
  timeout $((PHASE_S + 40)) taskset -c 0 "$G" --io socket --node-config "$OUT/node-memif.toml" \
    --server "$ADDR" --quiet --users "$USERS" --bad-share 0.01 --duration "$PHASE_S" \
    --sockets 4 --batch 32 --report "$OUT/gen-serve-socket-$round.json" \
    >"$OUT/gen-serve-socket-$round.log" 2>&1 || true
  stop_pid "$APP"
  probe "$round"
done

# --- net_pcap, infinite_rx: testpmd 5tswap and the appliance -------------------------------------
echo "bench: writing $PCAP_FRAMES requests to requests.pcap"
"$G" --io none --node-config "$OUT/node-memif.toml" --users "$PCAP_FRAMES" --bad-share 0.01 \
  --count "$PCAP_FRAMES" --pcap-out "$OUT/requests.pcap" --quiet >/dev/null
PCAP_VDEV="net_pcap0,rx_pcap=$OUT/requests.pcap,infinite_rx=1"
MBUFS=$(( (PCAP_FRAMES + 8192) | 1023 ))
node_config "$OUT/node-pcap.toml" "shake-bench-pcap-$TAG" "$PCAP_VDEV" 1024 "mbufs = $MBUFS"
node_config "$OUT/node-pcap-full.toml" "shake-bench-pcap-$TAG" "$PCAP_VDEV" 1024 "mbufs = $MBUFS" 1
if [ -n "$TESTPMD" ]; then
  echo "bench: pcap, dpdk-testpmd 5tswap (${PHASE_S}s)"
  start "$OUT/testpmd-pcap.log" timeout $((PHASE_S + 60)) "$TESTPMD" -l 0,1 --main-lcore 0 -m 1024 \
    $(eal "shake-bench-tpmd-pcap-$TAG" --vdev "$PCAP_VDEV") \
    -- --forward-mode=5tswap --nb-cores=1 --rxq=1 --txq=1 --stats-period 1 --total-num-mbufs="$MBUFS"
  TPMD=$LAST_PID
  sleep "$PHASE_S"
  stop_pid "$TPMD"
fi
# The replayed stream comes back every PCAP_FRAMES requests (a few ms at these rates): past a
# 1 ms floor, so every request is a full decision; within the default 5 s, so nearly all are
# THROTTLED.
for mode in full throttled; do
  cfg=$OUT/node-pcap.toml
  [ "$mode" = full ] && cfg=$OUT/node-pcap-full.toml
  echo "bench: pcap, shake serve --io dpdk, $mode (${PHASE_S}s)"
  log=$OUT/serve-pcap.log
  [ "$mode" = full ] && log=$OUT/serve-pcap-full.log
  start "$log" timeout $((PHASE_S + 60)) "$B" serve --config "$cfg" -- --no-shconf "$MEM"
  APP=$LAST_PID
  wait_for "$log" "serving SHAKE/1"
  sleep "$PHASE_S"
  stop_pid "$APP"
done

# --- datapath micro-benchmark -----------------------------------------------------------------
if [ "${SKIP_MICRO:-0}" != 1 ]; then
  echo "bench: datapath micro-benchmark"
  cargo bench --quiet --bench datapath -- --measurement-time 5 >"$OUT/datapath.log" 2>&1 || true
fi

# --- results ----------------------------------------------------------------------------------
python3 "$ROOT/bench/e2e_report.py" "$OUT" "$ROOT/target/criterion" "$PHASE_S" "$USERS" "$PCAP_FRAMES" "$ROUNDS"
