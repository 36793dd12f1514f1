#!/usr/bin/env python3
"""Turns the logs and reports of bench/e2e.sh into build/bench/e2e.md and e2e.json."""
import json
import os
import platform
import re
import statistics
import subprocess
import sys

out, criterion, phase_s, users, pcap_frames = sys.argv[1:6]


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


tpmd_memif, tpmd_memif_r = gen_rate("gen-testpmd-memif.json")
app_memif, app_memif_r = gen_rate("gen-serve-memif.json")
sock, sock_r = gen_rate("gen-serve-socket.json")
tpmd_pcap = log_rates("testpmd-pcap.log", r"Rx-pps:\s+(\d+)")
app_pcap = log_rates("serve-pcap.log", r"rx_rate=(\d+)/s")
# The worker lcore's busy share (cycles of passes that moved frames), per second.
busy_memif = log_rates("serve-memif.log", r"busy=([0-9.]+)%")
busy_pcap = log_rates("serve-pcap.log", r"busy=([0-9.]+)%")
mem_path = os.path.join(out, "memory-mode")
memory = open(mem_path).read().strip() if os.path.exists(mem_path) else "--no-huge"
ns = micro_ns()


def ratio(a, b):
    return a / b if a and b else None


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
    "datapath_ns_per_request": ns,
    "dpdk_memory": memory,
    "worker_busy_percent": {"memif_shake": busy_memif, "pcap_shake": busy_pcap},
    "ratios": {
        "memif_shake_over_testpmd": ratio(app_memif, tpmd_memif),
        "memif_shake_over_socket": ratio(app_memif, sock),
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
        for name, r in [("memif_shake", app_memif_r), ("socket_shake", sock_r)]
        if r
    },
    "targets": {
        "memif_shake_over_testpmd": 0.85,
        "memif_shake_over_socket": 30,
        "pcap_shake_pps": 14e6,
        "pcap_shake_over_testpmd_5tswap": 0.35,
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
ignoring retry_after_ms (most answers are THROTTLED, the cheapest decision); every answer validated.

| setup | what | rate | ratio | SPEC target |
|---|---|---|---|---|
| net_memif | (a) dpdk-testpmd macswap | {fmt_rate(tpmd_memif)} | 1.00x | |
| net_memif | (b) shake serve --io dpdk | {fmt_rate(app_memif)} | {fmt_ratio(ratios['memif_shake_over_testpmd'])} of (a) | >= 0.85x{mark(ge(ratios['memif_shake_over_testpmd'], 0.85))} |
| loopback | (c) shake serve --io socket | {fmt_rate(sock)} | (b) is {fmt_ratio(ratios['memif_shake_over_socket'])} of (c) | >= 30x{mark(ge(ratios['memif_shake_over_socket'], 30))} |
| net_pcap infinite_rx | testpmd 5tswap | {fmt_rate(tpmd_pcap)} | 1.00x | |
| net_pcap infinite_rx | shake serve --io dpdk | {fmt_rate(app_pcap)} | {fmt_ratio(ratios['pcap_shake_over_testpmd_5tswap'])} of 5tswap | >= 14 Mpps{mark(ge(app_pcap, 14e6))}, ~0.35x |
| none | (d) datapath micro-benchmark | {f'{ns:.1f} ns/request ({1e3 / ns:.1f} Mpps/core)' if ns else 'n/a'} | | <= 50 ns{mark(None if ns is None else ns <= 50)} |
"""
if lat:
    md += (
        f"\nmemif round trip through the appliance under flood: p50 {lat['p50'] / 1e3:.1f} us, "
        f"p99 {lat['p99'] / 1e3:.1f} us, p99.9 {lat['p999'] / 1e3:.1f} us, max {lat['max'] / 1e3:.1f} us; "
        f"invalid answers: {app_memif_r['tally']['invalid']}.\n"
    )
gen_max = [r["sent_per_s"] for r in (tpmd_memif_r, app_memif_r) if r]
if gen_max:
    md += (
        f"\nThe generator (one lcore, building and validating every frame) sent at most "
        f"{max(gen_max) / 1e6:.2f} Mpps in the memif phases: when (a) and (b) are both near it, the "
        f"generator, not the forwarder or the appliance, is the limit and (b)/(a) only says the "
        f"appliance keeps up with it.\n"
    )
for name, rate, busy in [("memif (b)", app_memif, busy_memif), ("net_pcap", app_pcap, busy_pcap)]:
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
open(os.path.join(out, "e2e.md"), "w").write(md)
json.dump(results, open(os.path.join(out, "e2e.json"), "w"), indent=2)
print(md)
