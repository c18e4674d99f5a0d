#!/usr/bin/env python3
"""Live behaviour of the nftables backend with real traffic, in namespaces
this test creates (never the host's):
  1. UDP: a client that keeps one socket open to a ClusterIP recovers at once
     when its endpoint is replaced (stale conntrack entries are deleted).
  2. Restart: an established TCP connection through a service survives
     nlproxy being run again (atomic full sync), and new connections
     keep succeeding throughout: the rules are never absent.
  3. Session affinity (ClientIP) survives every kind of sync: the daemon on
     --manifests files, eight client addresses connected through the
     service, then periodic syncs, a forced full sync (SIGHUP), a partial
     sync, a restart (daemon and --once), shard count changes (a restart
     with --nftables-shards, and the automatic count as the cluster grows),
     and an endpoint removed (only its affinity set goes). After each step
     the affinity sets still hold every client with less time left than the
     timeout, and new connections go to the same endpoint as before.
  4. The IPVS companion's affinity sets (eTP Local from pods): kept by its
     full syncs (build/tests/nlp_steps in companion mode).
Bounded in time; processes are ended by PID; namespaces removed on exit."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NLPROXY = os.path.join(ROOT, "build/nlproxy")
STEPS = os.path.join(ROOT, "build/tests/nlp_steps")
PID = os.getpid()
NODE, CLIENT, EP1, EP2 = (f"nll{PID}-{n}" for n in ("node", "cli", "ep1", "ep2"))
procs = []
passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    passed += ok
    failed += not ok
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")


def sh(*a):
    subprocess.run(list(a), check=True, capture_output=True)


def nsx(ns, *a):
    sh("ip", "netns", "exec", ns, *a)


SERVER = r"""
import socket, sys, threading
ip, port, ident = sys.argv[1], int(sys.argv[2]), sys.argv[3]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((ip, port))
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind((ip, port)); t.listen(64)
def tcp():
    while True:
        c, _ = t.accept()
        def serve(c):
            with c:
                while True:
                    d = c.recv(100)
                    if not d: return
                    c.sendall(ident.encode())
        threading.Thread(target=serve, args=(c,), daemon=True).start()
threading.Thread(target=tcp, daemon=True).start()
while True:
    d, a = u.recvfrom(100)
    u.sendto(ident.encode(), a)
"""


def topology():
    for ns in (NODE, CLIENT, EP1, EP2):
        sh("ip", "netns", "add", ns)
        nsx(ns, "ip", "link", "set", "lo", "up")
    nsx(NODE, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    for i, (ns, net) in enumerate(((CLIENT, "10.0.0"), (EP1, "10.244.1"), (EP2, "10.244.2"))):
        a, b = f"nlv{PID % 100000}a{i}", f"nlv{PID % 100000}b{i}"
        sh("ip", "link", "add", a, "netns", NODE, "type", "veth", "peer", "name", b, "netns", ns)
        nsx(NODE, "ip", "addr", "add", f"{net}.1/24", "dev", a)
        nsx(NODE, "ip", "link", "set", a, "up")
        nsx(ns, "ip", "addr", "add", f"{net}.2/24", "dev", b)
        nsx(ns, "ip", "link", "set", b, "up")
        nsx(ns, "ip", "route", "add", "default", "via", f"{net}.1")


def wait_listening(ns, ip, port, timeout=10):
    """A server started with Popen is not listening yet: a client's first
    connection could be refused (seen once under load)."""
    end = time.time() + timeout
    while time.time() < end:
        r = subprocess.run(["ip", "netns", "exec", ns, "ss", "-Hltn", f"src {ip}:{port}"],
                           capture_output=True, text=True, timeout=10)
        if r.stdout.strip():
            return True
        time.sleep(0.05)
    check(f"the server {ip}:{port} in {ns} listens within {timeout} s", False)
    return False


def start_server(ns, ip, ident):
    p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, ip, "5353", ident])
    procs.append(p)
    wait_listening(ns, ip, 5353)
    return p


def manifests(path, ep_ip):
    items = [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dns", "namespace": "live"},
         "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                                                        {"name": "tcp", "port": 53, "protocol": "TCP"}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "dns-1", "namespace": "live", "labels": {"kubernetes.io/service-name": "dns"}},
         "addressType": "IPv4",
         "ports": [{"name": "dns", "port": 5353, "protocol": "UDP"}, {"name": "tcp", "port": 5353, "protocol": "TCP"}],
         "endpoints": [{"addresses": [ep_ip], "nodeName": "node"}]},
    ]
    with open(path, "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List", "items": items}, f)


def nlproxy(path):
    r = subprocess.run(["ip", "netns", "exec", NODE, NLPROXY, "--mode", "nftables", "--once", "--manifests", path,
                        "--hostname-override", "node", "--node-ip", "10.0.0.1", "--cluster-cidr", "10.0.0.0/8",
                        "--service-cluster-ip-range", "10.96.0.0/12"], capture_output=True, text=True, timeout=30)
    return r.returncode, r.stderr


CLIENT_UDP = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("10.0.0.2", 40053)); s.connect(("10.96.0.10", 53))
s.settimeout(0.1)
end = time.time() + float(sys.argv[1])
while time.time() < end:
    try:
        s.send(b"q"); d = s.recv(100); print(f"{time.time():.3f} {d.decode()}", flush=True)
    except OSError as e:
        print(f"{time.time():.3f} - {type(e).__name__}", flush=True)
    time.sleep(0.05)
"""


def test_udp(tmp):
    m = os.path.join(tmp, "m.json")
    manifests(m, "10.244.1.2")
    rc, err = nlproxy(m)
    check("nlproxy --once programs the node", rc == 0, err.strip()[-200:])
    ep1 = start_server(EP1, "10.244.1.2", "ep1")
    start_server(EP2, "10.244.2.2", "ep2")
    time.sleep(0.5)
    cli = subprocess.Popen(["ip", "netns", "exec", CLIENT, sys.executable, "-c", CLIENT_UDP, "4"],
                           stdout=subprocess.PIPE, text=True)
    procs.append(cli)
    time.sleep(1.0)
    # The endpoint pod dies and is replaced by one at another address.
    ep1.send_signal(signal.SIGKILL)
    manifests(m, "10.244.2.2")
    rc, err = nlproxy(m)
    t_sync = time.time()
    out, _ = cli.communicate(timeout=20)
    lines = [l.split(" ", 1) for l in out.splitlines()]
    before = [w for t, w in lines if float(t) < t_sync - 0.2]
    after = [w for t, w in lines if float(t) > t_sync + 0.3]
    check("UDP client reached the first endpoint", "ep1" in before, f"{before[:5]}")
    check("UDP client recovers at once after the endpoint is replaced",
          rc == 0 and after and all(w == "ep2" for w in after), f"after: {after[:8]} {err.strip()[-200:]}")


CLIENT_TCP = r"""
import socket, sys, time
s = socket.create_connection(("10.96.0.10", 53), timeout=2)
end = time.time() + float(sys.argv[1]); n = bad = 0
while time.time() < end:
    try:
        s.sendall(b"x"); d = s.recv(100); n += 1
        if not d: bad += 1; break
    except OSError:
        bad += 1; break
    time.sleep(0.02)
print(n, bad, flush=True)
"""

PROBE = r"""
import socket, sys, time
end = time.time() + float(sys.argv[1]); n = bad = 0
while time.time() < end:
    try:
        with socket.create_connection(("10.96.0.10", 53), timeout=1) as s:
            s.sendall(b"x"); d = s.recv(100)
            n += 1; bad += not d
    except OSError:
        bad += 1
print(n, bad, flush=True)
"""


def test_restart(tmp):
    m = os.path.join(tmp, "m.json")
    manifests(m, "10.244.2.2")
    nlproxy(m)
    held = subprocess.Popen(["ip", "netns", "exec", CLIENT, sys.executable, "-c", CLIENT_TCP, "4"],
                            stdout=subprocess.PIPE, text=True)
    probe = subprocess.Popen(["ip", "netns", "exec", CLIENT, sys.executable, "-c", PROBE, "4"],
                             stdout=subprocess.PIPE, text=True)
    procs.extend([held, probe])
    time.sleep(0.5)
    rcs = []
    end = time.time() + 3
    while time.time() < end and len(rcs) < 20:
        rcs.append(nlproxy(m)[0])
    h = held.communicate(timeout=20)[0].split()
    p = probe.communicate(timeout=20)[0].split()
    check(f"{len(rcs)} restarts of nlproxy succeed", rcs and all(r == 0 for r in rcs), str(rcs))
    check("an established TCP connection survives the restarts", h and int(h[0]) > 50 and h[1] == "0", str(h))
    check("new connections never fail during the restarts", p and int(p[0]) > 20 and p[1] == "0", str(p))


# ---- session affinity across syncs ----

AFF_TIMEOUT = 600
AFF_PORT = 7070
CLIENTS = [f"10.0.0.{10 + i}" for i in range(8)]
NODE_FLAGS = ["--mode", "nftables", "--hostname-override", "node", "--node-ip", "10.0.0.1", "--cluster-cidr",
              "10.0.0.0/8", "--service-cluster-ip-range", "10.96.0.0/12"]

CONNECT_ALL = r"""
import socket, sys
for src in sys.argv[1:]:
    try:
        s = socket.socket(); s.settimeout(2); s.bind((src, 0)); s.connect(("10.96.0.20", 80))
        s.sendall(b"x"); print(src, s.recv(100).decode(), flush=True); s.close()
    except OSError as e:
        print(src, "-", flush=True)
"""


def aff_manifests(d, eps):
    items = [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "sticky", "namespace": "live"},
         "spec": {"clusterIP": "10.96.0.20", "sessionAffinity": "ClientIP",
                  "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": AFF_TIMEOUT}},
                  "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": AFF_PORT}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "sticky-1", "namespace": "live", "labels": {"kubernetes.io/service-name": "sticky"}},
         "addressType": "IPv4", "ports": [{"name": "http", "port": AFF_PORT, "protocol": "TCP"}],
         "endpoints": [{"addresses": [a], "nodeName": "node", "conditions": {"ready": True}} for a in eps]},
    ]
    write_json(os.path.join(d, "sticky.json"), items)


def write_json(path, items):
    # Whole files appear at once: inotify sees the rename.
    with open(path + ".tmp", "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List", "items": items}, f)
    os.rename(path + ".tmp", path)


def big_manifests(path, n):
    """n ClusterIP services with one endpoint each: enough weight for the
    automatic shard count to leave 0 (docs/nftables-ruleset.md)."""
    items = []
    for i in range(n):
        name = f"bulk-{i}"
        items.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "bulk"},
                      "spec": {"clusterIP": f"10.100.{i // 250}.{i % 250 + 1}",
                               "ports": [{"name": "p", "port": 80, "protocol": "TCP"}]}})
        items.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                      "metadata": {"name": name, "namespace": "bulk", "labels": {"kubernetes.io/service-name": name}},
                      "addressType": "IPv4", "ports": [{"name": "p", "port": 80, "protocol": "TCP"}],
                      "endpoints": [{"addresses": [f"10.250.{i // 250}.{i % 250 + 1}"], "nodeName": "other"}]})
    write_json(path, items)


class Daemon:
    """nlproxy as users run it: the daemon on --manifests, its log read by a thread."""

    def __init__(self, mdir, extra=()):
        self.lines = []
        self.p = subprocess.Popen(["ip", "netns", "exec", NODE, NLPROXY, *NODE_FLAGS, "--manifests", mdir,
                                   "--sync-period", "2s", "--min-sync-period", "200ms", *extra],
                                  stderr=subprocess.PIPE, text=True)
        procs.append(self.p)
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.p.stderr:
            self.lines.append(line.rstrip())

    def mark(self):
        return len(self.lines)

    def wait(self, pattern, since, timeout=30):
        end = time.time() + timeout
        while time.time() < end:
            for line in self.lines[since:]:
                if re.search(pattern, line):
                    return line
            time.sleep(0.05)
        return None

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(timeout=5)
        self.t.join(timeout=5)


def connect_all():
    r = subprocess.run(["ip", "netns", "exec", CLIENT, sys.executable, "-c", CONNECT_ALL, *CLIENTS],
                       capture_output=True, text=True, timeout=60)
    return dict(l.split(" ", 1) for l in r.stdout.splitlines() if " " in l)


def affinity_sets():
    """{set name: (table, {client address: seconds left})} in the node."""
    out = subprocess.run(["ip", "netns", "exec", NODE, "nft", "-j", "list", "sets", "ip"], capture_output=True,
                         text=True, timeout=60).stdout
    sets = {}
    for o in json.loads(out)["nftables"] if out else []:
        st = o.get("set")
        if not st or not st["name"].startswith("affinity-") or st["family"] != "ip":
            continue
        elems = {}
        for e in st.get("elem", []):
            if isinstance(e, dict) and "elem" in e:
                elems[e["elem"]["val"]] = e["elem"].get("expires", AFF_TIMEOUT)
        sets[st["name"]] = (st["table"], elems)
    return sets


def set_of(sets, ep):
    for name, v in sets.items():
        if name.endswith(f"__{ep}/{AFF_PORT}"):
            return name, v
    return None, None


def check_sticky(step, stuck, eps):
    """Each client is in the affinity set of the endpoint it was stuck to,
    with less time left than the timeout (the element survived: a new one
    would have it all), and a new connection goes to that endpoint."""
    sets = affinity_sets()
    bad = []
    for src, ep in stuck.items():
        if ep not in eps:
            continue
        name, v = set_of(sets, ep)
        left = v[1].get(src) if v else None
        if left is None or not 0 < left < AFF_TIMEOUT - 1:
            bad.append(f"{src}->{ep}: {left}")
    check(f"affinity kept: {step}", not bad and all(set_of(sets, e)[0] for e in eps), f"{bad} {sorted(sets)}")
    now = connect_all()
    moved = {s: (stuck[s], now.get(s)) for s in stuck if stuck[s] in eps and now.get(s) != stuck[s]}
    check(f"connections stick: {step}", not moved, str(moved))
    return sets


def metric(name):
    r = subprocess.run(["ip", "netns", "exec", NODE, "curl", "-s", "--max-time", "5", "http://127.0.0.1:10249/metrics"],
                       capture_output=True, text=True, timeout=30)
    m = re.search(rf"^{name} (\S+)$", r.stdout, re.M)
    return float(m.group(1)) if m else None


def full_sync(d, timeout=60):
    """SIGHUP (the configuration re-read) forces a full sync: wait for the
    full-sync counter to move (a full sync that changes nothing logs at
    debug level only)."""
    name = "kubeproxy_sync_full_proxy_rules_duration_seconds_count"
    before = metric(name) or 0
    d.p.send_signal(signal.SIGHUP)
    end = time.time() + timeout
    while time.time() < end:
        n = metric(name)
        if n and n > before:
            return True
        time.sleep(0.2)
    return False


def once(mdir, *extra):
    r = subprocess.run(["ip", "netns", "exec", NODE, NLPROXY, *NODE_FLAGS, "--once", "--manifests", mdir, *extra],
                       capture_output=True, text=True, timeout=120)
    return r.returncode, r.stderr


def test_affinity(tmp):
    mdir = os.path.join(tmp, "aff")
    os.mkdir(mdir)
    eps = ["10.244.1.2", "10.244.2.2"]
    for ns, ip in zip((EP1, EP2), eps):
        p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, ip, str(AFF_PORT), ip])
        procs.append(p)
        wait_listening(ns, ip, AFF_PORT)
    b0 = f"nlv{PID % 100000}b0"
    for c in CLIENTS:
        nsx(CLIENT, "ip", "addr", "add", f"{c}/24", "dev", b0)
    aff_manifests(mdir, eps)
    d = Daemon(mdir)
    ok = d.wait(r"full sync of", 0) is not None
    check("the daemon's first sync (full)", ok, "\n".join(d.lines[-5:]))
    if not ok:
        d.stop()
        return
    time.sleep(0.3)
    stuck = connect_all()
    check("eight clients reach the service", len(stuck) == 8 and all(v in eps for v in stuck.values()), str(stuck))
    stuck = {s: e for s, e in stuck.items() if e in eps}
    time.sleep(1.5)

    # Periodic syncs: partial, nothing to change.
    full0 = metric("kubeproxy_sync_full_proxy_rules_duration_seconds_count")
    time.sleep(4.5)
    check_sticky("periodic syncs", stuck, eps)
    full1 = metric("kubeproxy_sync_full_proxy_rules_duration_seconds_count")
    part1 = metric("kubeproxy_sync_partial_proxy_rules_duration_seconds_count")
    check("periodic syncs are partial", full0 == full1 == 1 and part1 and part1 >= 2, f"full {full0}->{full1} partial {part1}")

    # A forced full sync: SIGHUP re-reads the configuration.
    check("SIGHUP: a full sync", full_sync(d), "\n".join(d.lines[-3:]))
    time.sleep(1)
    check_sticky("forced full sync", stuck, eps)

    # A partial sync with a change: another service appears.
    m = d.mark()
    write_json(os.path.join(mdir, "other.json"), [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "other", "namespace": "live"},
         "spec": {"clusterIP": "10.96.0.21", "ports": [{"name": "p", "port": 80, "protocol": "TCP"}]}}])
    check("a new service: a partial sync", d.wait(r"partial sync of .* 1 added", m) is not None,
          "\n".join(d.lines[-3:]))
    time.sleep(1)
    check_sticky("partial sync", stuck, eps)

    # The cluster grows: the automatic shard count leaves 0 at the next full
    # sync, and the affinity sets move to a shard table with their elements.
    m = d.mark()
    big_manifests(os.path.join(mdir, "big.json"), 3300)
    check("3300 services more: a partial sync", d.wait(r"partial sync of 3302 ", m, timeout=60) is not None,
          "\n".join(d.lines[-3:]))
    check("and a full one", full_sync(d))
    time.sleep(1)
    sets = check_sticky("automatic shard count grows", stuck, eps)
    check("the affinity sets moved to a shard table",
          all(t.startswith("nlproxy-svc-") for t, _ in sets.values()), str({k: v[0] for k, v in sets.items()}))
    m = d.mark()
    os.unlink(os.path.join(mdir, "big.json"))
    check("3300 services fewer: a partial sync", d.wait(r"partial sync of 2 ", m, timeout=60) is not None,
          "\n".join(d.lines[-3:]))
    check("and a full one", full_sync(d))
    time.sleep(1)
    sets = check_sticky("automatic shard count back to 0", stuck, eps)
    check("the affinity sets back in the main table", all(t == "nlproxy" for t, _ in sets.values()),
          str({k: v[0] for k, v in sets.items()}))

    # Restarts: the daemon, then --once runs, one with another shard count.
    d.stop()
    d = Daemon(mdir)
    check("restarted daemon synced", d.wait(r"full sync of", 0) is not None, "\n".join(d.lines[-3:]))
    time.sleep(1)
    check_sticky("daemon restart", stuck, eps)
    d.stop()
    time.sleep(1)
    rc, err = once(mdir, "--nftables-shards", "4")
    check("--once --nftables-shards 4", rc == 0, err[-300:])
    sets = check_sticky("restart with 4 shards", stuck, eps)
    check("4 shards: sets in a shard table", all(t.startswith("nlproxy-svc-") for t, _ in sets.values()), str(sets))
    time.sleep(1)
    rc, err = once(mdir)
    check("--once, automatic shards", rc == 0, err[-300:])
    check_sticky("restart with no shards", stuck, eps)

    # An endpoint removed: its set goes, the other keeps its clients.
    d = Daemon(mdir)
    d.wait(r"full sync of", 0)
    time.sleep(1)
    counts = {e: sum(1 for v in stuck.values() if v == e) for e in eps}
    gone = min(eps, key=lambda e: counts[e])
    kept = [e for e in eps if e != gone]
    m = d.mark()
    aff_manifests(mdir, kept)
    check("endpoint removed: a partial sync", d.wait(r"partial sync of .*endpoints changed for 1", m) is not None,
          "\n".join(d.lines[-3:]))
    time.sleep(1)
    sets = affinity_sets()
    check("the removed endpoint's affinity set is gone", set_of(sets, gone)[0] is None, str(sorted(sets)))
    check_sticky("endpoint removed", {s: e for s, e in stuck.items() if e in kept}, kept)
    d.stop()


COMPANION_MANIFEST = {"apiVersion": "v1", "kind": "List", "items": [
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb", "namespace": "live"},
     "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.30", "externalTrafficPolicy": "Local",
              "sessionAffinity": "ClientIP", "ports": [{"name": "p", "port": 80, "protocol": "TCP", "nodePort": 30080}]},
     "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.50"}]}}},
    {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
     "metadata": {"name": "lb-1", "namespace": "live", "labels": {"kubernetes.io/service-name": "lb"}},
     "addressType": "IPv4", "ports": [{"name": "p", "port": 80, "protocol": "TCP"}],
     "endpoints": [{"addresses": ["10.244.1.2"], "nodeName": "node", "conditions": {"ready": True}},
                   {"addresses": ["10.244.2.2"], "nodeName": "other", "conditions": {"ready": True}}]}]}


def test_companion_affinity(tmp):
    """The IPVS companion DNATs pods and the node to an eTP Local service's
    external addresses itself, with affinity sets: its full syncs keep them."""
    ns = f"nll{PID}-comp"
    path = os.path.join(tmp, "comp.json")
    with open(path, "w") as f:
        json.dump(COMPANION_MANIFEST, f)
    sh("ip", "netns", "add", ns)
    try:
        env = dict(os.environ, NLP_STEPS_COMPANION="1")
        st = subprocess.Popen(["ip", "netns", "exec", ns, STEPS, *NODE_FLAGS], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
        procs.append(st)

        def cmd(line):
            st.stdin.write(line + "\n")
            st.stdin.flush()
            return st.stdout.readline().strip()

        cmd("load " + path)
        out = cmd("sync full")
        listing = json.loads(subprocess.run(["ip", "netns", "exec", ns, "nft", "-j", "list", "sets", "ip"],
                                            capture_output=True, text=True).stdout)["nftables"]
        names = [o["set"]["name"] for o in listing if "set" in o and o["set"]["name"].startswith("affinity-")]
        check("companion: affinity sets programmed", out.startswith("synced") and len(names) == 2, f"{out} {names}")
        for n in names:
            sh("ip", "netns", "exec", ns, "nft", "add", "element", "ip", "nlproxy", n, "{ 10.1.2.3 expires 300s }")
        time.sleep(1.2)
        out = cmd("sync full")
        out2 = cmd("sync")
        listing = json.loads(subprocess.run(["ip", "netns", "exec", ns, "nft", "-j", "list", "sets", "ip"],
                                            capture_output=True, text=True).stdout)["nftables"]
        left = {o["set"]["name"]: [e["elem"].get("expires") for e in o["set"].get("elem", []) if isinstance(e, dict)]
                for o in listing if "set" in o and o["set"]["name"].startswith("affinity-")}
        check("companion: a full sync keeps the affinity elements",
              out.startswith("synced full") and out2.startswith("synced partial") and len(left) == 2 and
              all(len(v) == 1 and v[0] is not None and 0 < v[0] < 300 for v in left.values()), f"{out} {out2} {left}")
        st.stdin.close()
        st.wait(timeout=30)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def main():
    if os.geteuid() != 0:
        print("SKIP nft_live: needs root for network namespaces")
        if os.environ.get("CI") == "true":
            print("0 passed, 1 failed")
            return 1
        return 0
    tmp = tempfile.mkdtemp(prefix="nlproxy-live.")
    try:
        topology()
        test_udp(tmp)
        test_restart(tmp)
        test_affinity(tmp)
        test_companion_affinity(tmp)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=5)
        for ns in (NODE, CLIENT, EP1, EP2):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["rm", "-rf", tmp])
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
