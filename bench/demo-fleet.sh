#!/usr/bin/env bash
# `make demo-fleet`: an event run by a fleet on this machine.
#
# 1. etcd (live config, registry), nats-server with JetStream (the fund flow) and Prometheus,
#    each on loopback with its own data directory under build/demo-fleet;
# 2. seeds for 4 nodes, a live config pushed to etcd, then 4 socket-backend nodes on
#    127.0.0.11-14:7000 (one worker each: this machine has 2 CPUs), each with its claim
#    shipper (`shake ship`) beside it;
# 3. the generator playing phones across the fleet: each phone shakes at its own node, 5%
#    start at a wrong one and follow the REDIRECT, all obey retry_after_ms;
# 4. in the middle, a live config push (a countdown calibration) seen by every node, then
#    node 2 SIGKILLed and restarted (recovery);
# 5. the stop: nodes, then shippers once the stream has every journal record; the payment
#    side (`shake pay`) takes every claim; `shake reconcile --stream` checks the stream against
#    the journals and the budgets: exact; Prometheus answers a fleet-wide query.
#
# Every process is started here and stopped by its PID; every load is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=target/release/shake
GEN=target/release/shake-gen
DIR=build/demo-fleet
NODES=4
rm -rf "$DIR"
mkdir -p "$DIR"

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
started() { PIDS+=("$1"); }

# A free loopback port.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Waits (bounded) until something listens on 127.0.0.1:$1.
wait_port() {
    for _ in $(seq 1 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "demo-fleet: nothing listens on port $1 ($2)" >&2
    return 1
}

ETCD_PORT=$(port); ETCD_PEER=$(port); NATS_PORT=$(port); PROM_PORT=$(port)
ETCD=http://127.0.0.1:$ETCD_PORT
NATS=nats://127.0.0.1:$NATS_PORT

etcd --name demo --data-dir "$DIR/etcd" --listen-client-urls "$ETCD" --advertise-client-urls "$ETCD" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
    --initial-cluster "demo=http://127.0.0.1:$ETCD_PEER" >"$DIR/etcd.log" 2>&1 &
started $!
nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$DIR/jetstream" >"$DIR/nats.log" 2>&1 &
started $!
wait_port "$ETCD_PORT" etcd
wait_port "$NATS_PORT" nats-server
echo "demo-fleet: etcd on $ETCD, nats-server (JetStream) on $NATS"

# The event: the demo activity, a shared epoch 20 s from now (the countdown), 4 nodes.
EPOCH=$(( $(date +%s) + 20 ))
"$BIN" seedgen --activity seeds/demo.toml --nodes $NODES --workers 1 --out "$DIR/seeds" >/dev/null
cp seeds/demo.toml "$DIR/activity.toml"
TARGETS=()
for i in $(seq 0 $((NODES - 1))); do
    mkdir -p "$DIR/n$i"
    cat >"$DIR/n$i/node.toml" <<EOF
[node]
index = $i
count = $NODES
ipv4 = "127.0.0.1$((i + 1))"
port = 7000
planned_users = 200000

[activity]
file = "../activity.toml"
epoch = $EPOCH
seeds = "../seeds"
journal = "journal"

[keys]
token_key = "../../../nic-config/keys/demo-token.key"
claim_key = "../../../nic-config/keys/demo-claim.key"

[stats]
interval_s = 0
prometheus = "127.0.0.1:$((9300 + i))"

[fleet]
name = "demo"
etcd = ["$ETCD"]
nats = "$NATS"
ship_metrics = "127.0.0.1:$((9400 + i))"
EOF
    TARGETS+=("127.0.0.1$((i + 1)):7000")
done

# The first live config: the activity as planned (no calibration).
cp seeds/demo.toml "$DIR/live-1.toml"
printf '\n[live]\ncalibration_ms = 0\n' >>"$DIR/live-1.toml"
"$BIN" fleet push --config "$DIR/n0/node.toml" "$DIR/live-1.toml"

declare -A NODE_PID
start_node() {
    "$BIN" serve --io socket --config "$DIR/n$1/node.toml" >>"$DIR/n$1/node.log" 2>&1 &
    NODE_PID[$1]=$!
    started $!
}
for i in $(seq 0 $((NODES - 1))); do
    start_node "$i"
    "$BIN" ship --config "$DIR/n$i/node.toml" >"$DIR/n$i/ship.log" 2>&1 &
    started $!
done
"$BIN" fleet status --config "$DIR/n0/node.toml" --wait-revision 1 --timeout-s 30 | sed 's/^/status> /'

# Prometheus: the shipped config, its file-SD targets written from etcd's registry.
mkdir -p "$DIR/prometheus"
cp nic-config/fleet/prometheus.yml "$DIR/prometheus/prometheus.yml"
"$BIN" fleet status --config "$DIR/n0/node.toml" --prometheus-sd "$DIR/prometheus/targets" >/dev/null
prometheus --config.file="$DIR/prometheus/prometheus.yml" --storage.tsdb.path="$DIR/prometheus/tsdb" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$DIR/prometheus.log" 2>&1 &
started $!
wait_port "$PROM_PORT" prometheus
echo "demo-fleet: Prometheus on http://127.0.0.1:$PROM_PORT (dashboard: nic-config/fleet/grafana-dashboard.json)"

echo "demo-fleet: generator: 40k phones across $NODES nodes for 45 s, obeying retry_after_ms, 5% at a wrong node first"
"$GEN" --io socket --node-config "$DIR/n0/node.toml" --nodes "$(IFS=,; echo "${TARGETS[*]}")" \
    --users 40000 --foreign-share 0.05 --obey-retry --rate 20000 --duration 45 --quiet \
    --report "$DIR/gen.json" --svg "$DIR" >"$DIR/gen.log" 2>&1 &
GEN_PID=$!
started $GEN_PID

# The countdown cue: the broadcast runs 3 s early; every node applies it between bursts.
sleep 12
cp seeds/demo.toml "$DIR/live-2.toml"
printf '\n[live]\ncalibration_ms = -3000\n' >>"$DIR/live-2.toml"
REV=$("$BIN" fleet push --config "$DIR/n0/node.toml" "$DIR/live-2.toml" | sed -n 's/.*as revision \([0-9]*\).*/\1/p')
"$BIN" fleet status --config "$DIR/n0/node.toml" --wait-revision "$REV" --timeout-s 10 | sed 's/^/status> /'
for i in $(seq 0 $((NODES - 1))); do
    v=$(curl -s "http://127.0.0.1:$((9300 + i))/metrics" | sed -n 's/^shake_config_version //p')
    echo "demo-fleet: node $i answers with config_version $v"
    [ "$v" = "$REV" ] || { echo "demo-fleet: node $i did not apply revision $REV" >&2; exit 1; }
done

# A node dies in the middle of the round and comes back: recovery, its shipper carries on.
sleep 8
echo "demo-fleet: SIGKILL node 2 (pid ${NODE_PID[2]}) and restart it"
kill -KILL "${NODE_PID[2]}"
wait "${NODE_PID[2]}" 2>/dev/null || true
start_node 2
"$BIN" fleet status --config "$DIR/n0/node.toml" --wait-revision "$REV" --timeout-s 20 | sed 's/^/status> /'

wait $GEN_PID || { echo "demo-fleet: the generator failed:" >&2; tail -20 "$DIR/gen.log" >&2; exit 1; }
tail -4 "$DIR/gen.log" | sed 's/^/gen> /'
# The push as phones saw it: the highest config_version in each node's answers.
python3 - "$DIR/gen.json" "$REV" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
v = r["config_version_by_node"]
print("demo-fleet: config_version in the answers of each node:", v)
if any(x != int(sys.argv[2]) for x in v):
    sys.exit("demo-fleet: not every node's answers carried revision " + sys.argv[2])
PY

echo "demo-fleet: fleet-wide answers in Prometheus, against the nodes' own counters:"
own=0
for i in $(seq 0 $((NODES - 1))); do
    n=$(curl -s "http://127.0.0.1:$((9300 + i))/metrics" | awk '/^shake_answers_total/ {s += $2} END {print s + 0}')
    own=$((own + n))
done
q=""
for _ in $(seq 1 100); do
    q=$(curl -s "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode 'query=sum(shake_answers_total{job="shake"})' \
        | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")')
    [ "$q" = "$own" ] && break
    sleep 0.2
done
echo "prometheus> sum(shake_answers_total) = ${q:-none} (the nodes say $own)"

# The stop: nodes first (journals closed), then each shipper once its lag is 0.
for i in $(seq 0 $((NODES - 1))); do kill -TERM "${NODE_PID[$i]}"; wait "${NODE_PID[$i]}" || true; done
for i in $(seq 0 $((NODES - 1))); do
    for _ in $(seq 1 300); do
        lag=$(curl -s "http://127.0.0.1:$((9400 + i))/metrics" | awk '/^shake_ship_lag_records/ {s += $2} END {print s + 0}')
        [ "$lag" = 0 ] && break
        sleep 0.1
    done
    echo "demo-fleet: shipper $i: lag $lag records"
done

echo "demo-fleet: the payment side takes every claim from the stream (acknowledged):"
"$BIN" pay --config "$DIR/n0/node.toml" --out "$DIR/paid.txt" --idle-ms 2000 | tail -2 | sed 's/^/pay> /'
echo "demo-fleet: $(wc -l <"$DIR/paid.txt") claims paid"


echo "demo-fleet: reconciling the stream against the journals and the budgets:"
"$BIN" reconcile --manifest "$DIR/seeds/manifest.toml" --seeds "$DIR/seeds" \
    --journals $(for i in $(seq 0 $((NODES - 1))); do echo "$DIR/n$i/journal"; done) \
    --stream "$NATS" --fleet-name demo
echo "demo-fleet: logs, report and charts in $DIR"
