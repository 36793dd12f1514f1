#!/usr/bin/env python3
"""The soak's sampler and report (bench/soak.sh).

  soak.py sample URL PID PERIOD_S OUT.tsv WHILE_FILE
      every PERIOD_S seconds while WHILE_FILE exists (and the process lives): the appliance's
      counters from its Prometheus endpoint and its anonymous memory (RssAnon, kB).
  soak.py report OUT_DIR RESULTS_DIR SOAK_S SAMPLE_S USERS RATE FLOOR_MS BAD_SHARE MEM
                 GEN_RC STOP_RC VERIFY_RC RECON_RC MACHINE
      the summary on stdout and in RESULTS_DIR/soak.md, the samples in soak-samples.tsv;
      exit status 1 if anything failed (invalid answers, a failed stop, verify or reconcile).
"""

import json
import os
import re
import statistics
import sys
import time
import urllib.request

OUTCOMES = ["nothing", "greeting", "red_packet", "throttled", "closed", "denied", "redirect"]
COLUMNS = ["t_s", "rss_anon_kb", "rx", "answered", "dropped"] + OUTCOMES


def scrape(url):
    text = urllib.request.urlopen(url, timeout=2).read().decode()
    v = {k: 0 for k in COLUMNS[2:]}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        n = int(float(value))
        if name.startswith("shake_rx_frames_total"):
            v["rx"] += n
        elif name.startswith("shake_drops_total"):
            v["dropped"] += n
        elif name.startswith("shake_answers_total"):
            m = re.search(r'outcome="([a-z_]+)"', name)
            v["answered"] += n
            if m and m.group(1) in v:
                v[m.group(1)] += n
    return v


def rss_anon_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def sample(url, pid, period, out, while_file):
    start = time.monotonic()
    with open(out, "w") as f:
        f.write("\t".join(COLUMNS) + "\n")
        # The generator is starting (EAL, link, population): the first sample when its first
        # requests have arrived, so that the first interval is not mostly start-up.
        deadline = time.monotonic() + 60
        while os.path.exists(while_file) and time.monotonic() < deadline:
            try:
                if scrape(url)["rx"] > 0:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        start = time.monotonic()
        nxt = start
        while os.path.exists(while_file) and os.path.exists(f"/proc/{pid}"):
            try:
                v = scrape(url)
                v["rss_anon_kb"] = rss_anon_kb(pid)
            except OSError as e:
                print(f"soak: sample failed: {e}", file=sys.stderr)
                break
            v["t_s"] = round(time.monotonic() - start, 3)
            f.write("\t".join(str(v[c]) for c in COLUMNS) + "\n")
            f.flush()
            nxt += period
            while time.monotonic() < nxt and os.path.exists(while_file):
                time.sleep(min(0.1, max(0.0, nxt - time.monotonic())))


def read_samples(path):
    rows = []
    with open(path) as f:
        head = f.readline().split()
        for line in f:
            parts = line.split()
            if len(parts) == len(head):
                rows.append({k: float(x) for k, x in zip(head, parts)})
    return rows


def last_line(path, prefix):
    try:
        with open(path) as f:
            lines = [l.rstrip("\n") for l in f if l.startswith(prefix)]
        return lines[-1] if lines else ""
    except OSError:
        return ""


def report(a):
    (out, results, soak_s, sample_s, users, rate, floor_ms, bad_share, mem,
     gen_rc, stop_rc, verify_rc, recon_rc, machine) = a
    gen_rc, stop_rc, verify_rc, recon_rc = map(int, (gen_rc, stop_rc, verify_rc, recon_rc))
    rows = read_samples(os.path.join(out, "samples.tsv"))
    gen = {}
    try:
        with open(os.path.join(out, "gen.json")) as f:
            gen = json.load(f)
    except (OSError, ValueError):
        pass
    tally = gen.get("tally", {})

    # Answer rate per interval; the first and the last interval (ramp-up, and the partial
    # one when sending stops) are left out of min/median/max.
    rates = []
    for p, q in zip(rows, rows[1:]):
        dt = q["t_s"] - p["t_s"]
        if dt > 0:
            rates.append((q["answered"] - p["answered"]) / dt)
    steady = rates[1:-1] if len(rates) > 2 else rates
    mem_kb = [r["rss_anon_kb"] for r in rows]
    fmt_rate = lambda x: f"{x / 1e6:.3f} M/s"

    first, last = (rows[0], rows[-1]) if rows else ({}, {})
    span = {k: last.get(k, 0) - first.get(k, 0) for k in COLUMNS[2:]}
    decided = span["answered"]
    full = decided - span["throttled"] - span["denied"] - span["redirect"] - span["closed"]
    # The appliance's last line: "shake: stopped. totals busy=... rx=... tx=... ...".
    stopped = last_line(os.path.join(out, "serve.log"), "shake: stopped")
    recon = open(os.path.join(out, "reconcile.log")).read().strip() if os.path.exists(
        os.path.join(out, "reconcile.log")) else ""
    verify = open(os.path.join(out, "verify.log")).read().strip() if os.path.exists(
        os.path.join(out, "verify.log")) else ""
    invalid = tally.get("invalid", -1)
    # The worker's busy share (poll cycles in passes that moved frames), per 1 s stats line.
    busy = []
    try:
        with open(os.path.join(out, "serve.log")) as f:
            for line in f:
                m = re.match(r"stats .* busy=([0-9.]+)%", line)
                if m:
                    busy.append(float(m.group(1)))
    except OSError:
        pass
    m = re.search(r"(\d+) claims", verify)
    journaled = int(m.group(1)) if m else None
    heard = gen.get("outcomes", {}).get("red_packet")

    checks = [
        ("0 invalid answers (the generator validates every answer)", invalid == 0 and gen_rc == 0,
         f"invalid={invalid}, generator exit {gen_rc}"),
        ("clean stop (SIGTERM: journals synced, shards marked clean)", stop_rc == 0,
         f"exit {stop_rc}"),
        ("`shake journal verify` ok", verify_rc == 0, verify.splitlines()[-1] if verify else ""),
        ("`shake reconcile` exact", recon_rc == 0 and "reconcile: exact" in recon,
         recon.splitlines()[-1] if recon else ""),
    ]
    ok = all(c[1] for c in checks) and len(steady) > 0

    lines = []
    w = lines.append
    w("# Soak")
    w("")
    started = gen.get("meta", {}).get("started_unix_ms", time.time() * 1000) / 1000
    w(f"`make soak` (`bench/soak.sh`), run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}: "
      f"{soak_s} s of {users} phones that obey retry_after_ms (throttle floor {floor_ms} ms), "
      f"{float(bad_share) * 100:g}% with bad tokens, "
      + (f"offered {int(float(rate)):,} requests/s" if rate else "sent as fast as the generator goes")
      + " by "
      f"`shake-gen --io dpdk` (one lcore, CPU 0) to `shake serve --io dpdk` (one worker "
      f"lcore, CPU 1) over net_memif, DPDK memory {mem}; seeds and claim journals on disk; "
      f"samples every {sample_s} s. Machine: {machine}.")
    w("")
    w("| figure | value |")
    w("|---|---|")
    if steady:
        med = statistics.median(steady)
        w(f"| answer rate per {sample_s} s interval, min / median / max | "
          f"{fmt_rate(min(steady))} / {fmt_rate(med)} / {fmt_rate(max(steady))} "
          f"({len(steady)} intervals, first and last left out; min {100 * min(steady) / med:.0f}% "
          f"and max {100 * max(steady) / med:.0f}% of the median) |")
    if mem_kb:
        w(f"| appliance RssAnon first / last / max | {mem_kb[0] / 1024:.1f} / "
          f"{mem_kb[-1] / 1024:.1f} / {max(mem_kb) / 1024:.1f} MB "
          f"(last - first {(mem_kb[-1] - mem_kb[0]) / 1024:+.1f} MB) |")
    w(f"| answered by the appliance while sampled | {decided:,.0f} |")
    if decided:
        w(f"| full decisions (nothing, greeting, red_packet) | {full:,.0f} "
          f"({100 * full / decided:.2f}%); throttled {span['throttled']:,.0f}, "
          f"denied {span['denied']:,.0f}, closed {span['closed']:,.0f} |")
        w(f"| red packets issued (journaled) while sampled | {span['red_packet']:,.0f} |")
    if journaled is not None and heard is not None:
        w(f"| RED_PACKET answers: journaled / received by the phones | {journaled:,} / {heard:,} "
          f"({journaled - heard:,} paid but never heard of: dropped at TX or lost) |")
    if busy:
        w(f"| worker lcore busy (cycles in passes that moved frames), median / max of the 1 s "
          f"lines | {statistics.median(busy):.1f}% / {max(busy):.1f}% |")
    reasons = re.findall(r"drop\.([a-z_]+)=(\d+)", stopped)
    w(f"| dropped by the appliance while sampled | {span['dropped']:,.0f}"
      + (f" (at the stop: {', '.join(f'{k} {int(v):,}' for k, v in reasons)})" if reasons else "")
      + " |")
    if tally:
        w(f"| generator: sent / answered / invalid / unmatched / lost | "
          f"{tally.get('sent', 0):,} / {tally.get('answered', 0):,} / {invalid} / "
          f"{tally.get('unmatched', 0):,} / {gen.get('lost', 0):,} |")
        lat = gen.get("latency_ns", {})
        if lat:
            w(f"| round trip p50 / p99 / p99.9 | {lat.get('p50', 0) / 1e3:.0f} / "
              f"{lat.get('p99', 0) / 1e3:.0f} / {lat.get('p999', 0) / 1e3:.0f} us |")
    w("")
    w("The rate is the generator's: its one lcore shares CPU 0 with the appliance's control "
      "thread and whatever else the machine runs, while the worker's busy share above is the "
      "appliance's headroom. `tx_full` drops are answers the generator's RX ring had no room "
      "for while its lcore was not running.")
    w("")
    for name, good, detail in checks:
        w(f"- {'ok' if good else 'FAILED'}: {name}" + (f": {detail}" if detail else ""))
    w("")
    if stopped:
        w(f"Appliance totals at the stop: `{stopped}`")
        w("")
    if recon:
        w("```")
        w(recon)
        w("```")
        w("")
    w(f"Samples: [soak-samples.tsv](soak-samples.tsv) (t_s since sampling started, RssAnon in kB, "
      f"cumulative counters, from the appliance's first request on).")
    text = "\n".join(lines).replace(os.getcwd() + "/", "") + "\n"
    with open(os.path.join(results, "soak.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out, "samples.tsv")) as src, \
            open(os.path.join(results, "soak-samples.tsv"), "w") as dst:
        dst.write(src.read())
    print(text, end="")
    print(f"soak: {'ok' if ok else 'FAILED'}; report {os.path.join(results, 'soak.md')}")
    return 0 if ok else 1


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "sample" and len(sys.argv) == 7:
        sample(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5], sys.argv[6])
        return 0
    if len(sys.argv) >= 2 and sys.argv[1] == "report" and len(sys.argv) == 16:
        return report(sys.argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
