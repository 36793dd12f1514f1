#!/usr/bin/env bash
# `make demo`: the appliance on DPDK virtual devices, driven by the bundled generator.
#
# 1. seeds for the demo activity (one shard: the demo node has one worker);
# 2. `shake serve --config nic-config/demo.toml` (net_memif server port, shards, journals);
# 3. `shake-gen` (bench/gen) as a second DPDK process on the memif client side: 100k phones, 1% bad
#    tokens, a third of them over IPv6, obeying retry_after_ms, 10 s; every answer validated;
# 4. SIGTERM to the appliance (clean close), then `shake reconcile` of the money.
#
# Both DPDK processes have --no-pci and their own --file-prefix; hugepages are used if they
# can be reserved (with --huge-unlink, so no hugepage file outlives its process), else
# --no-huge.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=target/release/shake
GEN=target/release/shake-gen
DEMO=build/demo
SOCK=/run/shake-demo.memif
rm -rf "$DEMO"
mkdir -p "$DEMO"

if bash nic-config/hugepages.sh 768 >"$DEMO/hugepages.log" 2>&1; then
    HUGE=(--huge-unlink)
    echo "demo: 768 x 2 MB hugepages reserved"
else
    HUGE=(--no-huge)
    echo "demo: no hugepages ($(tail -1 "$DEMO/hugepages.log")); DPDK runs with --no-huge"
fi

"$BIN" seedgen --activity seeds/demo.toml --nodes 1 --workers 1 --out "$DEMO/seeds"

rm -f "$SOCK"
"$BIN" serve --config nic-config/demo.toml -- ${HUGE[@]+"${HUGE[@]}"} >"$DEMO/appliance.log" 2>&1 &
APP=$!
stop_appliance() {
    if kill -0 "$APP" 2>/dev/null; then
        kill -TERM "$APP"
        wait "$APP" || { echo "demo: the appliance did not stop cleanly" >&2; return 1; }
    fi
}
trap 'stop_appliance || true' EXIT

# The memif client must find the server's port up: wait (bounded) for the appliance.
for _ in $(seq 1 300); do
    grep -q "serving SHAKE/1" "$DEMO/appliance.log" && break
    if ! kill -0 "$APP" 2>/dev/null; then
        echo "demo: the appliance exited:" >&2
        cat "$DEMO/appliance.log" >&2
        exit 1
    fi
    sleep 0.1
done
grep -q "serving SHAKE/1" "$DEMO/appliance.log" || { echo "demo: the appliance did not come up in 30 s" >&2; cat "$DEMO/appliance.log" >&2; exit 1; }
grep -E "^shake:" "$DEMO/appliance.log" | sed 's/^/appliance> /'

echo "demo: generator: 100k phones (a third over IPv6) for 10 s over net_memif"
"$GEN" --io dpdk --node-config nic-config/demo.toml --users 100000 --bad-share 0.01 --ipv6-share 0.33 \
    --obey-retry --rate 100000 --duration 10 --count 1000000 --idle-sleep-us 50 \
    --report "$DEMO/gen.json" --svg "$DEMO" \
    -- --no-pci ${HUGE[@]+"${HUGE[@]}"} -m 256 --no-shconf --file-prefix shake-demo-gen --lcores 0@0 \
    --vdev "net_memif0,role=client,socket=$SOCK,id=0" --log-level notice

stop_appliance
trap - EXIT
# Both processes have ended: remove their DPDK runtime directories and the memif socket.
rm -rf /var/run/dpdk/shake-demo /var/run/dpdk/shake-demo-gen "$SOCK"
echo "demo: the appliance served:"
grep -E "^(stats|shake: stopped)" "$DEMO/appliance.log" | tail -2 | sed 's/^/appliance> /'

echo "demo: reconciling the money (issued + unissued + forfeited = budget, per sponsor):"
"$BIN" reconcile --manifest "$DEMO/seeds/manifest.toml" --seeds "$DEMO/seeds" --journals "$DEMO/journal"
echo "demo: report $DEMO/gen.json, charts $DEMO/throughput.svg and $DEMO/latency.svg"
