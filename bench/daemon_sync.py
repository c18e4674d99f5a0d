#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The daemon's sync after a change that touches little (issue 11): the
whole build/nlproxy with the nftables backend, not a benchmark driver.

  sudo python3 bench/daemon_sync.py      # (run.sh calls it when root)

For each size "SERVICESxENDPOINTS" (env DAEMON_BENCH_SIZES, default
"1000x2 10000x2 30000x2"), on bench/gen's cluster (seed DAEMON_BENCH_SEED,
default 1), in a scratch network namespace per run:

 1. manifests: `nlproxy --manifests DIR` where DIR holds the generated YAML
    stream beside a small file (one Service, one EndpointSlice of two
    endpoints). After the first sync, ITERS times the small file is replaced
    (written aside, renamed over, as an editor or kubelet does) with its
    first endpoint changed: inotify, reload of the directory, one partial
    sync. Measured: the sync's time from the daemon's own log line
    ("partial sync of N service ports in X s ... endpoints changed for 1");
    and, for information, the wall time from the rename to that line, which
    includes the debounce (200 ms) and the parse of the whole directory.
 2. API server: tests/fakeapi.py in the same namespace serves the same
    cluster (its JSON List, loaded with POST /load), `nlproxy --kubeconfig`
    lists and watches it; ITERS times this node's Node gets a status update
    (a new condition heartbeat, as the kubelet sends every few seconds).
    Measured: the partial sync it causes, from the daemon's metrics
    (kubeproxy_sync_partial_proxy_rules_duration_seconds: _sum and _count
    before and after).

Env DAEMON_BENCH_BASELINE=PATH: an nlproxy binary to measure the same way in
the same run (bench/run.sh builds one from BENCH_DAEMON_BASELINE_REF);
figures are then given as before / after and their ratio.
DAEMON_BENCH_ITERS (default 10), DAEMON_BENCH_BASE_ITERS (default 3: the
baseline may take seconds per change), DAEMON_BENCH_TIMEOUT (seconds per
wait, default 300).

Everything runs in namespaces "nlbd-<pid>-<k>" created and deleted here (also
on failure, Ctrl-C and SIGTERM); processes are started and killed by PID.
Appends a markdown table to bench/out/daemon_results.md (raw figures in
bench/out/daemon_raw.txt) and prints it.
"""
import ctypes
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
B = os.path.join(TOP, "bench")
OUT = os.path.join(B, "out")
NLPROXY = os.environ.get("NLPROXY", os.path.join(TOP, "build", "nlproxy"))
BASELINE = os.environ.get("DAEMON_BENCH_BASELINE", "")
SIZES = os.environ.get("DAEMON_BENCH_SIZES", "1000x2 10000x2 30000x2").split()
SEED = int(os.environ.get("DAEMON_BENCH_SEED", "1"))
ITERS = int(os.environ.get("DAEMON_BENCH_ITERS", "10"))
BASE_ITERS = int(os.environ.get("DAEMON_BENCH_BASE_ITERS", "3"))
TIMEOUT = float(os.environ.get("DAEMON_BENCH_TIMEOUT", "300"))
NODE = "node-0"
FLAGS = ["--node-ip", "192.168.0.10", "--cluster-cidr", "10.0.0.0/8",
         "--service-cluster-ip-range", "10.96.0.0/12,fd00:96::/108", "--hostname-override", NODE,
         "--sync-period", "1h", "--min-sync-period", "0s", "--healthz-bind-address", ""]
CLONE_NEWNET = 0x40000000
SYNC_RE = re.compile(r"(full|partial) sync of (\d+) service ports in ([0-9.]+) s: .*endpoints changed for (\d+)")
# The thread CPU time of each sync (nlproxy -v 2; none from older builds).
CPU_RE = re.compile(r"the sync took ([0-9.]+) s of CPU")

_libc = ctypes.CDLL(None, use_errno=True)
_namespaces = []
_children = []
_seq = [0]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def ns_add():
    _seq[0] += 1
    name = "nlbd-%d-%d" % (os.getpid(), _seq[0])
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=60)
    _namespaces.append(name)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, timeout=60)
    # The node IP, as on a node: the healthCheckNodePort servers of the
    # eTP=Local services listen there (failing ones are retried at each sync).
    subprocess.run(["ip", "-n", name, "addr", "add", "192.168.0.10/32", "dev", "lo"], check=True, timeout=60)
    return name


def ns_del(name):
    if name in _namespaces:
        subprocess.run(["ip", "netns", "del", name], timeout=120)
        _namespaces.remove(name)


class InNetns:
    """This process (single-threaded) in the namespace for a while: its
    sockets to the fake API server and the metrics are then local."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.home = os.open("/proc/self/ns/net", os.O_RDONLY)
        fd = os.open("/run/netns/" + self.name, os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns " + self.name)
        finally:
            os.close(fd)
        return self

    def __exit__(self, *exc):
        _libc.setns(self.home, CLONE_NEWNET)
        os.close(self.home)


def spawn(argv, stdout, stderr):
    p = subprocess.Popen(argv, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
    _children.append(p)
    return p


def stop(p, sig=signal.SIGTERM):
    if p.poll() is None:
        os.kill(p.pid, sig)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=30)
    if p in _children:
        _children.remove(p)


def cleanup_all():
    for p in list(_children):
        stop(p, signal.SIGKILL)
    for name in list(_namespaces):
        try:
            ns_del(name)
        except Exception as e:  # keep deleting the others
            log("daemon_sync: could not delete netns %s: %s" % (name, e))


def on_term(signum, frame):
    raise SystemExit(128 + signum)


def wait_until(fn, what, timeout=TIMEOUT, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(step)
    raise RuntimeError("timed out after %.0f s waiting for %s" % (timeout, what))


def poll(fn, timeout):
    """fn() once true, else its last value after timeout seconds."""
    deadline = time.monotonic() + timeout
    v = fn()
    while not v and time.monotonic() < deadline:
        time.sleep(0.02)
        v = fn()
    return v


def gen(n, m, fmt):
    path = os.path.join(OUT, "s%dx%d.%s" % (n, m, fmt))
    marker = "bench/gen --services %d --endpoints %d --format %s --seed %d" % (n, m, fmt, SEED)
    try:
        with open(path, encoding="utf-8") as f:
            if marker in f.read(400):  # deterministic: reuse run.sh's file
                return path
    except OSError:
        pass
    log("== s%dx%d: generating %s" % (n, m, path))
    subprocess.run([os.path.join(B, "gen"), "--services", str(n), "--endpoints", str(m), "--format", fmt,
                    "--seed", str(SEED), path], check=True, timeout=TIMEOUT)
    return path


def free_cluster_ip(n):
    """A ClusterIP of 10.96.0.0/12 that gen's first n services do not use."""
    used = {(i * 7919 + 10) % (1 << 20) for i in range(n)}
    off = next(o for o in range(1000, 1 << 20) if o not in used)
    return "10.%d.%d.%d" % (96 + (off >> 16), (off >> 8) & 255, off & 255)


def small_manifest(cip, gen_no):
    ep = "10.250.0.%d" % (1 + gen_no % 2)
    return ("apiVersion: v1\nkind: Service\nmetadata: {name: tiny, namespace: bench-small}\n"
            "spec: {clusterIP: %s, ports: [{name: http, port: 80, protocol: TCP}]}\n---\n"
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
            "metadata: {name: tiny-1, namespace: bench-small, labels: {kubernetes.io/service-name: tiny}}\n"
            "addressType: IPv4\nports: [{name: http, port: 8080, protocol: TCP}]\n"
            "endpoints:\n- addresses: [%s]\n  conditions: {ready: true}\n  nodeName: node-1\n"
            "- addresses: [10.250.1.1]\n  conditions: {ready: true}\n  nodeName: node-2\n") % (cip, ep)


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.rename(tmp, path)


def log_syncs(path):
    """(kind, ports, seconds, services with new endpoints, CPU seconds or
    None) of each logged sync, and the CPU seconds of every sync."""
    syncs, cpus, cpu = [], [], None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = CPU_RE.search(line)
                if m:
                    cpu = float(m.group(1))
                    cpus.append(cpu)
                    continue
                m = SYNC_RE.search(line)
                if m:
                    syncs.append(m.groups() + (cpu,))
                    cpu = None
    except OSError:
        pass
    return syncs, cpus


def run_manifests(binary, ns, yaml_path, n, iters, work):
    d = os.path.join(work, "manifests")
    os.makedirs(d, exist_ok=True)
    big = os.path.join(d, "cluster.yaml")
    if not os.path.exists(big):
        os.symlink(yaml_path, big)
    small = os.path.join(d, "small.yaml")
    cip = free_cluster_ip(n)
    write_atomic(small, small_manifest(cip, 0))
    logp = os.path.join(work, "manifests.log")
    with open(logp, "w") as errf:
        with InNetns(ns):
            p = spawn([binary, "--manifests", d, "--metrics-bind-address", "", "-v", "2"] + FLAGS, subprocess.DEVNULL,
                      errf)
    try:
        wait_until(lambda: any(s[0] == "full" for s in log_syncs(logp)[0]), "the first sync (manifests)")
        syncs, walls, cpu = [], [], []
        for k in range(iters):
            before = len(log_syncs(logp)[0])
            t0 = time.monotonic()
            write_atomic(small, small_manifest(cip, k + 1))

            def changed():
                new = [s for s in log_syncs(logp)[0][before:] if s[0] == "partial" and s[3] == "1"]
                return new[0] if new else None
            s = wait_until(changed, "the partial sync of change %d" % (k + 1))
            walls.append(time.monotonic() - t0)
            syncs.append(float(s[2]))
            if s[4] is not None:
                cpu.append(s[4])
            ports = int(s[1])
            # The next change only after this one settled: no coalescing.
            time.sleep(0.3)
        return {"sync": syncs, "wall": walls, "ports": ports, "cpu": cpu}
    finally:
        stop(p)


def metric(port, name):
    """None while the daemon does not answer: it serves /metrics from the
    loop that syncs, so a sync of seconds (the baseline's) delays it."""
    try:
        body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10).read().decode()
    except OSError:
        return None
    for line in body.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == name:
            return float(parts[1])
    return None


def node_obj(k):
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE,
                                                  "topology.kubernetes.io/zone": "zone-a"}},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.168.0.10"},
                                     {"type": "Hostname", "address": NODE}],
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                       "lastHeartbeatTime": "2026-01-01T00:%02d:%02dZ" % (k // 60 % 60, k % 60)}]}}


def ctl(cport, path, body):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (cport, path), data=json.dumps(body).encode(),
                                 method="POST")
    return urllib.request.urlopen(req, timeout=TIMEOUT).read()


def certs(work):
    if os.path.exists(os.path.join(work, "srv.crt")):
        return
    cmds = [["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "1", "-subj", "/CN=ca"],
            ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr",
             "-subj", "/CN=127.0.0.1"],
            ["openssl", "x509", "-req", "-in", "srv.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "srv.crt", "-days", "1", "-extfile", "ext"]]
    with open(os.path.join(work, "ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    for c in cmds:
        subprocess.run(c, cwd=work, check=True, capture_output=True, timeout=120)


def run_api(binary, ns, json_path, iters, work):
    certs(work)
    ports = os.path.join(work, "ports")
    if os.path.exists(ports):
        os.unlink(ports)
    with open(os.path.join(work, "token"), "w") as f:
        f.write("bench\n")
    fk_log = open(os.path.join(work, "fakeapi.log"), "w")
    logp = os.path.join(work, "api.log")
    errf = open(logp, "w")
    fk = p = None
    try:
        with InNetns(ns):
            fk = spawn([sys.executable, os.path.join(TOP, "tests", "fakeapi.py"), "--cert",
                        os.path.join(work, "srv.crt"), "--key", os.path.join(work, "srv.key"), "--token", "bench",
                        "--ports-file", ports, "--bookmark-interval", "60"], subprocess.DEVNULL, fk_log)
            wait_until(lambda: os.path.exists(ports), "the fake API server", timeout=30)
            with open(ports) as f:
                ap, cp = map(int, f.read().split())
            ctl(cp, "/load", {"file": json_path})
            ctl(cp, "/put", {"kind": "nodes", "object": node_obj(0)})
            with open(os.path.join(work, "kubeconfig"), "w") as f:
                f.write("apiVersion: v1\nkind: Config\ncurrent-context: b\n"
                        "contexts: [{name: b, context: {cluster: c, user: u}}]\n"
                        "clusters: [{name: c, cluster: {server: \"https://127.0.0.1:%d\", "
                        "certificate-authority: ca.crt}}]\n"
                        "users: [{name: u, user: {tokenFile: token}}]\n" % ap)
            import socket
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            mp = s.getsockname()[1]
            s.close()
            p = spawn([binary, "--kubeconfig", os.path.join(work, "kubeconfig"), "--metrics-bind-address",
                       "127.0.0.1:%d" % mp, "-v", "2"] + FLAGS, subprocess.DEVNULL, errf)
            cnt = "kubeproxy_sync_partial_proxy_rules_duration_seconds_count"
            sm = "kubeproxy_sync_partial_proxy_rules_duration_seconds_sum"

            def first_sync():
                return (metric(mp, "kubeproxy_sync_full_proxy_rules_duration_seconds_count") or 0) >= 1

            def both():
                c, s_ = metric(mp, cnt), metric(mp, sm)
                return (c, s_) if c is not None and s_ is not None else None
            wait_until(first_sync, "the first sync (API server)", step=0.2)
            time.sleep(1)  # the watches are open
            syncs, walls, cpu = [], [], []
            for k in range(iters):
                c0, s0 = wait_until(both, "the metrics")
                n_cpu = len(log_syncs(logp)[1])
                t0 = time.monotonic()
                ctl(cp, "/put", {"kind": "nodes", "object": node_obj(k + 1)})
                c1, s1 = wait_until(lambda: (lambda v: v if v and v[0] > c0 else None)(both()),
                                    "the sync of Node update %d" % (k + 1))
                walls.append(time.monotonic() - t0)
                syncs.append((s1 - s0) / (c1 - c0))
                # Builds that do not log it: none after a short wait.
                cpus = poll(lambda: log_syncs(logp)[1][n_cpu:], 1.0)
                if cpus:
                    cpu.append(sum(cpus) / len(cpus))
                time.sleep(0.3)
            return {"sync": syncs, "wall": walls, "cpu": cpu}
    finally:
        if p:
            stop(p)
        if fk:
            stop(fk, signal.SIGKILL)
        fk_log.close()
        errf.close()


def ms(v):
    return "%.2f" % (v * 1000) if v == v else "NA"


def p50(v):
    return statistics.median(v) if v else float("nan")


def main():
    if os.geteuid() != 0:
        log("daemon_sync: needs root (network namespaces, nftables)")
        return 1
    for tool in ("ip", "openssl"):
        if subprocess.run(["sh", "-c", "command -v " + tool], capture_output=True).returncode:
            log("daemon_sync: %s not found" % tool)
            return 1
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    os.makedirs(OUT, exist_ok=True)
    res = {}
    raw = open(os.path.join(OUT, "daemon_raw.txt"), "a")
    raw.write("# %s sizes=%s\n" % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), " ".join(SIZES)))
    work_root = tempfile.mkdtemp(prefix="nlproxy-daemon-bench.")
    # Copies: one run measures one build even if someone rebuilds meanwhile.
    bins = []
    for label, path, iters in ([("before", BASELINE, BASE_ITERS)] if BASELINE else []) + [("after", NLPROXY, ITERS)]:
        copy = os.path.join(work_root, "nlproxy-" + label)
        subprocess.run(["cp", path, copy], check=True, timeout=60)
        bins.append((label, copy, iters))
    try:
        for size in SIZES:
            n, m = map(int, size.split("x"))
            y, j = gen(n, m, "yaml"), gen(n, m, "json")
            for label, binary, iters in bins:
                work = os.path.join(work_root, "%s-%s" % (size, label))
                os.makedirs(work, exist_ok=True)
                ns = ns_add()
                try:
                    log("== %s %s: --manifests, %d changes" % (size, label, iters))
                    r1 = run_manifests(binary, ns, y, n, iters, work)
                    log("== %s %s: API server, %d Node updates" % (size, label, iters))
                    r2 = run_api(binary, ns, j, iters, work)
                finally:
                    ns_del(ns)
                res[(size, label)] = (r1, r2)
                raw.write("RAW %s %s manifests sync_s=%s cpu_s=%s wall_s=%s api_node sync_s=%s cpu_s=%s wall_s=%s\n" % (
                    size, label, ",".join("%.6f" % v for v in r1["sync"]), ",".join("%.6f" % v for v in r1["cpu"]),
                    ",".join("%.3f" % v for v in r1["wall"]), ",".join("%.6f" % v for v in r2["sync"]),
                    ",".join("%.6f" % v for v in r2["cpu"]), ",".join("%.3f" % v for v in r2["wall"])))
                raw.flush()
                log("   manifests: sync p50 %s ms (wall %.2f s); Node update: sync p50 %s ms" % (
                    ms(p50(r1["sync"])), p50(r1["wall"]), ms(p50(r2["sync"]))))
    finally:
        raw.close()
        cleanup_all()
        subprocess.run(["rm", "-rf", work_root])
    lines = ["", "## The daemon's sync after one change (issue 11), %s" % time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                       time.gmtime()),
             "",
             "`python3 bench/daemon_sync.py` (sizes \"%s\", %d changes after, %d before; baseline %s)." % (
                 " ".join(SIZES), ITERS, BASE_ITERS, BASELINE or "none"),
             "Sync = the daemon's own figure (log line for --manifests, partial-sync histogram for Node updates),",
             "median; wall = rename of the small file to the sync's log line (debounce 200 ms and the reload",
             "included: since issue 15 a reload parses only the files that changed, before it every file), median.",
             "",
             "CPU = the thread CPU time of the same syncs (nlproxy -v 2 logs it; the baseline does not), median:",
             "the figure to read on a busy machine.",
             "",
             "| size | service ports | path | before sync ms | after sync ms (max) | before ÷ after | after CPU ms |"
             " before wall s | after wall s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for size in SIZES:
        a1, a2 = res[(size, "after")]
        b1, b2 = res.get((size, "before"), ({"sync": []}, {"sync": []}))
        for path, a, b in (("--manifests, one endpoint in a small file", a1, b1),
                           ("Node status update (API server)", a2, b2)):
            rb, ra = p50(b["sync"]), p50(a["sync"])
            lines.append("| %s | %d | %s | %s | %s (%s) | %s | %s | %s | %s |" % (
                size, a1["ports"], path, ms(rb), ms(ra), ms(max(a["sync"])) if a["sync"] else "NA",
                "%.0f" % (rb / ra) if rb == rb and ra > 0 else "NA", ms(p50(a.get("cpu", []))),
                "%.2f" % p50(b["wall"]) if b.get("wall") and path.startswith("--") else "-",
                "%.2f" % p50(a["wall"]) if "wall" in a and path.startswith("--") else "-"))
    if len(SIZES) > 1:
        s0, s1 = SIZES[0], SIZES[-1]
        for i, path in enumerate(("--manifests", "Node update")):
            a0, a1_ = p50(res[(s0, "after")][i]["sync"]), p50(res[(s1, "after")][i]["sync"])
            line = "- %s, after: %s ÷ %s = %.1f × for %.0f × the services" % (
                path, s1, s0, a1_ / a0 if a0 > 0 else float("nan"),
                int(s1.split("x")[0]) / int(s0.split("x")[0]))
            if BASELINE:
                b0, b1_ = p50(res[(s0, "before")][i]["sync"]), p50(res[(s1, "before")][i]["sync"])
                line += "; before: %.1f ×" % (b1_ / b0 if b0 > 0 else float("nan"))
            lines.append(line)
    big = SIZES[-1]
    for i, path in enumerate(("--manifests", "Node update")):
        c = [p50(res[(sz, "after")][i]["cpu"]) * 1000 for sz in SIZES]
        met = all(v == v for v in c) and max(c) < 50
        lines.append("- target, %s: one change costs milliseconds at every size, as the partial syncs of "
                     "bench/nft_sync.py (CPU p50 under 50 ms up to %s): %s ms → %s" % (
                         path, big, " / ".join("%.2f" % v for v in c), "met" if met else "**MISSED**"))
    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(OUT, "daemon_results.md"), "a") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        cleanup_all()
