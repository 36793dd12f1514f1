#!/usr/bin/env python3
"""Turns the logs and reports of bench/e2e.sh into build/bench/e2e.md and e2e.json."""
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys

out, criterion, phase_s, users, pcap_frames = sys.argv[1:6]
rounds = int(sys.argv[6]) if len(sys.argv) > 6 else 1


def steady(values):
    """Median of the per-second rates, without the first (start-up) and last (stop) ones."""
    v = values[1:-1] if len(values) > 3 else values
    return statistics.median(v) if v else None


def gen_rate(name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return None, None
    r = json.load(open(path))
    rates = [s["answered"] + s["echoed"] for s in r["timeline"]]
    return steady(rates), r


def log_rates(name, pattern):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return None
    vals = [float(m) for m in re.findall(pattern, open(path, errors="replace").read())]
    # testpmd prints a line per port per period; the forwarder's first seconds fill rings.
    vals = [v for v in vals if v > 0]
    return steady(vals)


def micro_ns():
    path = os.path.join(criterion, "datapath", "burst32_10M_users", "new", "estimates.json")
    if not os.path.exists(path):
        return None
    e = json.load(open(path))
    return e["mean"]["point_estimate"] / 32.0


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception:
        return ""


def probes(name):
    """Cache-line round trips (ns) between CPU 0 and 1, probed around the phases."""
    path = os.path.join(out, f"probe-{name}")
    if not os.path.exists(path):
        return []
    return [int(v) for v in open(path).read().split() if v.isdigit()]


def ratio(a, b):
    return a / b if a and b else None


def outcome_shares(name):
    """Shares of the answers by outcome, from the node's last cumulative stats line."""
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return None
    lines = [l for l in open(path, errors="replace") if "answered=" in l]
    if not lines:
        return None
    counts = dict(re.findall(r"\b([a-z_]+)=(\d+)\b", lines[-1]))
    answered = int(counts.get("answered", 0))
    if not answered:
        return None
    names = ["nothing", "greeting", "red_packet", "throttled", "closed", "denied", "redirect"]
    return {n: int(counts.get(n, 0)) / answered for n in names}


def full_share(shares):
    """Answers that were full decisions: all but THROTTLED (and DENIED, decided on the token)."""
    return None if shares is None else 1 - shares["throttled"] - shares["denied"]


def fmt_share(v):
    return f"{v * 100:.1f}%" if v is not None else "n/a"


# Rounds of (a) testpmd and (b) the appliance on memif, then (c) the socket backend, with a
# probe before (a) and after each phase.
memif_rounds = []
for i in range(1, rounds + 1):
    a, a_r = gen_rate(f"gen-testpmd-memif-{i}.json")
    b, b_r = gen_rate(f"gen-serve-memif-{i}.json")
    f, _ = gen_rate(f"gen-serve-memif-full-{i}.json")
    c, c_r = gen_rate(f"gen-serve-socket-{i}.json")
    memif_rounds.append(
        {
            "round": i,
            "testpmd_pps": a,
            "shake_pps": b,
            "shake_full_pps": f,
            "socket_pps": c,
            "shake_over_testpmd": ratio(b, a),
            "shake_full_over_testpmd": ratio(f, a),
            "shake_over_socket": ratio(b, c),
            "shake_worker_busy_percent": log_rates(f"serve-memif-{i}.log", r"busy=([0-9.]+)%"),
            "generator_sent_pps": {
                "testpmd": a_r["sent_per_s"] if a_r else None,
                "shake": b_r["sent_per_s"] if b_r else None,
            },
            "probe_ns": probes(i),
            "report": b_r,
            "socket_report": c_r,
        }
    )


def best(key):
    """The best round of one side. Interference here (the host moving the vCPUs apart) only
    ever slows a phase down, so each side's best round is its least disturbed one."""
    v = [r for r in memif_rounds if r[key]]
    return max(v, key=lambda r: r[key]) if v else None


def median_of(key):
    v = [r[key] for r in memif_rounds if r[key]]
    return statistics.median(v) if v else None


best_a, best_b, best_c = best("testpmd_pps"), best("shake_pps"), best("socket_pps")
best_f = best("shake_full_pps")
app_memif_full = best_f["shake_full_pps"] if best_f else None
memif_full_ratio = ratio(app_memif_full, best_a["testpmd_pps"] if best_a else None)
if memif_full_ratio is not None and not 1 / 1.8 < memif_full_ratio < 1.8:
    memif_full_ratio = None
shares = {
    "memif_shake": outcome_shares(f"serve-memif-{best_b['round']}.log") if best_b else None,
    "memif_shake_full": outcome_shares(f"serve-memif-full-{best_f['round']}.log") if best_f else None,
    "pcap_shake": outcome_shares("serve-pcap.log"),
    "pcap_shake_full": outcome_shares("serve-pcap-full.log"),
}
tpmd_memif = best_a["testpmd_pps"] if best_a else None
app_memif = best_b["shake_pps"] if best_b else None
sock = best_c["socket_pps"] if best_c else None
memif_ratio = ratio(app_memif, tpmd_memif)
socket_ratio = ratio(app_memif, sock)
# The two memif levels are over 2x apart. Best rounds that far apart did not run at one
# level (one side never had the vCPUs close): their ratio says nothing about the appliance.
comparable = memif_ratio is not None and 1 / 1.8 < memif_ratio < 1.8
if not comparable:
    memif_ratio = None
busy_memif = best_b["shake_worker_busy_percent"] if best_b else None
app_memif_r = best_b["report"] if best_b else None
sock_r = best_c["socket_report"] if best_c else None
tpmd_pcap = log_rates("testpmd-pcap.log", r"Rx-pps:\s+(\d+)")
app_pcap = log_rates("serve-pcap.log", r"rx_rate=(\d+)/s")
busy_pcap = log_rates("serve-pcap.log", r"busy=([0-9.]+)%")
app_pcap_full = log_rates("serve-pcap-full.log", r"rx_rate=(\d+)/s")
busy_pcap_full = log_rates("serve-pcap-full.log", r"busy=([0-9.]+)%")
mem_path = os.path.join(out, "memory-mode")
memory = open(mem_path).read().strip() if os.path.exists(mem_path) else "--no-huge"
ns = micro_ns()


def fmt_rate(v):
    return f"{v / 1e6:.2f} Mpps" if v else "n/a"


def fmt_ratio(v):
    return f"{v:.2f}x" if v else "n/a"


lscpu = sh("lscpu | head -15")
model = re.search(r"Model name:\s*(.*)", lscpu)
machine = {
    "nproc": sh("nproc"),
    "cpu": model.group(1) if model else platform.processor(),
    "kernel": platform.release(),
    "dpdk": sh("pkg-config --modversion libdpdk"),
    "lscpu_head": lscpu,
}
results = {
    "phase_s": float(phase_s),
    "users": int(users),
    "pcap_frames": int(pcap_frames),
    "machine": machine,
    "memif_testpmd_macswap_pps": tpmd_memif,
    "memif_shake_dpdk_pps": app_memif,
    "socket_shake_pps": sock,
    "pcap_testpmd_5tswap_pps": tpmd_pcap,
    "pcap_shake_dpdk_pps": app_pcap,
    "full_decision": {
        "memif_shake_dpdk_pps": app_memif_full,
        "pcap_shake_dpdk_pps": app_pcap_full,
        "memif_shake_over_testpmd": memif_full_ratio,
        "pcap_shake_over_testpmd_5tswap": ratio(app_pcap_full, tpmd_pcap),
    },
    "answer_shares": shares,
    "datapath_ns_per_request": ns,
    "dpdk_memory": memory,
    "worker_busy_percent": {
        "memif_shake": busy_memif,
        "pcap_shake": busy_pcap,
        "pcap_shake_full": busy_pcap_full,
    },
    "rounds": [
        {k: v for k, v in r.items() if k not in ("report", "socket_report")} for r in memif_rounds
    ],
    "memif_best_rounds_comparable": comparable,
    "medians_of_rounds": {
        "memif_testpmd_macswap_pps": median_of("testpmd_pps"),
        "memif_shake_dpdk_pps": median_of("shake_pps"),
        "socket_shake_pps": median_of("socket_pps"),
    },
    "ratios": {
        "memif_shake_over_testpmd": memif_ratio,
        "memif_shake_over_socket": socket_ratio,
        "pcap_shake_over_testpmd_5tswap": ratio(app_pcap, tpmd_pcap),
    },
    "validation": {
        name: {
            "sent": r["tally"]["sent"],
            "answered": r["tally"]["answered"],
            "invalid": r["tally"]["invalid"],
            "loss_ratio": r["loss_ratio"],
            "latency_ns": r["latency_ns"],
        }
        for name, r in [("memif_shake_best_round", app_memif_r), ("socket_shake", sock_r)]
        if r
    },
    "targets": {
        "memif_shake_over_testpmd": 0.85,
        "memif_shake_over_socket": 30,
        "pcap_shake_pps": 14e6,
        "pcap_shake_over_testpmd_5tswap": 0.35,
        "pcap_full_decision_over_testpmd_5tswap": 0.6,
        "datapath_ns_per_request": 50,
    },
}
ratios = results["ratios"]


def mark(ok):
    return "" if ok is None else (" (met)" if ok else " (not met)")


def ge(v, t):
    return None if v is None else v >= t


lat = app_memif_r["latency_ns"] if app_memif_r else None
md = f"""# shake end to end, {phase_s} s per phase

Machine: {machine['nproc']} CPUs, {machine['cpu']}, Linux {machine['kernel']}, DPDK {machine['dpdk']}.
One worker (or forwarding) lcore on CPU 1, control lcore and the generator on CPU 0; every DPDK
process {memory} --no-pci, virtual devices only. Generator: {users} users, 1% bad tokens, flood,
ignoring retry_after_ms; every answer validated. Each appliance setup runs twice: with every
request a full decision (throttle floor 1 ms: token, user table, round, draw, the load of the
event, where phones wait the retry_after_ms they are given), the headline; and with the
default 5 s floor, where most answers are THROTTLED, the cheapest decision. "Full decisions"
is the share of answers that were not THROTTLED or DENIED.

| setup | what | rate | ratio | full decisions | target |
|---|---|---|---|---|---|
| net_pcap infinite_rx | testpmd 5tswap | {fmt_rate(tpmd_pcap)} | 1.00x | | |
| net_pcap infinite_rx | **shake serve --io dpdk, every request a full decision** | **{fmt_rate(app_pcap_full)}** | **{fmt_ratio(results['full_decision']['pcap_shake_over_testpmd_5tswap'])} of 5tswap** | {fmt_share(full_share(shares['pcap_shake_full']))} | >= 0.6x{mark(ge(results['full_decision']['pcap_shake_over_testpmd_5tswap'], 0.6))} |
| net_pcap infinite_rx | shake serve --io dpdk, replayed stream mostly THROTTLED | {fmt_rate(app_pcap)} | {fmt_ratio(ratios['pcap_shake_over_testpmd_5tswap'])} of 5tswap | {fmt_share(full_share(shares['pcap_shake']))} | |
| net_memif | (a) dpdk-testpmd macswap, best of {rounds} rounds | {fmt_rate(tpmd_memif)} | 1.00x | | |
| net_memif | **(b') shake serve --io dpdk, every request a full decision, best of {rounds}** | **{fmt_rate(app_memif_full)}** | **{fmt_ratio(memif_full_ratio) + ' of (a)' if memif_full_ratio else 'not comparable (levels)'}** | {fmt_share(full_share(shares['memif_shake_full']))} | |
| net_memif | (b) shake serve --io dpdk, flood mostly THROTTLED, best of {rounds} rounds | {fmt_rate(app_memif)} | {fmt_ratio(ratios['memif_shake_over_testpmd']) + ' of (a)' if comparable else 'not comparable: the best rounds ran at different levels; rerun with more ROUNDS'} | {fmt_share(full_share(shares['memif_shake']))} | >= 0.85x{mark(ge(ratios['memif_shake_over_testpmd'], 0.85))} |
| loopback | (c) shake serve --io socket, best of {rounds} rounds | {fmt_rate(sock)} | (b) is {fmt_ratio(ratios['memif_shake_over_socket'])} of (c) | | >= 30x{mark(ge(ratios['memif_shake_over_socket'], 30))} |
| none | (d) datapath micro-benchmark, 10M users, full decisions | {f'{ns:.1f} ns/request ({1e3 / ns:.1f} Mpps/core)' if ns else 'n/a'} | | | <= 40 ns{mark(None if ns is None else ns <= 40)} |
"""
if lat:
    md += (
        f"\nmemif round trip through the appliance under flood: p50 {lat['p50'] / 1e3:.1f} us, "
        f"p99 {lat['p99'] / 1e3:.1f} us, p99.9 {lat['p999'] / 1e3:.1f} us, max {lat['max'] / 1e3:.1f} us; "
        f"invalid answers: {app_memif_r['tally']['invalid']}.\n"
    )
md += f"""
Rounds of (a), (b), (c), each phase {phase_s} s; the table above takes each side's best round,
and compares (a) and (b) only when their best rounds are within 1.8x of each other (at one
level).
On this kind of VM the traffic between the two CPUs is only as fast as the host keeps the two
vCPUs close, which changes under the guest: the probes (bench/cacheline_probe.c, the
cache-line round trip between CPU 0 and CPU 1, before (a) and after each phase, in ns) read
about 50-80 when they are close and about 330 when they are not, and both memif sides run at
about 10 Mpps or about 4 Mpps accordingly. Such interference only ever slows a phase down.

| round | probes (ns) | (a) testpmd | (b') shake, full decisions | (b) shake | (c) socket | (b')/(a) | (b)/(a) | (b)/(c) | appliance worker busy | generator sent in (a) / (b) |
|---|---|---|---|---|---|---|---|---|---|---|
"""
for r in memif_rounds:
    g = r["generator_sent_pps"]
    busy = r["shake_worker_busy_percent"]
    md += (
        f"| {r['round']} | {' / '.join(str(v) for v in r['probe_ns']) or 'n/a'} "
        f"| {fmt_rate(r['testpmd_pps'])} | {fmt_rate(r['shake_full_pps'])} | {fmt_rate(r['shake_pps'])} "
        f"| {fmt_rate(r['socket_pps'])} | {fmt_ratio(r['shake_full_over_testpmd'])} | {fmt_ratio(r['shake_over_testpmd'])} "
        f"| {fmt_ratio(r['shake_over_socket'])} | {f'{busy:.1f}%' if busy else 'n/a'} "
        f"| {fmt_rate(g['testpmd'])} / {fmt_rate(g['shake'])} |\n"
    )
md += (
    "\nThe generator is one lcore that builds every request and, in (b), validates every answer "
    "(in (a) it only recognises its requests echoed back). A worker busy near 100% means the "
    "appliance, not the generator, set the rate of (b).\n"
)
for name, rate, busy in [
    ("memif (b)", app_memif, busy_memif),
    ("net_pcap", app_pcap, busy_pcap),
    ("net_pcap, full decisions", app_pcap_full, busy_pcap_full),
]:
    if rate and busy:
        md += (
            f"\nAppliance worker lcore in {name}: busy {busy:.1f}% of its cycles (passes that moved "
            f"frames) at {rate / 1e6:.2f} Mpps"
            + (
                f", so about {rate / (busy / 100) / 1e6:.1f} Mpps if the input kept it busy.\n"
                if busy < 95
                else ": the worker itself is the limit.\n"
            )
        )
md += "\nRates are medians of the per-second rates, start and end seconds left out.\n"
# The charts of the appliance's best round, as throughput.svg and latency.svg.
if best_b:
    for chart in ("throughput.svg", "latency.svg"):
        src = os.path.join(out, f"svg-{best_b['round']}", chart)
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(out, chart))
    md += f"\nCharts: throughput.svg and latency.svg, from round {best_b['round']} of (b).\n"
open(os.path.join(out, "e2e.md"), "w").write(md)
json.dump(results, open(os.path.join(out, "e2e.json"), "w"), indent=2)
print(md)
