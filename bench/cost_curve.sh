#!/usr/bin/env bash
# `make bench-curve`: the cost curve of the datapath (issue 13 item 2). For each population in
# CURVE_USERS (1K, 1M, 10M, 100M users) it measures, on IPv4 requests that are every one a
# full decision (bench/datapath.rs):
#   - ns per request: criterion's median per 32-frame burst / 32, for the software-checksum
#     benchmark (burst32_<U>_users) and the NIC-checked one (burst32_<U>_users_nic_checked),
#     CURVE_NS_RUNS runs of CURVE_MEASURE_S seconds each (time moves with the shared machine's
#     load: the runs are reported side by side);
#   - instructions per request: callgrind, counting process_burst_checked and the staged
#     prefetch (stage_next_burst), for each checksum mode: Collected / rx (rx also counts the
#     warm-up bursts, which are collected too, so both sides count the same frames);
#   - what address translation costs this host (bench/page_walk.rs, `make bench-page-walk`):
#     dependent loads over lines one per 4 KiB page against the same lines packed, up to the
#     largest population's table; it tells whether the growth below is the datapath's or the
#     host's (a VM whose host backs the guest's huge pages with 4 KiB pages walks page tables
#     on every random access past the TLB's reach);
#   - memory: the user table's bytes per user (the only per-user structure: the winner table
#     and the journals grow with claims, the seeds with packets) and the peak resident memory
#     of the benchmark process, whose growth from 1M to 100M users is what a user costs all in.
# Then start-up with claims (bench/seeds_startup.rs) for each count in CURVE_CLAIMS, where the
# disk under $TMPDIR and the memory have room (checked first; files deleted after each run).
#
# Instruction counts are what to trust first: they do not move with load. Results in
# build/bench-curve/result.txt (the raw logs beside it); bench/results/cost_curve.txt keeps the
# reported runs.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$ROOT/build/bench-curve
USERS=${CURVE_USERS:-1000 1000000 10000000 100000000}
NS_RUNS=${CURVE_NS_RUNS:-2}
MEASURE_S=${CURVE_MEASURE_S:-5}
PROFILE_S=${CURVE_PROFILE_S:-2}
CLAIMS=${CURVE_CLAIMS:-1000000 10000000 100000000}
SKIP_NS=${SKIP_NS:-0}
SKIP_CALLGRIND=${SKIP_CALLGRIND:-0}
SKIP_STARTUP=${SKIP_STARTUP:-0}
SKIP_PAGE_WALK=${SKIP_PAGE_WALK:-0}
TMP=${TMPDIR:-/tmp}
mkdir -p "$OUT"
cd "$ROOT"

command -v valgrind >/dev/null || [ "$SKIP_CALLGRIND" = 1 ] || {
  echo "bench-curve: valgrind not found (apt-get install valgrind, or SKIP_CALLGRIND=1)" >&2
  exit 1
}
# Runs a command and prints its peak resident memory (maxrss_kb=) on stderr after it.
peak() {
  python3 -c 'import resource, subprocess, sys
r = subprocess.call(sys.argv[1:])
print("maxrss_kb=%d" % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)
sys.exit(r)' "$@"
}

echo "bench-curve: building"
exe_of() { # bench name -> its executable
  cargo bench --bench "$1" --no-run --message-format=json 2>/dev/null |
    grep -o "\"executable\":\"[^\"]*/deps/$1-[0-9a-f]*\"" | tail -1 |
    sed 's/"executable":"\(.*\)"/\1/'
}
DATAPATH=$(exe_of datapath)
STARTUP=$(exe_of seeds_startup)
PAGE_WALK=$(exe_of page_walk)
[ -x "$DATAPATH" ] && [ -x "$STARTUP" ] && [ -x "$PAGE_WALK" ] ||
  { echo "bench-curve: build failed" >&2; exit 1; }

avail_kb() { awk '/^MemAvailable:/ {print $2}' /proc/meminfo; }
# The user table's bytes for a population, as src/engine/users.rs sizes it: BYTES_PER_USER
# bytes a user rounded up to 64-byte buckets, at least PROBE_BUCKETS of them.
PER_USER=$(sed -n 's/^pub const BYTES_PER_USER: usize = \([0-9]*\);/\1/p' src/engine/users.rs)
PROBE=$(sed -n 's/^pub const PROBE_BUCKETS: usize = \([0-9]*\);/\1/p' src/engine/users.rs)
table_bytes() {
  local buckets=$((($1 * PER_USER + 63) / 64))
  echo $(((buckets > PROBE ? buckets : PROBE) * 64))
}

# One tab-separated line per figure (kind users mode run value), a file per phase: a phase
# skipped (SKIP_NS, SKIP_CALLGRIND, SKIP_STARTUP, SKIP_PAGE_WALK) keeps its figures from the
# last run that made them, so a phase can be repeated alone.
{
  cpu=$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)
  echo "# bench-curve $(date -u +%FT%TZ) on $(nproc) CPUs $cpu, $(uname -r)"
  echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  head=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
  echo "# git $head$(git diff --quiet 2>/dev/null || echo '+changes')"
} >"$OUT/header.txt"

fits() { # users: is there memory for the table plus the pools (and 1 GB to spare)?
  local need_kb=$(( $(table_bytes "$1") / 1024 + 1300 * 1024 ))
  [ "$(avail_kb)" -gt "$need_kb" ] || {
    echo "bench-curve: skipping $1 users: needs ~$((need_kb / 1024)) MB," \
      "$(($(avail_kb) / 1024)) MB available" | tee -a "$OUT/header.txt" >&2
    return 1
  }
}

median_ns() { # benchmark name -> criterion's median ns per burst
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["median"]["point_estimate"])' \
    "target/criterion/datapath/$1/new/estimates.json"
}
# Runs a benchmark with its output into a log; on failure, says so with the log's end.
logged() { # log command...
  local log=$1
  shift
  "$@" >"$log" 2>&1 || {
    echo "bench-curve: failed: $* (see $log)" >&2
    tail -5 "$log" >&2
    exit 1
  }
}
pop() { # 1000 -> 1K, 10000000 -> 10M (as the benchmark names its population)
  if [ $(($1 % 1000000)) = 0 ]; then
    echo "$(($1 / 1000000))M"
  elif [ $(($1 % 1000)) = 0 ]; then
    echo "$(($1 / 1000))K"
  else
    echo "$1"
  fi
}
# Figures from a run's log: the peak RSS (kB) `peak` printed, the benchmark's rx.
rss_of() { sed -n 's/^maxrss_kb=\([0-9]*\).*/\1/p' "$1"; }
# Exactly one benchmark's outcome line: callgrind's count is of everything that ran, so a log
# with two (e.g. the scalar-token benchmark beside the lanes one) would divide two benchmarks'
# instructions by one's requests.
rx_of() {
  local n
  n=$(grep -c ' rx=[0-9]*' "$1" || true)
  [ "$n" = 1 ] || { echo "bench-curve: $1 has $n benchmarks' outcomes, not 1" >&2; return 1; }
  grep -o ' rx=[0-9]*' "$1" | cut -d= -f2
}

if [ "$SKIP_NS" != 1 ]; then
  TSV=$OUT/ns.tsv
  : >"$TSV"
  rm -f "$OUT"/ns-*.log
  echo "# ns: measured now" >>"$OUT/header.txt"
  for run in $(seq 1 "$NS_RUNS"); do
    for u in $USERS; do
      fits "$u" || continue
      log=$OUT/ns-$u-run$run.log
      echo "bench-curve: criterion, $u users, run $run ($(cut -d' ' -f1 /proc/loadavg) load)"
      SHAKE_BENCH_USERS=$u SHAKE_BENCH_FAMILY=ipv4 SHAKE_BENCH_TOKENS=lanes \
        logged "$log" peak "$DATAPATH" --bench --measurement-time "$MEASURE_S"
      p=$(pop "$u")
      for mode in software nic; do
        name=burst32_${p}_users
        [ $mode = software ] || name=${name}_nic_checked
        printf 'ns\t%s\t%s\t%s\t%s\n' "$u" "$mode" "$run" "$(median_ns "$name")" >>"$TSV"
      done
      printf 'rss\t%s\t-\t%s\t%s\n' "$u" "$run" "$(rss_of "$log")" >>"$TSV"
      printf 'load\t%s\t-\t%s\t%s\n' "$u" "$run" "$(cut -d' ' -f1 /proc/loadavg)" >>"$TSV"
    done
  done
fi

if [ "$SKIP_CALLGRIND" != 1 ]; then
  TSV=$OUT/ir.tsv
  : >"$TSV"
  rm -f "$OUT"/callgrind-*
  echo "# Ir: measured now" >>"$OUT/header.txt"
  for u in $USERS; do
    fits "$u" || continue
    for mode in software nic; do
      log=$OUT/callgrind-$u-$mode.log
      echo "bench-curve: callgrind, $u users, $mode checksums"
      SHAKE_BENCH_USERS=$u SHAKE_BENCH_FAMILY=ipv4 SHAKE_BENCH_CHECKSUMS=$mode SHAKE_BENCH_TOKENS=lanes \
        logged "$log" valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind-$u-$mode.out" \
        --toggle-collect='*process_burst_checked*' --toggle-collect='*stage_next_burst*' \
        "$DATAPATH" --bench --profile-time "$PROFILE_S"
      ir=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$log" | awk '{s += $1} END {print s + 0}')
      rx=$(rx_of "$log")
      printf 'ir\t%s\t%s\t1\t%s %s\n' "$u" "$mode" "$ir" "${rx:-0}" >>"$TSV"
      rm -f "$OUT/callgrind-$u-$mode.out"
    done
  done
fi

if [ "$SKIP_STARTUP" != 1 ]; then
  # seeds_startup writes two seed sets (8x4 and 1x4 shards) and the claim journals under
  # $TMPDIR; about BYTES_PER_CLAIM bytes of disk a packet in all (1.52 GB at 10M). Its
  # recovery rebuilds the winner tables, 32-byte slots, 2-4 a packet (8 GiB at 100M), in memory.
  BYTES_PER_CLAIM=${CURVE_DISK_PER_CLAIM:-150}
  TSV=$OUT/startup.tsv
  : >"$TSV"
  rm -f "$OUT"/startup-*.log
  echo "# start-up: measured now" >>"$OUT/header.txt"
  # The benchmark's files go to a directory of this run's own (the benchmark names its own by
  # pid under TMPDIR), removed after each run and on any exit.
  WORK=$TMP/shake-curve-$$
  trap 'rm -rf "$WORK"' EXIT
  for n in $CLAIMS; do
    need_kb=$((n * BYTES_PER_CLAIM / 1024 + 1024 * 1024))
    free_kb=$(df -Pk "$TMP" | awk 'NR == 2 {print $4}')
    mem_kb=$((n * 128 / 1024 + 1024 * 1024))
    if [ "$free_kb" -lt "$need_kb" ] || [ "$(avail_kb)" -lt "$mem_kb" ]; then
      echo "bench-curve: skipping start-up with $n claims: needs ~$((need_kb / 1024)) MB" \
        "in $TMP ($((free_kb / 1024)) free) and ~$((mem_kb / 1024)) MB of memory" \
        "($(($(avail_kb) / 1024)) available)" | tee -a "$OUT/header.txt" >&2
      continue
    fi
    log=$OUT/startup-$n.log
    echo "bench-curve: start-up with $n claims ($(cut -d' ' -f1 /proc/loadavg) load)"
    mkdir -p "$WORK"
    TMPDIR=$WORK logged "$log" peak "$STARTUP" --bench "$n"
    rm -rf "$WORK"
    for t in $(sed -n 's/^start-up #\([0-9]\).* in \([0-9.]*\) s$/\2/p' "$log"); do
      printf 'startup\t%s\t-\t-\t%s\n' "$n" "$t" >>"$TSV"
    done
    issued=$(sed -n 's/^issue: .* in \([0-9.]*\) s:.*/\1/p' "$log")
    printf 'issue\t%s\t-\t-\t%s\n' "$n" "$issued" >>"$TSV"
    printf 'startrss\t%s\t-\t-\t%s\n' "$n" "$(rss_of "$log")" >>"$TSV"
  done
fi

if [ "$SKIP_PAGE_WALK" != 1 ]; then
  # Spans up to the largest population's table (238 MiB at 10M users, 2.3 GiB at 100M)
  # that memory has room for.
  largest=0
  for u in $USERS; do
    [ "$(avail_kb)" -gt $(($(table_bytes "$u") / 1024 + 512 * 1024)) ] && [ "$u" -gt "$largest" ] &&
      largest=$u
  done
  if [ "$largest" = 0 ]; then
    echo "bench-curve: skipping the page walk probe: no population's table fits in memory" |
      tee -a "$OUT/header.txt" >&2
  else
    echo "bench-curve: page walk probe, up to the table of $largest users"
    SHAKE_PAGE_WALK_MAX_MB=$(($(table_bytes "$largest") / 1048576 + 1)) \
      logged "$OUT/page_walk.txt" "$PAGE_WALK" --bench
  fi
fi

echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/header.txt"
{
  cat "$OUT/header.txt"
  cat "$OUT"/{ns,ir,startup}.tsv 2>/dev/null >"$OUT/figures.tsv" || true
  python3 - "$OUT/figures.tsv" "$PER_USER" "$PROBE" <<'PY'
import sys
from collections import defaultdict
from statistics import median

tsv, per_user, probe = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ns = defaultdict(list)  # (users, mode) -> criterion ns per request, one per run
ir = {}  # (users, mode) -> instructions per request
rss, start, issue, startrss = defaultdict(list), defaultdict(list), {}, {}
users, claims = [], []
for line in open(tsv):
    kind, u, mode, run, value = line.rstrip("\n").split("\t")
    u = int(u)
    if kind in ("ns", "ir", "rss") and u not in users:
        users.append(u)
    try:
        if kind == "ns":
            ns[(u, mode)].append(float(value) / 32)
        elif kind == "ir":
            c, rx = map(int, value.split())
            ir[(u, mode)] = c / rx
        elif kind == "rss":
            rss[u].append(int(value) * 1024)
        elif kind == "startup":
            start[u].append(float(value))
            if u not in claims:
                claims.append(u)
        elif kind == "issue":
            issue[u] = value
        elif kind == "startrss":
            startrss[u] = int(value) * 1024
    except (ValueError, ZeroDivisionError):
        print(f"(unreadable figure, a run failed? {line.strip()})")
users.sort()


def table_bytes(u):
    return max((u * per_user + 63) // 64, probe) * 64


def name(u):
    for d, s in ((1_000_000, "M"), (1_000, "K")):
        if u >= d and u % d == 0:
            return f"{u // d}{s}"
    return str(u)


def runs(u, m):
    v = ns.get((u, m), [])
    s = " / ".join(f"{x:.1f}" for x in v) or "-"
    return s + (f" (median {median(v):.1f})" if len(v) > 2 else "")


def one(d, u, m):
    return f"{d[(u, m)]:.1f}" if (u, m) in d else "-"


print()
print("| users | ns/request software (per run) | ns/request NIC-checked (per run) "
      "| Ir/request software | Ir/request NIC-checked | table bytes/user | bench peak RSS |")
print("|---|---|---|---|---|---|---|")
for u in users:
    r = " / ".join(f"{b / 2**20:.0f} MiB" for b in rss[u]) or "-"
    print(f"| {name(u)} | {runs(u, 'software')} | {runs(u, 'nic')} | {one(ir, u, 'software')} "
          f"| {one(ir, u, 'nic')} | {table_bytes(u) / u:.2f} | {r} |")


def growth(a, b):
    return f"{(b / a - 1) * 100:+.1f}%"


lo, hi, mid = 1_000_000, 100_000_000, 10_000_000
print()
if lo in users and hi in users:
    print("Growth per request from 1M to 100M users (target: at most +25%):")
    for m in ("software", "nic"):
        parts = []
        if (lo, m) in ir and (hi, m) in ir:
            parts.append(f"Ir {growth(ir[(lo, m)], ir[(hi, m)])}")
        pairs = list(zip(ns.get((lo, m), []), ns.get((hi, m), [])))
        if pairs:
            parts.append("ns " + " / ".join(growth(a, b) for a, b in pairs))
        if len(pairs) > 2:
            parts.append(f"medians of the runs {growth(median(ns[(lo, m)]), median(ns[(hi, m)]))}")
        print(f"  {m:8}: " + ", ".join(parts))
    if rss[lo] and rss[hi]:
        per = (min(rss[hi]) - min(rss[lo])) / (hi - lo)
        print(f"  peak RSS of the benchmark: {per:.1f} bytes per added user "
              f"(the user table: {table_bytes(hi) / hi:.2f})")
if mid in users:
    print("At 10M users (target: at most 350 instructions and 40 ns per request):")
    for m in ("software", "nic"):
        parts = []
        if (mid, m) in ir:
            i = ir[(mid, m)]
            parts.append(f"{i:.1f} Ir ({'met' if i <= 350 else 'not met'})")
        t = ns.get((mid, m), [])
        if t:
            v = "met" if max(t) <= 40 else "met in some runs" if min(t) <= 40 else "not met"
            parts.append(" / ".join(f"{x:.1f}" for x in t) + f" ns ({v})")
        print(f"  {m:8}: " + ", ".join(parts))
if claims:
    print()
    print("| claims in the journals | start-up (two recoveries) | issuing them | peak RSS |")
    print("|---|---|---|---|")
    for c in claims:
        ts = " / ".join(f"{t:.2f} s" for t in start[c])
        rs = f"{startrss[c] / 2**30:.2f} GiB" if c in startrss else "-"
        print(f"| {name(c)} | {ts} | {issue.get(c, '-')} s | {rs} |")
    base = claims[0]
    for c in claims[1:]:
        f = min(start[c]) / min(start[base])
        print(f"  {name(base)} -> {name(c)} claims: start-up x{f:.1f} for x{c / base:.0f} claims "
              f"({min(start[c]) * 1e9 / c:.0f} ns a claim against "
              f"{min(start[base]) * 1e9 / base:.0f})")
PY
  if [ -s "$OUT/page_walk.txt" ]; then
    echo
    cat "$OUT/page_walk.txt"
  fi
} | tee "$OUT/result.txt"
echo "bench-curve: results in $OUT/result.txt"
