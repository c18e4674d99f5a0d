#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""nftables backend benchmark (issue 3): cold sync and incremental syncs of
the real backend, against `nft -f` of the dry-run script as the baseline.

  sudo python3 bench/nft_sync.py          # (run.sh calls it when root)

For each size "SERVICESxENDPOINTS" (env NFT_BENCH_SIZES, default
"1000x2 10000x2 30000x2 5000x50"), on the YAML stream of bench/gen (seed
NFT_BENCH_SEED, default 1):

 1. baseline: `nft -f` of `nlproxy --manifests F --dry-run --output nft` into
    an empty scratch network namespace (process wall time; median of
    NFT_BENCH_REPS_SMALL=3 fresh namespaces at <= 10k x 2, NFT_BENCH_REPS_LARGE=1
    above);
 2. cold sync: in a fresh namespace, build/tests/nlp_steps `load F` then
    `sync full`: compute_us + sync_us as nlp_steps reports them (same number of
    fresh namespaces as the baseline);
 3. one endpoint change, N programmed (in the last cold-sync namespace):
    NFT_BENCH_ITERS=50 times `apply` one existing IPv4 EndpointSlice (a
    different one each time) whose first, ready endpoint gets a new address
    (two variants alternate, so every change is real), then `sync`;
 4. one new Service, N programmed: NFT_BENCH_ITERS times apply a ClusterIP
    Service (a free 10.96.x.y: not one of bench/gen's (i*7919+10) mod 2^20
    offsets) plus its slice with 2 ready endpoints, `sync`; then
    `delete-service`, `delete-slice`, `sync`;
 5. peak RSS of nlp_steps (VmHWM) at the end of the size's run, read before
    its stdin is closed.

The kernel's share, from nlp_steps' split of each sync (nft_txn_stats:
commit_us = sendmsg until the kernel's final ack): the cold sync's plan /
encode / commit and batch size; the floor (nlp_steps `floor`: median
commit_us of NFT_BENCH_FLOOR_ROUNDS=21 one-element add/delete batches in a
scratch table, right after the cold sync: what any commit costs with that
ruleset in place, since nf_tables_commit visits every chain of every table;
then one no-op sync, foreign_us in the raw RESULT, which pays the check of
the ruleset that follows another program's commit);
commit_us p50/p99 of the changes; user and system CPU (RUSAGE_THREAD).

Input: bench/gen's YAML stream as one file (the same file as run.sh's), or
with NFT_BENCH_SPLIT_MIB=N a directory of files of at most N MiB each
(bench/gen --split-bytes), what a user with a large cluster would give
--manifests.

Every kernel operation runs in scratch namespaces "nlbs-<pid>-<k>" that this
script creates and deletes (also on failure, Ctrl-C and SIGTERM); it never
touches the host's ruleset. Processes are started and killed by PID only;
every wait has a timeout (NFT_BENCH_TIMEOUT seconds, default 900).

Prints a markdown table and appends it to bench/out/nft_results.md; raw
per-iteration figures go to bench/out/nft_raw.txt. Env NFT_BENCH_PERF=SIZE
(e.g. 10000x2) records `perf record -g` of nlp_steps during that size's change
loop into bench/out/nft_perf.<size>.data and prints the top symbols
(NFT_BENCH_PERF_CG=dwarf for user-space call chains; slower).
"""
import ctypes
import json
import os
import re
import select
import signal
import statistics
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
B = os.path.join(TOP, "bench")
# NFT_BENCH_MODE=ipvs: the IPVS backend against `ipvsadm-restore` of the
# dry-run's ipvsadm lines (run it in tests/vm: this kernel has no IPVS).
MODE = os.environ.get("NFT_BENCH_MODE", "nftables")
IPVS = MODE == "ipvs"
INPUTS = os.path.join(B, "out")             # bench/gen's files (read)
OUT = os.environ.get("NFT_BENCH_OUT", INPUTS)  # results (the VM's project tree is read-only)
WORK = os.path.join(OUT, "ipvs" if IPVS else "nft")
BASE = "`ipvsadm-restore`" if IPVS else "`nft -f`"
NLPROXY = os.path.join(TOP, "build", "nlproxy")
STEPS = os.path.join(TOP, "build", "tests", "nlp_steps")
FLAGS = ["--node-ip", "192.168.0.10", "--cluster-cidr", "10.0.0.0/8",
         "--service-cluster-ip-range", "10.96.0.0/12,fd00:96::/108", "--hostname-override", "node-0"]
if IPVS:
    FLAGS += ["--mode", "ipvs"]
SIZES = os.environ.get("NFT_BENCH_SIZES", "1000x2 10000x2 30000x2 5000x50").split()
SEED = int(os.environ.get("NFT_BENCH_SEED", "1"))
ITERS = int(os.environ.get("NFT_BENCH_ITERS", "50"))
REPS_SMALL = int(os.environ.get("NFT_BENCH_REPS_SMALL", "3"))
REPS_LARGE = int(os.environ.get("NFT_BENCH_REPS_LARGE", "1"))
TIMEOUT = float(os.environ.get("NFT_BENCH_TIMEOUT", "900"))
PERF_SIZE = os.environ.get("NFT_BENCH_PERF", "")
FLOOR_ROUNDS = int(os.environ.get("NFT_BENCH_FLOOR_ROUNDS", "21"))
SPLIT_MIB = float(os.environ.get("NFT_BENCH_SPLIT_MIB", "0"))
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)
_namespaces = []   # names we created and have not deleted yet
_children = []     # Popen objects we started and have not reaped yet
_ns_seq = [0]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# --- scratch namespaces ------------------------------------------------------

def ns_add():
    _ns_seq[0] += 1
    name = "nlbs-%d-%d" % (os.getpid(), _ns_seq[0])
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=60)
    _namespaces.append(name)
    # As on any node: IPVS mode's IPv6 VIPs are local routes of lo, which
    # the kernel refuses on a down device.
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, timeout=60)
    return name


def ns_del(name):
    if name in _namespaces:
        subprocess.run(["ip", "netns", "del", name], timeout=120)
        _namespaces.remove(name)


def in_ns(name):
    """preexec_fn: the child enters the namespace before exec (no `ip netns
    exec` in the timed path)."""
    path = "/run/netns/" + name

    def enter():
        fd = os.open(path, os.O_RDONLY)
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            os._exit(100 + (e & 63))
        os.close(fd)
    return enter


def kill_children():
    for p in list(_children):
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        _children.remove(p)


def cleanup_all():
    kill_children()
    for name in list(_namespaces):
        try:
            ns_del(name)
        except Exception as e:  # keep deleting the others
            log("nft_sync: could not delete netns %s: %s" % (name, e))


def on_term(signum, frame):
    raise SystemExit(128 + signum)


# --- helpers -----------------------------------------------------------------

def pct(vals, p):
    """Nearest-rank percentile (p99 of 50 samples is the largest but none)."""
    if not vals:
        return float("nan")
    s = sorted(vals)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def fmt_ms(us, nd=1):
    return "NA" if us is None or us != us else ("%.*f" % (nd, us / 1000.0))


def ratio(a, b):
    return "NA" if a is None or b is None or not b else "%.2f" % (a / b)


def gen_yaml(n, m):
    head = "# nlproxy bench/gen --services %d --endpoints %d --format yaml --seed %d\n" % (n, m, SEED)
    split = int(SPLIT_MIB * 2**20)
    name = "s%dx%d.yaml" % (n, m) if not split else "s%dx%d.split%d" % (n, m, split)
    for d in (INPUTS, OUT):
        path = os.path.join(d, name)
        try:
            # A directory is reused only when bench/gen finished it (the stamp).
            with open(os.path.join(path, "done") if split else path, encoding="utf-8") as f:
                if f.readline() == head:   # deterministic generator: reuse run.sh's file
                    return path
        except OSError:
            pass
    log("== s%dx%d: generating %s" % (n, m, path))
    subprocess.run([os.path.join(B, "gen"), "--services", str(n), "--endpoints", str(m),
                    "--format", "yaml", "--seed", str(SEED)] + (["--split-bytes", str(split)] if split else []) +
                   [path], check=True, timeout=TIMEOUT)
    if split:
        with open(os.path.join(path, "done"), "w", encoding="utf-8") as f:
            f.write(head)
    return path


def yaml_docs(path):
    docs = []
    for p in ([os.path.join(path, x) for x in sorted(os.listdir(path)) if x.endswith(".yaml")]
              if os.path.isdir(path) else [path]):
        with open(p, encoding="utf-8") as f:
            docs += f.read().split("\n---\n")[1:]
    return docs


class Steps:
    """One nlp_steps process in a namespace, one command -> one line."""

    def __init__(self, ns, errpath):
        # stderr (load warnings) to a file: a pipe nobody reads could fill up
        self.errpath = errpath
        with open(errpath, "w") as ef:
            self.p = subprocess.Popen([STEPS] + FLAGS, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=ef, preexec_fn=in_ns(ns), text=True, bufsize=1)
        _children.append(self.p)
        self.buf = ""

    def cmd(self, line, timeout=TIMEOUT):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        deadline = time.monotonic() + timeout
        fd = self.p.stdout.fileno()
        while "\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError("nlp_steps: no answer to %r within %.0f s" % (line, timeout))
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 65536)
                if not chunk:
                    with open(self.errpath) as ef:
                        err = ef.read()
                    raise RuntimeError("nlp_steps exited on %r: %s" % (line, err[-500:]))
                self.buf += chunk.decode()
        ans, self.buf = self.buf.split("\n", 1)
        if not (ans.startswith("ok") or ans.startswith("synced")):
            raise RuntimeError("nlp_steps: %r -> %s" % (line, ans))
        return ans

    SPLIT = ("plan", "encode", "commit", "bytes", "msgs", "user", "sys")

    def sync(self, full=False):
        # "synced kind compute sync cpu plan encode commit bytes msgs user sys"
        a = self.cmd("sync full" if full else "sync").split()
        self.last_cpu = int(a[4]) if len(a) > 4 else 0
        self.last = dict(zip(self.SPLIT, (int(x) for x in a[5:12])))
        return int(a[2]), int(a[3])

    def floor(self):
        """"ok floor_us add_us del_us rounds" -> (floor, add, del)."""
        a = self.cmd("floor %d" % FLOOR_ROUNDS).split()
        return int(a[1]), int(a[2]), int(a[3])

    def hwm_kib(self):
        with open("/proc/%d/status" % self.p.pid) as f:
            for ln in f:
                if ln.startswith("VmHWM:"):
                    return int(ln.split()[1])
        return None

    def close(self):
        try:
            self.p.stdin.close()
            self.p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.kill(self.p.pid, signal.SIGKILL)
            self.p.wait(timeout=30)
        if self.p in _children:
            _children.remove(self.p)


def run_timed(argv, ns, timeout=TIMEOUT, stdin=None):
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=in_ns(ns),
                         stdin=stdin)
    _children.append(p)
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
        _children.remove(p)
        raise RuntimeError("%s: timed out after %.0f s" % (argv[0], timeout))
    t1 = time.monotonic()
    _children.remove(p)
    if p.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(argv[:2]), p.returncode, err.decode()[-500:]))
    return t1 - t0


def tables_in(ns):
    if IPVS:  # a virtual server is there
        r = subprocess.run(["ip", "netns", "exec", ns, "ipvsadm", "-Ln"], capture_output=True, text=True, timeout=120)
        return ["nlproxy"] if any(ln.startswith(("TCP", "UDP")) for ln in r.stdout.splitlines()) else []
    # Not `nft list tables`: nft 1.0.6 fetches its whole cache for it, with
    # one unfiltered rule dump per table (minutes with shard tables at 30k).
    r = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "table", "ip", "nlproxy"], capture_output=True,
                       text=True, timeout=120)
    return ["table ip nlproxy"] if r.returncode == 0 else []


# --- change inputs -------------------------------------------------------------

ADDR_RE = re.compile(r"^endpoints:\n- addresses:\n  - ([0-9.]+)\n  conditions:\n    ready: true\n", re.M)


def change_files(docs, n, tag):
    """ITERS single-slice files, each one existing IPv4 slice (spread over the
    whole cluster, a different one each time) whose first endpoint is ready
    and gets a new address: variant i % 2 gives 10.200.x.y / 10.201.x.y,
    outside bench/gen's 10.0.0.0-10.39.255.255 pods."""
    cands = [i for i, d in enumerate(docs)
             if d.startswith("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n")
             and "\naddressType: IPv4\n" in d and ADDR_RE.search(d)]
    if not cands:
        raise RuntimeError("no IPv4 slice with a ready first endpoint")
    files = []
    for k in range(ITERS):
        d = docs[cands[(k * len(cands)) // ITERS if len(cands) >= ITERS else k % len(cands)]]
        new = "10.%d.%d.%d" % (200 + k % 2, (k >> 8) & 255, k & 255 or 1)
        d2 = ADDR_RE.sub(lambda mo: mo.group(0).replace(mo.group(1), new, 1), d, count=1)
        assert d2 != d
        p = os.path.join(WORK, "%s.change-%02d.yaml" % (tag, k))
        with open(p, "w", encoding="utf-8") as f:
            f.write("---\n" + d2.rstrip("\n") + "\n")
        files.append(p)
    return files


def free_cluster_ips(n, count):
    """Offsets in 10.96.0.0/16 that bench/gen does not give to any of its n
    services (gen: offset (i*7919 + 10) mod 2^20 in 10.96.0.0/12)."""
    used = {(i * 7919 + 10) % (1 << 20) for i in range(n)}
    out = []
    off = 0xFFFE
    while len(out) < count and off > 0:
        if off not in used and (off & 255) not in (0, 255):
            out.append("10.96.%d.%d" % (off >> 8, off & 255))
        off -= 1
    return out


def new_service_files(n, tag):
    ips = free_cluster_ips(n, ITERS)
    files = []
    for k in range(ITERS):
        name = "nlbs-new-%02d" % k
        doc = ("---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {n}\n  namespace: ns-00\n"
               "  labels:\n    app: {n}\nspec:\n  type: ClusterIP\n  selector:\n    app: {n}\n"
               "  clusterIP: {ip}\n  clusterIPs:\n  - {ip}\n  ipFamilies:\n  - IPv4\n"
               "  ipFamilyPolicy: SingleStack\n  ports:\n  - name: http\n    protocol: TCP\n"
               "    port: 80\n    targetPort: 8080\n  sessionAffinity: None\nstatus:\n  loadBalancer: {{}}\n"
               "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {n}-0\n"
               "  namespace: ns-00\n  labels:\n    kubernetes.io/service-name: {n}\n"
               "    endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io\n"
               "addressType: IPv4\nports:\n- name: http\n  protocol: TCP\n  port: 8080\nendpoints:\n"
               ).format(n=name, ip=ips[k])
        for e in range(2):
            doc += ("- addresses:\n  - 10.202.%d.%d\n  conditions:\n    ready: true\n    serving: true\n"
                    "    terminating: false\n  nodeName: node-%d\n  zone: zone-%s\n  targetRef:\n"
                    "    kind: Pod\n    namespace: ns-00\n    name: %s-%d\n") % (k, e + 1, e, "ab"[e], name, e)
        p = os.path.join(WORK, "%s.new-%02d.yaml" % (tag, k))
        with open(p, "w", encoding="utf-8") as f:
            f.write(doc)
        files.append((p, name, ips[k]))
    return files


# --- perf (optional) -------------------------------------------------------------

def perf_start(pid, tag):
    data = os.path.join(OUT, "nft_perf.%s.data" % tag)
    cg = ["--call-graph", "dwarf,16384"] if os.environ.get("NFT_BENCH_PERF_CG") == "dwarf" else ["-g"]
    p = subprocess.Popen(["perf", "record"] + cg + ["-q", "-o", data, "-p", str(pid)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _children.append(p)
    time.sleep(1.0)
    return p, data


def perf_stop(pp):
    p, data = pp
    os.kill(p.pid, signal.SIGINT)
    try:
        p.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
    _children.remove(p)
    r = subprocess.run(["perf", "report", "-i", data, "--no-children", "--stdio", "-g", "none",
                        "--percent-limit", "1.5"], capture_output=True, text=True, timeout=600)
    top = [ln for ln in r.stdout.split("\n") if ln.strip() and not ln.startswith("#")][:25]
    log("== perf (self) top symbols, %s:\n%s" % (data, "\n".join(top)))
    return top


# --- one size ------------------------------------------------------------------------

def bench_size(n, m, raw):
    tag = "s%dx%d" % (n, m)
    reps = REPS_SMALL if (n <= 10000 and m <= 2) else REPS_LARGE
    res = {"tag": tag, "n": n, "m": m, "reps": reps}
    y = gen_yaml(n, m)
    script = os.path.join(WORK, tag + (".ipvsadm" if IPVS else ".nft"))
    out = subprocess.run([NLPROXY, "--manifests", y, "--dry-run", "--output", "ipvsadm" if IPVS else "nft"] + FLAGS,
                         stdout=subprocess.PIPE, check=True, timeout=TIMEOUT, text=True).stdout
    with open(script, "w") as f:
        # IPVS: the virtual servers only, what ipvsadm-restore takes
        f.write(out.split("# nftables companion ruleset")[0] if IPVS else out)
    res["script_mib"] = os.path.getsize(script) / 2**20

    # 1. baseline: nft -f into an empty namespace
    walls = []
    for r in range(reps):
        ns = ns_add()
        try:
            log("== %s: baseline %s (%s) %d/%d" % (tag, BASE, ns, r + 1, reps))
            if IPVS:
                with open(script) as f:
                    walls.append(run_timed(["ipvsadm-restore"], ns, stdin=f))
            else:
                walls.append(run_timed(["nft", "-f", script], ns))
            if not any("nlproxy" in t for t in tables_in(ns)):
                raise RuntimeError("the baseline left nothing programmed")
        finally:
            ns_del(ns)
    res["base_s"] = statistics.median(walls)
    raw.write("RAW %s baseline_s %s\n" % (tag, " ".join("%.4f" % w for w in walls)))

    # 2. cold sync (the last namespace goes on to 3-5)
    cold, loads, cold_split = [], [], []
    for r in range(reps):
        ns = ns_add()
        st = None
        try:
            log("== %s: cold sync (%s) %d/%d" % (tag, ns, r + 1, reps))
            st = Steps(ns, os.path.join(WORK, tag + ".steps.err"))
            t0 = time.monotonic()
            st.cmd("load " + y)
            loads.append(time.monotonic() - t0)
            c, s = st.sync(full=True)
            cold.append((c, s))
            cold_split.append(st.last)
            if not any("nlproxy" in t for t in tables_in(ns)):
                raise RuntimeError("sync full left no nlproxy table")
            res["cold_hwm_kib"] = st.hwm_kib()
            if r < reps - 1:
                st.close()
                st = None
                ns_del(ns)
                continue
            log("== %s: kernel floor (%d rounds)" % (tag, FLOOR_ROUNDS))
            res["floor_us"] = st.floor()
            # The floor's commits are another program's, as the kubelet's or a
            # CNI plugin's are on a node: the next sync finds the ruleset's
            # generation moved and checks its chains (nft_watch_check). Timed
            # here on its own, a no-op sync, so that the change loop measures
            # changes and not that check.
            res["foreign_us"] = sum(st.sync())
            res["foreign_cpu_us"] = st.last_cpu
            res.update(incremental(st, tag, n, y, raw))
            res["hwm_kib"] = st.hwm_kib()     # before stdin is closed
            st.close()
            st = None
        finally:
            if st is not None:
                kill_children()
            ns_del(ns)
    tot = sorted(c + s for c, s in cold)
    mid = min(cold, key=lambda cs: abs((cs[0] + cs[1]) - statistics.median(tot)))
    res["cold_compute_us"], res["cold_sync_us"] = mid
    res["cold_split"] = cold_split[cold.index(mid)]
    res["cold_us"] = statistics.median(tot)
    # Every fresh namespace's cold sync, in order: bench/targets.py pairs rep i
    # of two sizes (the "30k within 3.2 x 10k, shown in three runs").
    res["cold_all_us"] = [c + s for c, s in cold]
    res["load_s"] = statistics.median(loads)
    raw.write("RAW %s cold_compute_sync_us %s load_s %s\n" % (
        tag, " ".join("%d+%d" % cs for cs in cold), " ".join("%.3f" % x for x in loads)))
    raw.write("RAW %s cold_split %s\n" % (tag, json.dumps(cold_split)))
    if "floor_us" in res:
        raw.write("RAW %s floor_us %d add %d del %d\n" % ((tag,) + tuple(res["floor_us"])))
    return res


def incremental(st, tag, n, y, raw):
    res = {}
    docs = yaml_docs(y)
    chg = change_files(docs, n, tag)
    new = new_service_files(n, tag)
    del docs
    pp = perf_start(st.p.pid, tag) if PERF_SIZE in (tag, tag[1:]) else None
    # 3. one endpoint change
    log("== %s: %d endpoint changes" % (tag, ITERS))
    ch, cpu = [], {"chg": [], "add": [], "rem": []}
    split = {"chg": [], "add": [], "rem": []}
    for p in chg:
        st.cmd("apply " + p)
        ch.append(st.sync())
        cpu["chg"].append(st.last_cpu)
        split["chg"].append(st.last)
    if pp:
        res["perf_top"] = perf_stop(pp)
    # 4. one new service, then removed
    log("== %s: %d services added and removed" % (tag, ITERS))
    add, rem = [], []
    for p, name, ip in new:
        st.cmd("apply " + p)
        add.append(st.sync())
        cpu["add"].append(st.last_cpu)
        split["add"].append(st.last)
        st.cmd("delete-service ns-00 " + name)
        st.cmd("delete-slice ns-00 %s-0" % name)
        rem.append(st.sync())
        cpu["rem"].append(st.last_cpu)
        split["rem"].append(st.last)
    # a final no-op partial sync: the floor of a sync with nothing to do
    res["noop"] = st.sync()
    for key, v in (("chg", ch), ("add", add), ("rem", rem)):
        tot = [c + s for c, s in v]
        syn = [s for c, s in v]
        res[key] = {"p50": pct(tot, 50), "p99": pct(tot, 99), "sync_p50": pct(syn, 50),
                    "sync_p99": pct(syn, 99), "compute_p50": pct([c for c, s in v], 50),
                    "max": max(tot), "cpu_p50": pct(cpu[key], 50), "cpu_p99": pct(cpu[key], 99)}
        xs = [x.get("commit", 0) for x in split[key]]
        res[key]["commit_p50"], res[key]["commit_p99"] = pct(xs, 50), pct(xs, 99)
        # Means, not percentiles: the kernel splits a thread's CPU time into
        # user and system by the ticks that landed in each, so one short
        # sync's split is 0 or a whole tick; the mean over many is sound.
        for f in ("user", "sys"):
            res[key][f + "_mean"] = statistics.mean(x.get(f, 0) for x in split[key])
        raw.write("RAW %s %s compute+sync_us %s\n" % (tag, key, " ".join("%d+%d" % cs for cs in v)))
        raw.write("RAW %s %s commit_us %s\n" % (tag, key, " ".join(str(x.get("commit", 0)) for x in split[key])))
    raw.write("RAW %s noop compute+sync_us %d+%d\n" % ((tag,) + res["noop"]))
    return res


# --- report ----------------------------------------------------------------------------

def table(results):
    lines = [
        "| size | script MiB | %s s | cold compute ms | cold sync ms | **cold total s** | **cold ÷ baseline** " % BASE +
        "| change p50 / p99 ms (sync alone) | add svc p50 / p99 ms (sync alone) | remove svc p50 / p99 ms "
        "| no-op sync ms | peak RSS MiB (after cold) | load s | CPU ms change / add / remove p50 (p99) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append("| %d × %d | failed: %s |" % (r["n"], r["m"], r["error"].replace("|", "\\|")))
            continue

        def pq(k):
            d = r.get(k)
            if not d:
                return "NA"
            return "%s / **%s** (%s / %s)" % (fmt_ms(d["p50"], 2), fmt_ms(d["p99"], 2),
                                            fmt_ms(d["sync_p50"], 2), fmt_ms(d["sync_p99"], 2))
        def pc(k):
            d = r.get(k)
            if not d or "cpu_p50" not in d:
                return "NA"
            return "%s (%s)" % (fmt_ms(d["cpu_p50"], 2), fmt_ms(d["cpu_p99"], 2))
        noop = r.get("noop")
        lines.append("| %d × %d | %.1f | %.3f | %s | %s | **%.3f** | **%s** | %s | %s | %s | %s | %s (%s) | %.2f | %s |" % (
            r["n"], r["m"], r["script_mib"], r["base_s"], fmt_ms(r["cold_compute_us"]),
            fmt_ms(r["cold_sync_us"]), r["cold_us"] / 1e6, ratio(r["cold_us"] / 1e6, r["base_s"]),
            pq("chg"), pq("add"), pq("rem"), fmt_ms(sum(noop), 2) if noop else "NA",
            "%.1f" % (r["hwm_kib"] / 1024) if r.get("hwm_kib") else "NA",
            "%.1f" % (r["cold_hwm_kib"] / 1024) if r.get("cold_hwm_kib") else "NA", r["load_s"],
            " / ".join(pc(k) for k in ("chg", "add", "rem"))))
    return lines


def table_kernel(results):
    """The kernel's share: what user space cannot win back."""
    lines = [
        "| size | **kernel floor ms** (add / delete) | cold plan / encode / **commit** ms | cold batch MiB / msgs "
        "| change commit p50 / p99 ms (share of sync p50) | add svc commit p50 / p99 ms | remove svc commit p50 / p99 ms "
        "| user / sys CPU ms, mean change · add · remove (cold) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            continue
        fl = r.get("floor_us")
        cs = r.get("cold_split") or {}

        def cq(k, share=False):
            d = r.get(k)
            if not d or "commit_p50" not in d:
                return "NA"
            out = "%s / **%s**" % (fmt_ms(d["commit_p50"], 2), fmt_ms(d["commit_p99"], 2))
            if share and d.get("sync_p50"):
                out += " (%.0f %%)" % (100.0 * d["commit_p50"] / d["sync_p50"])
            return out

        def us(k):
            d = r.get(k)
            if not d or "user_mean" not in d:
                return "NA"
            return "%s / %s" % (fmt_ms(d["user_mean"], 2), fmt_ms(d["sys_mean"], 2))
        lines.append("| %d × %d | %s | %s | %s | %s | %s | %s | %s |" % (
            r["n"], r["m"],
            "**%s** (%s / %s)" % (fmt_ms(fl[0], 2), fmt_ms(fl[1], 2), fmt_ms(fl[2], 2)) if fl else "NA",
            "%s / %s / **%s**" % (fmt_ms(cs.get("plan")), fmt_ms(cs.get("encode")), fmt_ms(cs.get("commit")))
            if cs else "NA",
            "%.1f / %d" % (cs["bytes"] / 2**20, cs["msgs"]) if cs else "NA",
            cq("chg", True), cq("add"), cq("rem"), " · ".join(us(k) for k in ("chg", "add", "rem")) +
            (" (cold %s / %s)" % (fmt_ms(cs.get("user")), fmt_ms(cs.get("sys"))) if cs else "")))
    return lines


def main():
    global NLPROXY, STEPS
    if os.geteuid() != 0:
        log("nft_sync: needs root (scratch network namespaces); skipped")
        return 0
    for tool in ("nft", "ip"):
        if subprocess.run(["sh", "-c", "command -v " + tool], capture_output=True).returncode:
            log("nft_sync: %s not found; skipped" % tool)
            return 0
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    os.makedirs(WORK, exist_ok=True)
    r = subprocess.run(["make", "-s", "-C", TOP, "build/nlproxy", "build/tests/nlp_steps"],
                       capture_output=True, text=True, timeout=1800)
    build_note = ""
    if r.returncode != 0:
        if not (os.access(STEPS, os.X_OK) and os.access(NLPROXY, os.X_OK)):
            log("nft_sync: build failed and no binaries:\n" + r.stderr[-2000:])
            return 1
        build_note = ("`make build/nlproxy build/tests/nlp_steps` failed (a colleague's file in progress); "
                      "used the existing binaries (nlp_steps of %s)" %
                      time.strftime("%H:%M UTC", time.gmtime(os.path.getmtime(STEPS))))
        log("nft_sync: " + build_note)
    # Snapshot the binaries: colleagues may rebuild build/ while this runs, and
    # every figure of one run should come from the same build.
    snap = []
    for src in (NLPROXY, STEPS):
        dst = os.path.join(WORK, "bin." + os.path.basename(src))
        subprocess.run(["cp", "-f", src, dst], check=True, timeout=60)
        snap.append(dst)
    NLPROXY, STEPS = snap
    git = subprocess.run(["git", "-C", TOP, "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", TOP, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout
    up0 = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results = []
    raw = open(os.path.join(OUT, "ipvs_raw.txt" if IPVS else "nft_raw.txt"), "a")
    raw.write("# %s sizes=%s iters=%d seed=%d split_mib=%s\n" % (date, " ".join(SIZES), ITERS, SEED, SPLIT_MIB))
    try:
        for size in SIZES:
            n, m = (int(x) for x in size.split("x"))
            try:
                res = bench_size(n, m, raw)
            except (RuntimeError, subprocess.SubprocessError, OSError) as e:
                log("nft_sync: %s failed: %s" % (size, e))
                res = {"n": n, "m": m, "error": str(e)[:300]}
            results.append(res)
            raw.write("RESULT %s\n" % json.dumps(res, sort_keys=True))
            if IPVS:
                # tests/vm's tree is read-only and its /tmp is lost: bench/run.sh
                # reads these from the guest's output (bench/targets.py).
                print("RESULT %s" % json.dumps(res, sort_keys=True), flush=True)
            raw.flush()
    finally:
        raw.close()
        cleanup_all()
    up1 = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    rep = ["", "## %s backend, %s" % ("IPVS" if IPVS else "nftables", date), "",
           "Command: `python3 bench/nft_sync.py` (NFT_BENCH_SIZES=\"%s\", %d iterations, seed %d%s); git %s%s."
           % (" ".join(SIZES), ITERS, SEED, ", input split into files of <= %g MiB" % SPLIT_MIB if SPLIT_MIB else "",
              git, " + uncommitted changes to tracked files (%s)" % ", ".join(
               ln[3:] for ln in dirty.splitlines()) if dirty.strip() else ""),
           "Machine: %d CPUs, %s." % (os.cpu_count(), os.uname().release),
           "Load before: `%s`; after: `%s`." % (up0, up1)]
    if build_note:
        rep.append("Note: " + build_note + ".")
    if PERF_SIZE:
        rep.append("Note: `perf record -g` ran on nlp_steps during the change loop of %s (NFT_BENCH_PERF): "
                   "those change figures include its overhead." % PERF_SIZE)
    rep += ["", "Cold = nlp_steps `load` + `sync full` (compute_us + sync_us, median of the fresh namespaces; "
            "`load`, the manifest parse, is not included, shown last). " + ("`ipvsadm-restore` = the dry-run's ipvsadm lines "
            "(without the companion) into an " if IPVS else "`nft -f` = the dry-run script into an ") +
            "empty namespace (process wall). change / add / remove = compute + sync of one partial sync with "
            "N programmed, p50 / p99 of %d (nearest rank); sync alone in brackets. Peak RSS = VmHWM of "
            "nlp_steps at the end of the size's run (parsed model + two tables/plans). CPU = the same partial "
            "syncs as thread CPU time (user + system, the kernel's commit included), which a busy machine "
            "inflates far less than wall time." % ITERS, ""]
    rep += table(results)
    rep += ["", "Kernel share: floor = nlp_steps `floor` after the cold sync, median commit (sendmsg to the "
            "kernel's final ack) of %d one-element add and %d delete batches in a scratch table beside the "
            "ruleset (nf_tables_commit visits every chain of every table: no change can commit faster); cold "
            "plan / encode / commit = the cold sync's split (plan includes the read-back); commit p50 / p99 = "
            "the same partial syncs as above, their batch's commit alone; CPU = getrusage(RUSAGE_THREAD) of "
            "the sync (compute included), user and system (mostly the kernel's commit) apart, means (the kernel "
            "splits by ticks: one short sync's split is 0 or a tick)."
            % (FLOOR_ROUNDS, FLOOR_ROUNDS), ""]
    rep += table_kernel(results)
    print("\n".join(rep))
    # For bench/plot.gp: services, cold sync s, baseline s (2 endpoints per
    # service only, the sizes the plot compares). Printed too, so that a run
    # inside tests/vm (read-only tree) can hand them to bench/run.sh.
    plot = ["%d %.4f %.4f" % (r["n"], r["cold_us"] / 1e6, r["base_s"]) for r in results
            if "error" not in r and r["m"] == 2]
    with open(os.path.join(OUT, "ipvs_plot.dat" if IPVS else "nft_plot.dat"), "w") as f:
        f.write("# services cold_s baseline_s\n" + "".join(ln + "\n" for ln in plot))
    for ln in plot:
        print("PLOTDATA " + ln)
    with open(os.path.join(OUT, "ipvs_results.md" if IPVS else "nft_results.md"), "a") as f:
        f.write("\n".join(rep) + "\n")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        cleanup_all()
        sys.exit(130)
    finally:
        cleanup_all()
