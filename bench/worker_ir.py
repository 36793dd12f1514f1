#!/usr/bin/env python3
"""Reads bench/worker_ir.sh's callgrind dumps: instructions per frame of shake's worker and of
testpmd's forwarding lcore, split by where they go, and the ratio of the two.

Usage: worker_ir.py OUT_DIR
"""
import collections
import glob
import os
import re
import sys

BURST = 32


def parse(path):
    """Self cost per (object, function), and call edges: (caller, callee) -> [calls, inclusive]."""
    names = {"ob": {}, "fn": {}}
    self_cost = collections.Counter()
    edges = collections.defaultdict(lambda: [0, 0])
    ob = fn = cob = cfn = None
    pending_call = None
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.rstrip("\n")
        m = re.match(r"^(ob|fn|cob|cfn|fl|fi|fe|cfi|cfl)=\((\d+)\)(?: (.*))?$", line)
        if m:
            kind, ident, name = m.groups()
            table = "ob" if kind in ("ob", "cob") else "fn" if kind in ("fn", "cfn") else None
            if table is None:
                continue
            if name is not None:
                names[table][ident] = name
            value = names[table].get(ident, ident)
            if kind == "ob":
                ob = cob = value
            elif kind == "fn":
                fn = value
                cob = ob
            elif kind == "cob":
                cob = value
            else:
                cfn = value
            continue
        if line.startswith("calls="):
            pending_call = int(line[6:].split()[0])
            continue
        if not line or not (line[0].isdigit() or line[0] in "+-*"):
            continue
        parts = line.split()
        cost = int(parts[-1]) if len(parts) >= 2 else 0
        if pending_call is not None:
            edge = edges[((ob, fn), (cob, cfn))]
            edge[0] += pending_call
            edge[1] += cost
            pending_call = None
            cob = ob
        else:
            self_cost[(ob, fn)] += cost
    return self_cost, edges


def frames_received(edges):
    """Frames the process received: calls of net_pcap's receive function (of the PMD's
    functions called from outside it, the one whose calls cost the most: receive copies each
    frame, transmit only frees) times the burst, which it always fills from the replayed
    ring."""
    into = collections.defaultdict(lambda: [0, 0])
    for (caller, callee), (calls, cost) in edges.items():
        if "net_pcap" in (callee[0] or "") and "net_pcap" not in (caller[0] or ""):
            into[callee][0] += calls
            into[callee][1] += cost
    if not into:
        return 0
    calls, _ = max(into.values(), key=lambda v: v[1])
    return calls * BURST


def group(obj, fn):
    obj = os.path.basename(obj or "")
    if "net_pcap" in obj or "mempool" in obj or "librte" in obj or "ld-linux" in obj:
        return "PMD and DPDK libraries (receive, transmit, mempool)"
    if any(k in fn for k in ("process_burst_checked", "shake_payload_with", "UserTable", "WinnerTable",
                               "try_issue", "pulp::", "begin_burst", "Worker<")):
        return "decisions (the datapath benchmark's burst function and what it calls)"
    if "libc" in obj:
        return "libc (memcpy, memset)"
    if "testpmd" in obj:
        return "testpmd's forwarding loop (5tswap)"
    return "worker loop (staging, mbufs, counters, backlog)"


def measure(path):
    """A dump's self cost per function, call edges and frames received."""
    self_cost, edges = parse(path)
    return self_cost, edges, frames_received(edges)


def report(name, path, measured):
    self_cost, edges, frames = measured
    if not frames:
        print(f"{name}: no frames received in {path}")
        return None
    total = sum(self_cost.values())
    decided = sum(c for (_, callee), (c, _) in edges.items() if callee[1] and "shake_payload_with" in callee[1])
    by_group = collections.Counter()
    by_fn = collections.Counter()
    for (obj, fn), cost in self_cost.items():
        by_group[group(obj, fn or "")] += cost
        by_fn[(os.path.basename(obj or ""), fn)] += cost
    print(f"{name}: {total / frames:.1f} instructions a frame ({total} over {frames} frames"
          + (f"; {decided} requests decided" if decided else "") + ")")
    for g, cost in by_group.most_common():
        print(f"  {cost / frames:7.1f}  {g}")
    print("  functions (self):")
    for (obj, fn), cost in by_fn.most_common(12):
        if cost / frames >= 1:
            print(f"  {cost / frames:7.1f}  {fn} [{obj}]")
    return total / frames


def main():
    out = sys.argv[1]
    path = os.path.join(out, "shake.out.1")
    shake = report("shake serve --io dpdk, every request a full decision", path, measure(path))
    # testpmd: one dump per thread; the forwarding lcore is the one that received frames.
    threads = [(p, measure(p)) for p in sorted(glob.glob(os.path.join(out, "testpmd.out.1-*")))]
    tpmd = None
    if threads:
        path, measured = max(threads, key=lambda t: t[1][2])
        tpmd = report("dpdk-testpmd 5tswap", path, measured)
    if shake and tpmd:
        print(f"testpmd / shake, instructions a frame: {tpmd / shake:.2f}")


if __name__ == "__main__":
    main()
