#!/usr/bin/env bash
# `make demo`: the night of the event on one node, in about a minute.
#
# The appliance (`shake serve`: DPDK, one worker, a net_memif server port) serves the demo
# night (seeds/demo-night.toml: 3 sponsors, 3000 red packets, one 40-second round), and the
# bundled generator (`shake-gen --io dpdk`: a second DPDK process, the memif client) plays
# 100k phones (1% with bad tokens, a third over IPv6) that obey retry_after_ms:
#
# 1. the countdown: the round opens OPEN_IN seconds after the script starts (the epoch of
#    the node config it serves); until then every answer is CLOSED with retry_after_ms = the
#    time to the opening, at most 3 s (closed_cap_ms), so the phones come back every 3 s and,
#    the last time, all at the opening;
# 2. the opening, then the phones in waves: every answer of the round says 5 s (the throttle
#    floor), and they obey;
# 3. red packets paced over the round: the shard issues no more than the share due by then;
# 4. a live config change CHANGE_AT seconds into the round (the activity rewritten, SIGHUP):
#    greetings 30% -> 70%, and the round ends at 30 s instead of 40 s, so the money left is
#    paced over the time left;
# 5. the round closes (CLOSED again), the stop (SIGINT to the phones, SIGTERM to the node:
#    journals synced, shards marked clean) and `shake reconcile`: issued + unissued +
#    forfeited = budget, per sponsor, to the cent.
#
# The generator validates every answer and writes build/demo/gen.json and its charts, time
# counted from the opening: answers.svg (answers by outcome per second, stacked), money.svg
# (red packets per second and the money issued so far), throughput.svg and latency.svg. The
# script paces itself by the wall clock; every wait is bounded by that schedule.
#
# Both DPDK processes have --no-pci and their own --file-prefix; hugepages are used if they
# can be reserved (with --huge-unlink, so no hugepage file outlives its process), else
# --no-huge.
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT=$PWD
BIN=target/release/shake
GEN=target/release/shake-gen
DEMO=build/demo
SOCK=/run/shake-demo.memif
OPEN_IN=18   # seconds from now to the opening: the node's start-up, then the countdown
CHANGE_AT=12 # the live config change, seconds into the round (between two waves)
CLOSE_AT=30  # the round's end once the change moved it (40 s before)
STOP_AT=34   # the stop, seconds into the round: one wave of CLOSED after the end
rm -rf "$DEMO"
mkdir -p "$DEMO"

now_ms() { date +%s%3N; }
OPEN_MS=$(( ($(now_ms) / 1000 + OPEN_IN) * 1000 )) # a whole second: the epoch is one
EPOCH=$(( OPEN_MS / 1000 ))
# "T-12s", "T+3s": the time from the opening, as the narration and the phones' lines say it.
t_rel() {
    local d=$(( $(now_ms) - OPEN_MS ))
    printf 'T%+ds' $(( (d + (d < 0 ? -500 : 500)) / 1000 ))
}
say() { echo "demo: $(t_rel) $*"; }

if bash nic-config/hugepages.sh 768 >"$DEMO/hugepages.log" 2>&1; then
    HUGE=(--huge-unlink)
    echo "demo: 768 x 2 MB hugepages reserved"
else
    HUGE=(--no-huge)
    echo "demo: no hugepages ($(tail -1 "$DEMO/hugepages.log")); DPDK runs with --no-huge"
fi

# The node serves nic-config/demo.toml with its relative paths made absolute, the epoch at
# the opening and the activity a copy in build/demo: the live change rewrites that copy,
# never a file of the repository.
cp seeds/demo-night.toml "$DEMO/activity.toml"
sed -e 's|^file = .*|file = "activity.toml"|' \
    -e "s|^epoch = .*|epoch = $EPOCH|" \
    -e "s|\"\\.\\./|\"$ROOT/|g" \
    -e "s|\"keys/|\"$ROOT/nic-config/keys/|g" \
    nic-config/demo.toml >"$DEMO/node.toml"
if ! grep -q '^file = "activity.toml"$' "$DEMO/node.toml" || ! grep -q "^epoch = $EPOCH$" "$DEMO/node.toml" \
    || grep -q '"\.\./\|"keys/' "$DEMO/node.toml"; then
    echo "demo: nic-config/demo.toml no longer has the keys this script rewrites (file, epoch, relative paths)" >&2
    exit 1
fi

"$BIN" seedgen --activity "$DEMO/activity.toml" --nodes 1 --workers 1 --out "$DEMO/seeds" | sed 's/^/seeds> /'

rm -f "$SOCK"
"$BIN" serve --config "$DEMO/node.toml" -- ${HUGE[@]+"${HUGE[@]}"} >"$DEMO/appliance.log" 2>&1 &
APP=$!
GEN_PID=
stop_appliance() {
    if kill -0 "$APP" 2>/dev/null; then
        kill -TERM "$APP"
        wait "$APP" || { echo "demo: the appliance did not stop cleanly" >&2; return 1; }
    fi
}
cleanup() {
    if [ -n "$GEN_PID" ] && kill -0 "$GEN_PID" 2>/dev/null; then
        kill -INT "$GEN_PID" 2>/dev/null || true
        wait "$GEN_PID" 2>/dev/null || true
    fi
    stop_appliance || true
}
trap cleanup EXIT

# Waits (bounded: $2 tenths of a second) for a line matching $1 in file $3, while process $4
# runs.
wait_for() {
    for _ in $(seq 1 "$2"); do
        grep -q "$1" "$3" && return 0
        kill -0 "$4" 2>/dev/null || break
        sleep 0.1
    done
    grep -q "$1" "$3"
}
# Sleeps until T+$1 seconds by the wall clock (negative: before the opening); checks the
# phones are still shaking.
until_t() {
    local ms=$(( OPEN_MS + $1 * 1000 - $(now_ms) ))
    if (( ms > 0 )); then sleep "$(( ms / 1000 )).$(printf '%03d' $(( ms % 1000 )))"; fi
    if ! kill -0 "$GEN_PID" 2>/dev/null; then
        echo "demo: the generator stopped early:" >&2
        tail -5 "$DEMO/gen.log" >&2
        exit 1
    fi
}
# The phones' latest live line (cumulative counts), as they see the night.
phones() { grep '^gen: T' "$DEMO/gen.log" | tail -1 | sed 's/^gen: /phones> /' || true; }

# The memif client must find the server's port up: wait (bounded) for the appliance.
if ! wait_for "serving SHAKE/1" 300 "$DEMO/appliance.log" "$APP"; then
    echo "demo: the appliance did not come up in 30 s:" >&2
    cat "$DEMO/appliance.log" >&2
    exit 1
fi
grep -E "^shake:" "$DEMO/appliance.log" | sed 's/^/appliance> /'
echo "demo: round 1 opens at $(date -u -d "@$EPOCH" +%H:%M:%S) UTC (T), in $(( (OPEN_MS - $(now_ms) + 500) / 1000 )) s"

# Stopped by SIGINT at STOP_AT; --duration only bounds a run the script failed to stop.
"$GEN" --io dpdk --node-config "$DEMO/node.toml" --users 100000 --bad-share 0.01 --ipv6-share 0.33 \
    --obey-retry --rate 100000 --duration $(( OPEN_IN + STOP_AT + 10 )) --count 5000000 --idle-sleep-us 50 \
    --opening-unix-ms "$OPEN_MS" --report "$DEMO/gen.json" --svg "$DEMO" \
    -- --no-pci ${HUGE[@]+"${HUGE[@]}"} -m 256 --no-shconf --file-prefix shake-demo-gen --lcores 0@0 \
    --vdev "net_memif0,role=client,socket=$SOCK,id=0" --log-level notice >"$DEMO/gen.log" 2>&1 &
GEN_PID=$!
if ! wait_for "Link up" 150 "$DEMO/gen.log" "$GEN_PID"; then
    echo "demo: the generator's port did not come up:" >&2
    cat "$DEMO/gen.log" >&2
    exit 1
fi
if (( $(now_ms) >= OPEN_MS )); then
    echo "demo: start-up took longer than the countdown (OPEN_IN=$OPEN_IN s): the opening has passed" >&2
    exit 1
fi
say "the countdown: 100k phones shake (1% with bad tokens, a third over IPv6); every answer is CLOSED, retry_after_ms = the time to the opening, at most 3 s"
until_t -1
phones
until_t 0
say "round 1 opens: every phone was told to come back now, and does; each answer says come back in 5 s, so they come in waves"
until_t 2
phones
say "red packets are paced: the shard issues no more than the share of the round due by now"

until_t "$CHANGE_AT"
sed -i -e 's/^greeting_probability = 0\.30$/greeting_probability = 0.70/' -e 's/^duration_s = 40$/duration_s = 30/' "$DEMO/activity.toml"
if ! grep -q '^greeting_probability = 0.70$' "$DEMO/activity.toml" || ! grep -q '^duration_s = 30$' "$DEMO/activity.toml"; then
    echo "demo: seeds/demo-night.toml no longer has the lines the live change rewrites" >&2
    exit 1
fi
kill -HUP "$APP"
if ! wait_for "shake: reload" 50 "$DEMO/appliance.log" "$APP"; then
    echo "demo: the appliance did not take the reload:" >&2
    tail -5 "$DEMO/appliance.log" >&2
    exit 1
fi
grep -E "^shake: reload" "$DEMO/appliance.log" | sed 's/^/appliance> /'
grep -q "^shake: reloaded" "$DEMO/appliance.log" || exit 1
say "live config change applied (SIGHUP): greetings 30% -> 70%, and round 1 ends at T+${CLOSE_AT}s instead of T+40s: the money left is paced over the time left"
until_t $(( CHANGE_AT + 5 ))
phones
until_t "$CLOSE_AT"
say "round 1 closes: the answers are CLOSED again"
until_t $(( CLOSE_AT + 2 ))
phones
until_t "$STOP_AT"
say "the stop: the phones stop (SIGINT), then the appliance (SIGTERM)"
kill -INT "$GEN_PID"
GEN_RC=0
wait "$GEN_PID" || GEN_RC=$?
GEN_PID=
grep -E "^gen: (done|[0-9]+ invalid)" "$DEMO/gen.log" || true
[ "$GEN_RC" = 0 ] || { echo "demo: the generator failed ($GEN_RC):" >&2; tail -20 "$DEMO/gen.log" >&2; exit 1; }
# The story as the answers told it (gen.json): rounds opening and closing, config changes.
python3 - "$DEMO/gen.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
seen = [(m["t_s"], "round %d %s" % (m["round_id"], "open" if m["opens"] else "close"))
        for m in r["round_marks"]]
seen += [(c["t_s"], "the config change") for c in r["config_changes"]]
print("demo: the phones saw " + ", ".join("%s at T%+.1fs" % (what, t) for t, what in sorted(seen)))
PY

stop_appliance
trap - EXIT
# Both processes have ended: remove their DPDK runtime directories and the memif socket.
rm -rf /var/run/dpdk/shake-demo /var/run/dpdk/shake-demo-gen "$SOCK"
echo "demo: the appliance served:"
grep -E "^(stats|shake: stopped)" "$DEMO/appliance.log" | tail -1 | sed 's/^/appliance> /'

echo "demo: reconciling the money (issued + unissued + forfeited = budget, per sponsor, in cents):"
"$BIN" reconcile --manifest "$DEMO/seeds/manifest.toml" --seeds "$DEMO/seeds" --journals "$DEMO/journal" \
    | tee "$DEMO/reconcile.txt"
# What the phones were told against what the journals say was issued: every paid answer
# reached its phone.
told=$(python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["tally"]; print(t["cents"], t["outcomes"][2])' "$DEMO/gen.json")
issued=$(awk '$1 ~ /^[0-9]+$/ && NF == 6 { s += $3 } END { print s + 0 }' "$DEMO/reconcile.txt")
read -r told_cents told_packets <<<"$told"
yuan() { printf '¥%d.%02d' $(( $1 / 100 )) $(( $1 % 100 )); }
if [ "$told_cents" = "$issued" ]; then
    echo "demo: the phones were told $(yuan "$told_cents") in $told_packets red packets; the journals issued $(yuan "$issued"): the same"
else
    echo "demo: the phones were told $(yuan "$told_cents") in $told_packets red packets, but the journals issued $(yuan "$issued")" >&2
fi
echo "demo: charts (time from the opening): $DEMO/answers.svg (answers by outcome per second, stacked),"
echo "      $DEMO/money.svg (red packets per second, money issued), $DEMO/throughput.svg, $DEMO/latency.svg; report $DEMO/gen.json"
