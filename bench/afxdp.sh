#!/usr/bin/env bash
# `make bench-afxdp`: the node on a veth whose other end is in a network namespace with the
# generator (kernel UDP sockets), served two ways in one run, in alternating phases:
#   socket  `shake serve --io socket`, one worker: the kernel's UDP stack delivers to it;
#   afxdp   `shake serve --io dpdk` on net_af_xdp on the same veth, one worker lcore, with
#           the filter program of nic-config/afxdp-filter.c (only UDP to the node's port goes
#           to the socket; the kernel keeps ARP and the rest), or DPDK's default program
#           where clang cannot build it.
# The same generator drives both from the client namespace, flooding for PHASE_S seconds
# (and at most COUNT requests); the node's CPU is CPU 1, the generator's CPU 0. Every request
# is a full decision (throttle floor 1 ms, 100k users). GEN picks the generator's I/O:
#   afxdp   (default) shake-gen --io dpdk on net_af_xdp on the client's veth end, so that the
#           client's own kernel UDP stack is not what both phases measure;
#   socket  shake-gen --io socket: kernel UDP sockets, as phones have.
# Reports the answers the generator got per second and the node's median answer rate per
# phase, and the ratio afxdp/socket per round; the table goes to bench/results/afxdp.txt
# with the machine, date and command.
#
# Safety: only the namespaces and the veth pair this script creates (removed at exit), XDP
# only on its own veth end, --no-pci and its own --file-prefix; every process is stopped by
# its PID, every phase is bounded by `timeout`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/bench/lib.sh"
OUT=$ROOT/build/bench-afxdp
RESULT=${RESULT:-$ROOT/bench/results/afxdp.txt}
B=$ROOT/target/release/shake
G=$ROOT/target/release/shake-gen
PHASE_S=${PHASE_S:-6}
ROUNDS=${ROUNDS:-3}
COUNT=${COUNT:-20000000}
USERS=${USERS:-100000}
GEN_IO=${GEN:-afxdp}
TAG=$$
NS_NODE=shkxbN$TAG NS_CLIENT=shkxbC$TAG
IF_NODE=xbn$TAG IF_CLIENT=xbc$TAG
NODE_IP=10.99.10.1 CLIENT_IP=10.99.10.2
PREFIX=shake-bench-afxdp-$TAG
mkdir -p "$OUT"
cd "$ROOT"

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do
    if kill -0 "$p" 2>/dev/null; then kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; fi
  done
  ip netns del "$NS_CLIENT" 2>/dev/null || true
  ip netns del "$NS_NODE" 2>/dev/null || true
  rm -rf "/var/run/dpdk/$PREFIX" "/var/run/dpdk/$PREFIX-gen"
}
trap cleanup EXIT

echo "bench-afxdp: building"
cargo build --release --quiet --workspace

ip netns add "$NS_NODE"
ip netns add "$NS_CLIENT"
ip link add "$IF_NODE" netns "$NS_NODE" type veth peer name "$IF_CLIENT" netns "$NS_CLIENT"
ip -n "$NS_NODE" addr add "$NODE_IP/24" dev "$IF_NODE"
ip -n "$NS_NODE" link set "$IF_NODE" up
ip -n "$NS_CLIENT" link set lo up
ip -n "$NS_CLIENT" addr add "$CLIENT_IP/24" dev "$IF_CLIENT"
ip -n "$NS_CLIENT" link set "$IF_CLIENT" up
# veth leaves UDP checksums to a NIC that does not exist: the kernel fills them in (on the
# node's end for the socket backend's answers).
ip netns exec "$NS_CLIENT" ethtool -K "$IF_CLIENT" tx off >/dev/null
ip netns exec "$NS_NODE" ethtool -K "$IF_NODE" tx off >/dev/null
NODE_MAC=$(ip -n "$NS_NODE" link show "$IF_NODE" | awk '/link\/ether/ {print $2}')
CLIENT_MAC=$(ip -n "$NS_CLIENT" link show "$IF_CLIENT" | awk '/link\/ether/ {print $2}')
# A generator on AF_XDP answers no ARP: the node's kernel is told the client's MAC.
ip -n "$NS_NODE" neigh replace "$CLIENT_IP" lladdr "$CLIENT_MAC" dev "$IF_NODE" nud permanent

PROG=filter
VDEV="net_af_xdp0,iface=$IF_NODE,xdp_prog=$OUT/afxdp-filter.o"
if ! clang -O2 -g -target bpf -DSHAKE_PORT=7000 -I"/usr/include/$(uname -m)-linux-gnu" \
  -c nic-config/afxdp-filter.c -o "$OUT/afxdp-filter.o" 2>"$OUT/clang.log"; then
  echo "bench-afxdp: clang cannot build the filter program (see $OUT/clang.log); DPDK's default program instead" >&2
  PROG=default VDEV="net_af_xdp0,iface=$IF_NODE"
fi
# BUSY_BUDGET: the PMD's busy_budget (preferred busy polling); empty leaves its default (64).
[ -n "${BUSY_BUDGET:-}" ] && VDEV="$VDEV,busy_budget=$BUSY_BUDGET"

common_toml() {
  demo_node_head "$NODE_IP"
  cat <<TOML
[throttle]
floor_ms = 1

[stats]
interval_s = 1
TOML
}
common_toml >"$OUT/node-socket.toml"
{
  common_toml
  cat <<TOML

[dpdk]
lcores = "0@0,1@1"
main_lcore = 0
memory_mb = 256
huge = false
telemetry = false
file_prefix = "$PREFIX"
vdevs = ["$VDEV"]
log_level = "notice"
idle_sleep_us = 0

[[port]]
name = "net_af_xdp0"
rx_desc = 2048
tx_desc = 2048
TOML
} >"$OUT/node-afxdp.toml"

# The median of a phase's answer_rate lines, the first two (start-up, a partial second) and
# the last (the drain) left out.
median_rate() {
  grep -o 'answer_rate=[0-9]*' "$1" | cut -d= -f2 | tail -n +3 | head -n -1 | sort -n \
    | awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]; else print 0}'
}

phase() { # mode, round; writes "answers/s(generator) median answer_rate(node)" to $OUT/phase.txt
  local log=$OUT/serve-$1-$2.log report=$OUT/gen-$1-$2.json
  if [ "$1" = socket ]; then
    timeout $((PHASE_S + 60)) taskset -c 1 ip netns exec "$NS_NODE" "$B" serve --io socket \
      --bind "$NODE_IP:7000" --workers 1 --config "$OUT/node-socket.toml" >"$log" 2>&1 &
  else
    timeout $((PHASE_S + 60)) ip netns exec "$NS_NODE" "$B" serve --io dpdk \
      --config "$OUT/node-afxdp.toml" -- --no-shconf >"$log" 2>&1 &
  fi
  local app=$!
  PIDS+=("$app")
  for _ in $(seq 300); do grep -q "serving SHAKE/1" "$log" && break; sleep 0.1; done
  grep -q "serving SHAKE/1" "$log" || { echo "bench-afxdp: $1 did not start" >&2; tail "$log" >&2; exit 1; }
  # "xdp" is native (driver) mode, "xdpgeneric" SKB mode; then the program's name.
  [ "$1" = afxdp ] && ip -d -n "$NS_NODE" link show "$IF_NODE" | awk '
    NR == 1 { for (i = 1; i <= NF; i++) if ($i ~ /^xdp/) mode = $i }
    /prog\/xdp/ { for (i = 1; i <= NF; i++) if ($i == "name") prog = $(i + 1) }
    END { print mode " mode, program " prog }' >"$OUT/xdp-mode.txt"
  local io=(--io socket --server "$NODE_IP:7000")
  if [ "$GEN_IO" = afxdp ]; then
    io=(--io dpdk --port net_af_xdp0 --dst-mac "$NODE_MAC" --node-addr "$NODE_IP:7000"
      --src "$CLIENT_IP:40000" -- --no-pci --no-huge -m 256 --no-shconf --lcores 0@0
      --file-prefix "$PREFIX-gen" --log-level error --vdev "net_af_xdp0,iface=$IF_CLIENT")
  fi
  timeout $((PHASE_S + 30)) taskset -c 0 ip netns exec "$NS_CLIENT" "$G" \
    --node-config "$OUT/node-socket.toml" --users "$USERS" --duration "$PHASE_S" \
    --count "$COUNT" --quiet --report "$report" "${io[@]}" >"$OUT/gen-$1-$2.log" 2>&1
  kill -TERM "$app"
  wait "$app" || true
  local ans
  ans=$(python3 -c "import json; print(round(json.load(open('$report'))['answered_per_s']))")
  echo "$ans $(median_rate "$log")" >"$OUT/phase.txt"
}

HEADER="# socket: shake serve --io socket, 1 worker (CPU 1); afxdp: net_af_xdp, 1 worker lcore (CPU 1), $PROG program
# generator: shake-gen on $GEN_IO (CPU 0) in the client namespace, flooding $PHASE_S s per phase, $USERS users, floor 1 ms
# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), kernel $(uname -r), DPDK $(pkg-config --modversion libdpdk), load average $(cut -d' ' -f1-3 /proc/loadavg)
# answers/s: what the generator got back; node/s: the node's median answer_rate"
printf '%s\n%-6s %14s %12s %14s %12s %8s\n' "$HEADER" round "socket ans/s" "node/s" "afxdp ans/s" "node/s" "ratio" \
  | tee "$OUT/result.txt"
for r in $(seq "$ROUNDS"); do
  phase socket "$r"
  read -r s_ans s_node <"$OUT/phase.txt"
  phase afxdp "$r"
  read -r x_ans x_node <"$OUT/phase.txt"
  ratio=$(python3 -c "print(f'{$x_ans/$s_ans:.2f}' if $s_ans else 'n/a')")
  printf '%-6s %14s %12s %14s %12s %8s\n' "$r" "$s_ans" "$s_node" "$x_ans" "$x_node" "$ratio" | tee -a "$OUT/result.txt"
done
{
  echo "# XDP on the node's veth end: $(cat "$OUT/xdp-mode.txt" 2>/dev/null)"
  echo "# load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee -a "$OUT/result.txt"
{
  echo "# make bench-afxdp (bash bench/afxdp.sh; GEN=$GEN_IO PHASE_S=$PHASE_S ROUNDS=$ROUNDS)"
  cat "$OUT/result.txt"
} >"$RESULT.new"
mv "$RESULT.new" "$RESULT"
echo "bench-afxdp: results in $RESULT (logs in $OUT)"
