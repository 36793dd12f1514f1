#!/usr/bin/env bash
# `make soak`: the appliance under a sustained full-decision load for SOAK_SECONDS (default
# 300), sampled every SAMPLE_S seconds, then checked: 0 invalid answers, `shake journal
# verify` ok, `shake reconcile` exact. Not part of `make test`.
#
# Set-up as `make demo` and bench/e2e.sh: `shake serve --io dpdk` on a net_memif server port
# (control lcore on CPU 0, one worker lcore on CPU 1), driven by `shake-gen --io dpdk` as the
# memif client (one lcore on CPU 0), both --no-pci with their own --file-prefix, hugepages
# with --huge-unlink if they can be reserved, else --no-huge. The node has seeds and claim
# journals (an activity written here: one round that lasts the whole soak, so no answer is
# CLOSED, and the red packets are paced over it). The phones obey retry_after_ms and the
# throttle floor is a few milliseconds, so they come back often and nearly every request is
# a full decision (token, throttle, round, draw), not a cheap THROTTLED.
#
# Every SAMPLE_S seconds: the appliance's counters (Prometheus endpoint) and its anonymous
# memory (RssAnon, /proc/PID/status). At the end: a summary on stdout and in
# bench/results/soak.md, the samples in bench/results/soak-samples.tsv, raw logs in
# build/soak/.
#
# Environment: SOAK_SECONDS (300), SAMPLE_S (5), USERS (200000), RATE (requests/s the
# generator offers; default none: as fast as it can, every phone still waiting out its
# retry_after_ms), FLOOR_MS (throttle floor, 5), BAD_SHARE (0.01), NO_HUGE=1 to run without
# hugepages.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$ROOT/build/soak
RESULTS=$ROOT/bench/results
B=$ROOT/target/release/shake
G=$ROOT/target/release/shake-gen
SOAK_SECONDS=${SOAK_SECONDS:-300}
SAMPLE_S=${SAMPLE_S:-5}
USERS=${USERS:-200000}
RATE=${RATE:-}
FLOOR_MS=${FLOOR_MS:-5}
BAD_SHARE=${BAD_SHARE:-0.01}
TAG=$$
SOCK=$OUT/memif-$TAG.sock
cd "$ROOT"
rm -rf "$OUT"
mkdir -p "$OUT" "$RESULTS"

PIDS=()
stop_pid() { # SIGINT (both processes stop cleanly on it), SIGKILL after 20 s
  local p=$1 kids k
  kill -0 "$p" 2>/dev/null || return 0
  kids=$(pgrep -P "$p" || true)
  kill -INT "$p" 2>/dev/null || true
  for _ in $(seq 200); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  for k in $kids; do
    kill -0 "$k" 2>/dev/null || continue
    kill -KILL "$k" 2>/dev/null || true
  done
}
cleanup() {
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  rm -rf /var/run/dpdk/shake-soak-*-"$TAG"
  rm -f "$SOCK"
}
trap cleanup EXIT

wait_for() { # log, pattern: up to 30 s
  for _ in $(seq 300); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "soak: timed out waiting for '$2' in $1" >&2
  tail -20 "$1" >&2
  return 1
}

# Hugepages: reserve them only when no other process holds any (reserving clears and
# remounts); if some are in use, use the free ones if there are enough, else --no-huge.
huge_total=$(awk '/^HugePages_Total:/ {print $2}' /proc/meminfo)
huge_free=$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo)
MEM=--no-huge HUGE=false
if [ "${NO_HUGE:-0}" != 1 ]; then
  if [ "$huge_total" -eq "$huge_free" ]; then
    bash nic-config/hugepages.sh 768 >"$OUT/hugepages.log" 2>&1 && MEM=--huge-unlink HUGE=true
  elif [ "$huge_free" -ge 768 ] && grep -qs hugetlbfs /proc/mounts; then
    MEM=--huge-unlink HUGE=true
  fi
fi
echo "soak: DPDK memory: $MEM"

echo "soak: building"
cargo build --release --quiet --workspace

# One round from the node's start to past the end of the soak; packets paced over it.
ROUND_S=$((SOAK_SECONDS + 120))
cat >"$OUT/activity.toml" <<TOML
[activity]
id = 9
name = "soak"
epoch = 0

[limits]
per_user = 3
per_sponsor = 1

[[sponsor]]
id = 901
name = "Tea House"
budget_cents = 30000000
packets = 200000
min_cents = 1
max_cents = 300
resource = 11
greeting_resources = [12, 13]

[[sponsor]]
id = 902
name = "Airline"
budget_cents = 20000000
packets = 100000
min_cents = 100
max_cents = 300
resource = 21
greeting_resources = [22]

[[round]]
id = 1
start_s = 0
duration_s = $ROUND_S
win_probability = 0.05
greeting_probability = 0.30
TOML

cat >"$OUT/node.toml" <<TOML
[node]
index = 0
count = 1
ipv4 = "10.99.0.1"
port = 7000
planned_users = 1000000

[activity]
file = "activity.toml"
epoch = "now"
random_seed = 2015
seeds = "seeds"
journal = "journal"

[keys]
token_key = "$ROOT/nic-config/keys/demo-token.key"
claim_key = "$ROOT/nic-config/keys/demo-claim.key"

[throttle]
floor_ms = $FLOOR_MS
ceiling_ms = $((FLOOR_MS * 4))

[stats]
interval_s = 1
prometheus = "127.0.0.1:0"

[dpdk]
lcores = "0@0,1@1"
main_lcore = 0
memory_mb = 512
huge = $HUGE
file_prefix = "shake-soak-app-$TAG"
vdevs = ["net_memif0,role=server,socket=$SOCK,id=0"]
log_level = "notice"
telemetry = false
idle_sleep_us = 0

[[port]]
name = "net_memif0"
rx_desc = 1024
tx_desc = 1024
rss = false
TOML

"$B" seedgen --activity "$OUT/activity.toml" --nodes 1 --workers 1 --out "$OUT/seeds" >"$OUT/seedgen.log"

timeout $((SOAK_SECONDS + 300)) "$B" serve --config "$OUT/node.toml" -- --no-shconf "$MEM" \
  >"$OUT/serve.log" 2>&1 &
WRAP=$!
PIDS+=("$WRAP")
wait_for "$OUT/serve.log" "metrics on http"
APP=$(pgrep -P "$WRAP")
URL=$(grep -o -m1 'http://[0-9.:]*/metrics' "$OUT/serve.log")
echo "soak: appliance pid $APP, $URL"

RATE_ARGS=()
[ -n "$RATE" ] && RATE_ARGS=(--rate "$RATE")
echo "soak: ${SOAK_SECONDS}s of $USERS phones obeying retry_after_ms (floor ${FLOOR_MS} ms), offered ${RATE:-as fast as the generator goes}${RATE:+/s}"
touch "$OUT/sampling"
python3 bench/soak.py sample "$URL" "$APP" "$SAMPLE_S" "$OUT/samples.tsv" "$OUT/sampling" &
SAMPLER=$!
GEN_RC=0
timeout $((SOAK_SECONDS + 120)) "$G" --io dpdk --node-config "$OUT/node.toml" --quiet \
  --users "$USERS" --bad-share "$BAD_SHARE" --obey-retry ${RATE_ARGS[@]+"${RATE_ARGS[@]}"} \
  --duration "$SOAK_SECONDS" --report "$OUT/gen.json" \
  -- --no-pci "$MEM" -m 256 --no-shconf --file-prefix "shake-soak-gen-$TAG" --log-level notice \
  --lcores 0@0 --vdev "net_memif0,role=client,socket=$SOCK,id=0" \
  >"$OUT/gen.log" 2>&1 || GEN_RC=$?
rm -f "$OUT/sampling"
wait "$SAMPLER"
grep "^gen: done" "$OUT/gen.log" || { echo "soak: the generator failed (exit $GEN_RC):" >&2; tail -20 "$OUT/gen.log" >&2; }

# Clean stop (journals synced, shards marked clean), then the money.
kill -TERM "$APP"
for _ in $(seq 300); do kill -0 "$APP" 2>/dev/null || break; sleep 0.1; done
wait "$WRAP" && STOP_RC=0 || STOP_RC=$?
grep -E "^shake: stopped" "$OUT/serve.log" | sed 's/^/appliance> /' || true
VERIFY_RC=0
"$B" journal verify "$OUT/journal" >"$OUT/verify.log" 2>&1 || VERIFY_RC=$?
RECON_RC=0
"$B" reconcile --manifest "$OUT/seeds/manifest.toml" --seeds "$OUT/seeds" --journals "$OUT/journal" \
  >"$OUT/reconcile.log" 2>&1 || RECON_RC=$?

MACHINE="$(nproc) vCPUs, $(uptime | sed 's/.*load average: /load average /')"
python3 bench/soak.py report "$OUT" "$RESULTS" "$SOAK_SECONDS" "$SAMPLE_S" "$USERS" "$RATE" \
  "$FLOOR_MS" "$BAD_SHARE" "$MEM" "$GEN_RC" "$STOP_RC" "$VERIFY_RC" "$RECON_RC" "$MACHINE"
