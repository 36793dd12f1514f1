#!/usr/bin/env bash
# `make bench-ipv6`: the appliance on net_pcap (infinite_rx: the same requests replayed as fast
# as the worker takes them, TX dropped), IPv4 requests beside IPv6 requests of the same users,
# in one run: ROUNDS rounds of one PHASE_S phase each, alternating, so that both families meet
# the same machine. Reports each phase's median rx rate (from the node's 1-second counter
# lines) and the ratio IPv6/IPv4 per round.
#
# Every request is fully decided (a valid token, users spread over 1M, 1% bad requests), as in
# bench/e2e.sh's pcap phase. One worker lcore; --no-pci, its own --file-prefix.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/bench/lib.sh"
OUT=$ROOT/build/bench-ipv6
B=$ROOT/target/release/shake
G=$ROOT/target/release/shake-gen
PHASE_S=${PHASE_S:-8}
ROUNDS=${ROUNDS:-3}
FRAMES=${PCAP_FRAMES:-65536}
TAG=$$
mkdir -p "$OUT"
cd "$ROOT"

APP=
cleanup() {
  if [ -n "$APP" ] && kill -0 "$APP" 2>/dev/null; then
    kill -INT "$APP" 2>/dev/null || true
    wait "$APP" 2>/dev/null || true
  fi
  rm -rf /var/run/dpdk/shake-bench6-*-"$TAG"
}
trap cleanup EXIT

if [ "${NO_HUGE:-0}" != 1 ] && bash nic-config/hugepages.sh 640 >"$OUT/hugepages.log" 2>&1; then
  MEM=--huge-unlink HUGE=true
else
  MEM=--no-huge HUGE=false
fi

echo "bench-ipv6: building"
cargo build --release --quiet --workspace

MBUFS=$(( (FRAMES + 8192) | 1023 ))
config() { # file, family (pcap file suffix)
  {
    demo_node_head 10.99.0.1 fd99::1
    cat <<TOML
[stats]
interval_s = 1

TOML
    one_worker_dpdk "$HUGE" "shake-bench6-$2-$TAG" \
      "net_pcap0,rx_pcap=$OUT/requests-$2.pcap,infinite_rx=1" 1024 "mbufs = $MBUFS"
  } >"$1"
}

config "$OUT/node-ipv4.toml" ipv4
config "$OUT/node-ipv6.toml" ipv6
for fam in ipv4 ipv6; do
  share=0
  [ "$fam" = ipv6 ] && share=1
  "$G" --io none --node-config "$OUT/node-$fam.toml" --users 1000000 --bad-share 0.01 \
    --ipv6-share "$share" --count "$FRAMES" --pcap-out "$OUT/requests-$fam.pcap" --quiet >/dev/null
done

# The median of a phase's rx_rate lines, the first two (start-up, a partial second) left out.
median_rate() {
  grep -o 'rx_rate=[0-9]*' "$1" | cut -d= -f2 | tail -n +3 | sort -n \
    | awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]; else print 0}'
}

phase() { # family, round
  local log=$OUT/serve-$1-$2.log
  timeout $((PHASE_S + 60)) "$B" serve --config "$OUT/node-$1.toml" -- --no-shconf "$MEM" >"$log" 2>&1 &
  APP=$!
  for _ in $(seq 300); do grep -q "serving SHAKE/1" "$log" && break; sleep 0.1; done
  grep -q "serving SHAKE/1" "$log" || { echo "bench-ipv6: $1 did not start" >&2; tail "$log" >&2; exit 1; }
  sleep "$PHASE_S"
  kill -INT "$APP"
  wait "$APP" || true
  APP=
  median_rate "$log"
}

{
  echo "# net_pcap infinite_rx, one worker, $FRAMES requests replayed; $PHASE_S s phases, alternating"
  echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), $MEM"
  printf '%-6s %14s %14s %8s\n' round "IPv4 rx/s" "IPv6 rx/s" "v6/v4"
} | tee "$OUT/result.txt"
for r in $(seq "$ROUNDS"); do
  v4=$(phase ipv4 "$r")
  v6=$(phase ipv6 "$r")
  ratio=$(python3 -c "print(f'{$v6/$v4:.3f}' if $v4 else 'n/a')")
  printf '%-6s %14s %14s %8s\n' "$r" "$v4" "$v6" "$ratio" | tee -a "$OUT/result.txt"
done
echo "bench-ipv6: results in $OUT/result.txt"
