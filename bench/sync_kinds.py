#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Full and periodic syncs of the nftables backend (issue 11), this build
against a baseline build of build/tests/nlp_steps measured in the same run.

  sudo NFT_BENCH_BASE_STEPS=/path/to/old/build/tests/nlp_steps python3 bench/sync_kinds.py

For each size "SERVICESxENDPOINTS" (env NFT_BENCH_SIZES, default "10000x2";
the YAML stream of bench/gen, seed NFT_BENCH_SEED=1), and for each binary
(the baseline first, then this build's), in a fresh scratch namespace
"nlsk-<pid>-<k>":

 1. `load F`, `sync full` into the empty namespace: the cold full sync;
 2. NFT_BENCH_REPS=7 times `sync full` with everything programmed: the warm
    full sync (the baseline deletes and recreates its tables; this build
    reads them back and converges them in place);
 3. NFT_BENCH_REPS times `sync` with nothing changed: a periodic sync (the
    baseline's daemon ran a full sync instead, every --sync-period: its
    periodic figure is its warm full sync);
 4. NFT_BENCH_REPS times: another agent commits to a table of its own
    (`nft add chain ip bystander cK`, untimed), then `sync`: a periodic sync
    that finds the ruleset generation moved and runs the cheap check;
 5. this build only: NFT_BENCH_REPS times `readback`, the full sync's
    read-back of the tables alone (the part of the full sync the baseline
    did not have).

Figures are nlp_steps' sync_us (plan, read-back, encoding and the kernel's
commit; the table is not recomputed), medians, and the ratio of the medians
of cpu_us (thread CPU time, the commit included), which a busy machine
inflates far less than wall time. Only scratch namespaces this script creates are
touched; processes are ended by PID; every wait has a timeout.
"""
import ctypes
import os
import signal
import statistics
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
B = os.path.join(TOP, "bench")
OUT = os.path.join(B, "out")
STEPS = os.path.join(TOP, "build", "tests", "nlp_steps")
BASE = os.environ.get("NFT_BENCH_BASE_STEPS", "")
FLAGS = ["--node-ip", "192.168.0.10", "--cluster-cidr", "10.0.0.0/8",
         "--service-cluster-ip-range", "10.96.0.0/12,fd00:96::/108", "--hostname-override", "node-0"]
SIZES = os.environ.get("NFT_BENCH_SIZES", "10000x2").split()
SEED = int(os.environ.get("NFT_BENCH_SEED", "1"))
REPS = int(os.environ.get("NFT_BENCH_REPS", "7"))
TIMEOUT = 600
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_namespaces, _children = [], []


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def ns_add(k):
    name = "nlsk-%d-%d" % (os.getpid(), k)
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=60)
    _namespaces.append(name)
    return name


def in_ns(name):
    def enter():
        fd = os.open("/run/netns/" + name, os.O_RDONLY)
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            os._exit(100)
        os.close(fd)
    return enter


def cleanup():
    for p in _children:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=30)
    for name in _namespaces:
        subprocess.run(["ip", "netns", "del", name], timeout=120)
    _namespaces.clear()


class Steps:
    def __init__(self, binary, ns):
        self.p = subprocess.Popen([binary] + FLAGS, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, preexec_fn=in_ns(ns), text=True, bufsize=1)
        _children.append(self.p)

    def cmd(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        out = self.p.stdout.readline().strip()
        if not out.startswith(("ok", "synced")):
            raise RuntimeError("%s -> %s" % (line, out))
        return out

    def sync(self, full):
        # "synced full|partial compute_us sync_us cpu_us"
        f = self.cmd("sync full" if full else "sync").split()
        return f[1], int(f[3]), int(f[4])

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=TIMEOUT)


def gen_yaml(n, m):
    path = os.path.join(OUT, "s%dx%d.yaml" % (n, m))
    head = "# nlproxy bench/gen --services %d --endpoints %d --format yaml --seed %d\n" % (n, m, SEED)
    try:
        with open(path, encoding="utf-8") as f:
            if f.readline() == head:
                return path
    except OSError:
        pass
    os.makedirs(OUT, exist_ok=True)
    subprocess.run([os.path.join(B, "gen"), "--services", str(n), "--endpoints", str(m), "--format", "yaml",
                    "--seed", str(SEED), path], check=True, timeout=TIMEOUT)
    return path


def run(binary, path, k):
    ns = ns_add(k)
    st = Steps(binary, ns)
    r = {}
    st.cmd("load " + path)
    r["cold"] = [st.sync(True)]
    r["full"] = [st.sync(True) for _ in range(REPS)]
    r["periodic"] = [st.sync(False) for _ in range(REPS)]
    if binary != BASE:
        r["read"] = []
        for _ in range(REPS):
            f = st.cmd("readback").split()
            r["read"].append((f[2] + " tables " + f[3] + " chains", int(f[1]), 0))
    subprocess.run(["ip", "netns", "exec", ns, "nft", "add", "table", "ip", "bystander"], check=True, timeout=60)
    r["moved"] = []
    for i in range(REPS):
        subprocess.run(["ip", "netns", "exec", ns, "nft", "add", "chain", "ip", "bystander", "c%d" % i],
                       check=True, timeout=60)
        r["moved"].append(st.sync(False))
    st.close()
    return r


def med(v, i):
    return statistics.median(x[i] for x in v)


def main():
    if os.geteuid() != 0:
        log("sync_kinds: needs root (scratch network namespaces)")
        return 1
    if not BASE or not os.access(BASE, os.X_OK):
        log("sync_kinds: set NFT_BENCH_BASE_STEPS to the baseline build's nlp_steps")
        return 1
    rows = []
    k = 0
    for size in SIZES:
        n, m = (int(x) for x in size.split("x"))
        path = gen_yaml(n, m)
        res = {}
        for label, binary in (("base", BASE), ("new", STEPS)):
            k += 1
            log("== %s: %s" % (size, label))
            res[label] = run(binary, path, k)
            cleanup()
        b, w = res["base"], res["new"]
        kinds = {w_: {x[0] for x in w[w_]} for w_ in w}
        rows.append("| %d × %d | %.1f / %.1f (**%.2f**; CPU %.2f) | %.1f / %.1f (**%.2f**; CPU %.2f) | %.1f (%s) "
                    "| %.1f / %.3f (**%.4f**; CPU %.4f) | %.3f (%s) | %s |" % (
                        n, m,
                        med(b["cold"], 1) / 1e3, med(w["cold"], 1) / 1e3, med(w["cold"], 1) / med(b["cold"], 1),
                        med(w["cold"], 2) / med(b["cold"], 2),
                        med(b["full"], 1) / 1e3, med(w["full"], 1) / 1e3, med(w["full"], 1) / med(b["full"], 1),
                        med(w["full"], 2) / med(b["full"], 2),
                        med(w["read"], 1) / 1e3, w["read"][0][0],
                        med(b["full"], 1) / 1e3, med(w["periodic"], 1) / 1e3,
                        med(w["periodic"], 1) / med(b["full"], 1), med(w["periodic"], 2) / med(b["full"], 2),
                        med(w["moved"], 1) / 1e3, "/".join(sorted(kinds["moved"])),
                        "/".join(sorted(kinds["periodic"]))))
        log(rows[-1])
    print("| size | cold full sync ms: base / new (ratio; CPU ratio) "
          "| full sync, all programmed, ms: base / new (ratio; CPU ratio) "
          "| of which the read-back, ms (what it read) "
          "| periodic sync, nothing changed, ms: base (its full sync) / new (ratio; CPU ratio) "
          "| new, periodic after another agent's commit, ms (kind) | new periodic kind |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(r)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        cleanup()
