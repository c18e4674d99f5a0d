#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 15's targets, met or missed, from one run of bench/run.sh.

  python3 bench/targets.py [--since EPOCH] [--load-before S] [--load-after S]

Reads what this run wrote under bench/out (files older than --since are
ignored, and of the appended raw files only the last run's block):
  nft_raw.txt      bench/nft_sync.py's RESULT lines (nftables backend)
  ipvs_vm.txt      the same script's RESULT lines from inside tests/vm (IPVS)
  daemon_raw.txt   bench/daemon_sync.py's RAW lines (the whole daemon)
  watch.txt        bench/watch.sh's WATCHRESULT line (the API watcher)
and prints one markdown table: each target, the figures that decide it and
met / missed / not measured. A size that was not run is "not measured",
never "met".
"""
import argparse
import json
import os
import re
import sys
import time

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")
CHANGE_SIZES = [(1000, 2), (10000, 2), (30000, 2), (100000, 2), (5000, 50)]
P99_MS = 5.0


def fresh(path, since):
    return os.path.exists(path) and os.path.getmtime(path) >= since


def results(path, since, blocks=True):
    """{(n, m): RESULT} of nft_sync.py. blocks: an appended raw file, whose
    last run starts after its last '# <date> sizes=' header; else a whole
    output (the VM's, one run)."""
    if not fresh(path, since):
        return {}
    res = {}
    for line in open(path, errors="replace"):
        if blocks and line.startswith("# ") and " sizes=" in line:
            res = {}
        elif line.startswith("RESULT "):
            r = json.loads(line[7:])
            res[(r["n"], r["m"])] = r
    return res


def daemon_results(path, since):
    """{(n, m): {"manifests": [sync s], "api_node": [sync s]}} of the last
    'after' lines (the build under test, not a baseline)."""
    if not fresh(path, since):
        return {}
    res = {}
    for line in open(path, errors="replace"):
        if line.startswith("# ") and " sizes=" in line:
            res = {}
        m = re.match(r"RAW (\d+)x(\d+) after manifests sync_s=(\S*) .* api_node sync_s=(\S*) ", line)
        if m:
            f = lambda s: [float(x) for x in s.split(",") if x]
            res[(int(m[1]), int(m[2]))] = {"manifests": f(m[3]), "api_node": f(m[4])}
    return res


def watch_result(path, since):
    if not fresh(path, since):
        return None
    r = None
    for line in open(path, errors="replace"):
        if line.startswith("WATCHRESULT "):
            r = json.loads(line[12:])
    return r


def ms(us):
    return "%.2f" % (us / 1000.0)


def p99(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, -(-99 * len(xs) // 100) - 1))] if xs else None


def verdict(ok, measured=True):
    if not measured:
        return "not measured"
    return "**met**" if ok else "**missed**"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--since", type=float, default=0.0, help="ignore result files older than this (epoch s)")
    ap.add_argument("--load-before", default="")
    ap.add_argument("--load-after", default="")
    a = ap.parse_args()
    # nft_sync.py's header has minute resolution, file times do not.
    since = a.since - 60 if a.since else 0.0
    nft = results(os.path.join(OUT, "nft_raw.txt"), since)
    ipvs = results(os.path.join(OUT, "ipvs_vm.txt"), since, blocks=False)
    dmn = daemon_results(os.path.join(OUT, "daemon_raw.txt"), since)
    wr = watch_result(os.path.join(OUT, "watch.txt"), since)
    rows = []

    # 1. one change: p99 < 5 ms, compute + sync (what a daemon's sync costs),
    # wall and CPU; the backend's sync alone shown beside.
    for n, m in CHANGE_SIZES:
        r = nft.get((n, m))
        if not r or "error" in r or "chg" not in r:
            rows.append(("one change p99 < 5 ms, %d × %d" % (n, m), "—", verdict(False, False)))
            continue
        parts, ok = [], True
        for k, name in (("chg", "endpoint"), ("add", "add svc"), ("rem", "remove svc")):
            d = r[k]
            ok = ok and d["p99"] < P99_MS * 1000 and d["cpu_p99"] < P99_MS * 1000
            parts.append("%s %s / %s (sync alone %s)" % (name, ms(d["p99"]), ms(d["cpu_p99"]), ms(d["sync_p99"])))
        if "foreign_us" in r:
            parts.append("the first sync after another program's commit (the ruleset check) %s / %s" % (
                ms(r["foreign_us"]), ms(r["foreign_cpu_us"])))
        rows.append(("one change p99 < 5 ms, %d × %d: compute + sync wall / CPU ms" % (n, m), "; ".join(parts),
                     verdict(ok)))
    for (n, m), d in sorted(dmn.items()):
        xs = d["manifests"] + d["api_node"]
        rows.append(("the daemon, %d × %d: its own sync after one change (manifests reload, Node update), p99 ms"
                     % (n, m), "%s over %d changes" % (ms(p99(xs) * 1e6), len(xs)),
                     verdict(p99(xs) * 1000 < P99_MS)))

    # 2. cold sync, nftables
    big = nft.get((100000, 2))
    if big and "cold_us" in big:
        c, b = big["cold_us"] / 1e6, big["base_s"]
        rows.append(("cold sync 100k × 2 < 10 s and ≤ 0.5 × `nft -f`", "%.2f s, `nft -f` %.2f s: %.2f ×" % (c, b, c / b),
                     verdict(c < 10 and c / b <= 0.5)))
    else:
        rows.append(("cold sync 100k × 2 < 10 s and ≤ 0.5 × `nft -f`", "—", verdict(False, False)))
    s10, s30 = nft.get((10000, 2)), nft.get((30000, 2))
    if s10 and s30 and s10.get("cold_all_us") and s30.get("cold_all_us"):
        k = min(len(s10["cold_all_us"]), len(s30["cold_all_us"]))
        ratios = [s30["cold_all_us"][i] / s10["cold_all_us"][i] for i in range(k)]
        rows.append(("cold 30k × 2 ≤ 3.2 × 10k × 2, in three runs",
                     "%s (runs paired in order; medians %.2f / %.2f s)" % (
                         ", ".join("%.2f ×" % x for x in ratios), s30["cold_us"] / 1e6, s10["cold_us"] / 1e6),
                     verdict(k >= 3 and all(x <= 3.2 for x in ratios), k >= 3)))
    else:
        rows.append(("cold 30k × 2 ≤ 3.2 × 10k × 2, in three runs", "—", verdict(False, False)))

    # 3. IPVS, in the VM
    ib, i1 = ipvs.get((100000, 2)), ipvs.get((1000, 2))
    if ib and "cold_us" in ib:
        c, b = ib["cold_us"] / 1e6, ib["base_s"]
        rows.append(("IPVS cold sync 100k × 2 ≤ 0.5 × `ipvsadm-restore` (in the VM)",
                     "%.1f s, `ipvsadm-restore` %.1f s: %.2f ×" % (c, b, c / b), verdict(c / b <= 0.5)))
    else:
        rows.append(("IPVS cold sync 100k × 2 ≤ 0.5 × `ipvsadm-restore` (in the VM)",
                     "sizes run: %s" % (", ".join("%d × %d" % k for k in sorted(ipvs)) or "none"), verdict(False, False)))
    if ib and i1 and "chg" in ib and "chg" in i1:
        f = ib["chg"]["cpu_p99"] / max(i1["chg"]["cpu_p99"], 1)
        rows.append(("IPVS one change flat from 1k to 100k (p99 CPU 100k ÷ 1k ≤ 2)",
                     "%s → %s ms: %.2f ×" % (ms(i1["chg"]["cpu_p99"]), ms(ib["chg"]["cpu_p99"]), f), verdict(f <= 2)))
    else:
        rows.append(("IPVS one change flat from 1k to 100k (p99 CPU 100k ÷ 1k ≤ 2)", "—", verdict(False, False)))

    # 4. peak RSS (nlp_steps: the parsed model, two tables, the cold plan)
    for n, lim in ((10000, 64), (100000, 256)):
        r = nft.get((n, 2))
        if r and r.get("hwm_kib"):
            mib = r["hwm_kib"] / 1024
            rows.append(("peak RSS < %d MiB at %dk × 2" % (lim, n // 1000), "%.1f MiB" % mib, verdict(mib < lim)))
        else:
            rows.append(("peak RSS < %d MiB at %dk × 2" % (lim, n // 1000), "—", verdict(False, False)))

    # 5. the API watcher
    if wr:
        ok = wr["services"] >= 100000 and wr["updates"] >= 100000 and wr["events_per_cpu_s"] >= 100000 and wr["noloss"]
        rows.append(("watcher ≥ 100k events per CPU s at 100k services, none lost",
                     "%d services, %d updates: %d events per CPU s, none lost" % (
                         wr["services"], wr["updates"], wr["events_per_cpu_s"]),
                     verdict(ok, wr["services"] >= 100000)))
    else:
        rows.append(("watcher ≥ 100k events per CPU s at 100k services, none lost", "—", verdict(False, False)))

    print("## Issue 15's targets, %s" % time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    print()
    if a.load_before or a.load_after:
        print("Load before: `%s`; after: `%s`." % (a.load_before.strip(), a.load_after.strip()))
        print()
    print("| target | this run | |")
    print("|---|---|---|")
    for t, fig, v in rows:
        print("| %s | %s | %s |" % (t, fig, v))
    met = sum(1 for _, _, v in rows if v == "**met**")
    print()
    print("%d of %d met." % (met, len(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
