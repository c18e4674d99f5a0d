#!/usr/bin/env python3
"""The IPVS backend on a real IPVS kernel (run inside tests/vm, which boots
one): real TCP connections through a ClusterIP and a NodePort.

1. `nlproxy --dry-run --output ipvsadm` loaded with ipvsadm-restore into a
   fresh namespace equals `ipvsadm-save -n` of the node after a real sync.
2. Graceful termination: a long-lived connection keeps working while its
   endpoint is removed (the real server gets weight 0, new connections go
   elsewhere), and the real server is deleted once the connection is gone.
3. Restart: stopping nlproxy leaves the virtual servers (an established
   connection keeps working), and a new nlproxy keeps them and the
   connection; the virtual server is never absent in between. Periodic
   syncs are partial (the metrics), and a virtual server someone else
   deletes (ipvsadm -D) or edits (ipvsadm -E) is back at the next one.
0. VIPs: local routes of table local (proto 95) on kube-ipvs0, not its
   addresses; addresses an older nlproxy or kube-proxy left there go. The
   node reaches a ClusterIP, a pod does, a hostNetwork socket binds one and
   it answers ping.
4. Load balancer IPs: not on kube-ipvs0 but local routes of table 95 that
   the fwmark rule consults; connections to them work, and a changed LB IP
   moves the route (partial sync).
5. --cleanup removes the virtual servers, kube-ipvs0, the routes and the
   rules (IPv6 VIP routes, on lo, too).
6. kube-proxy's IPVS settings, in a namespace of their own: scheduler flags
   (the dry-run still equals the real sync), --ipvs-strict-arp, the three
   timeouts, and --ipvs-exclude-cidrs (a foreign virtual server there
   survives a sync, one elsewhere does not).

Only namespaces this script creates are touched; every wait is bounded;
only processes it started are stopped, by PID."""
import os
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NLPROXY = os.path.join(ROOT, "build", "nlproxy")
PID = os.getpid()
NS = {k: f"nlipvs{PID}-{k}" for k in ("node", "client", "e1", "e2", "fresh", "opts", "fresh2")}
CIP, NODE_IP, NODEPORT = "10.96.0.10", "192.168.0.2", 30080
LB1, LB2, LB6, LB_TABLE = "203.0.113.10", "203.0.113.20", "2001:db8:5::10", "95"
EPS = {"e1": "10.2.0.2", "e2": "10.3.0.2"}
FLAGS = ["--hostname-override", "node-a", "--node-ip", NODE_IP, "--cluster-cidr", "10.244.0.0/16",
         "--service-cluster-ip-range", "10.96.0.0/12", "--mode", "ipvs"]
passed = failed = 0
procs = []


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {name}", flush=True)
    else:
        failed += 1
        print(f"FAIL {name} {detail}", flush=True)


def sh(*args, check_rc=True, timeout=30):
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check_rc and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def nsx(ns, *args, **kw):
    return sh("ip", "netns", "exec", NS[ns], *args, **kw)


def spawn(ns, *args, **kw):
    p = subprocess.Popen(["ip", "netns", "exec", NS[ns]] + list(args), **kw)
    procs.append(p)
    return p


def wait_for(what, fn, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.2)
    return None


def manifest(path, eps, lb=LB1):
    """A LoadBalancer service (ClusterIP, NodePort, LB IP) with the given
    endpoint addresses."""
    items = [f"""apiVersion: v1
kind: Service
metadata: {{name: web, namespace: demo}}
spec:
  type: LoadBalancer
  clusterIP: {CIP}
  clusterIPs: [{CIP}]
  ports: [{{name: http, port: 80, targetPort: 8080, nodePort: {NODEPORT}, protocol: TCP}}]
status:
  loadBalancer:
    ingress: [{{ip: {lb}}}]
""", """apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: demo
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
""" + "".join(f"- addresses: [{a}]\n  nodeName: node-a\n  conditions: {{ready: true}}\n" for a in eps)]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("---\n".join(items))
    os.rename(tmp, path)  # the daemon sees one complete file


SERVER = r"""
import socket, sys, threading
name = sys.argv[1]
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(64)
def serve(c):
    with c:
        while True:
            try:
                d = c.recv(100)
            except ConnectionResetError:  # the test resets a connection on purpose
                return
            if not d:
                return
            c.sendall(name.encode() + b"\n")
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

CLIENT = r"""
import socket, struct, sys
conn = None
def ask(c):
    c.settimeout(3); c.sendall(b"?\n"); return c.recv(100).decode().strip() or "EOF"
for line in sys.stdin:
    cmd = line.split()
    try:
        if cmd[0] == "open":
            conn = socket.create_connection((cmd[1], int(cmd[2])), timeout=3); out = ask(conn)
        elif cmd[0] == "ping":
            out = ask(conn)
        elif cmd[0] == "new":
            with socket.create_connection((cmd[1], int(cmd[2])), timeout=3) as c:
                out = ask(c)
        elif cmd[0] == "reset":
            # RST instead of FIN: IPVS forgets a reset connection in seconds
            # (a closed one lingers in TIME_WAIT for two minutes)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close(); conn = None; out = "closed"
    except Exception as e:
        out = "ERR " + type(e).__name__
    print(out, flush=True)
"""


class Client:
    def __init__(self):
        self.p = spawn("client", "python3", "-c", CLIENT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def cmd(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()


def vs_lines():
    """ipvsadm -Ln of the node: {virtual server: {real server: weight}}."""
    out = nsx("node", "ipvsadm", "-Ln", check_rc=False)
    vs, cur = {}, None
    for ln in out.splitlines():
        f = ln.split()
        if f and f[0] in ("TCP", "UDP", "SCTP"):
            cur = f[1]
            vs[cur] = {}
        elif f and f[0] == "->" and cur and f[1][0].isdigit():
            vs[cur][f[1]] = int(f[3])
    return vs


def metric(name):
    out = nsx("node", "curl", "-s", "--max-time", "5", "http://127.0.0.1:10249/metrics", check_rc=False)
    for ln in out.splitlines():
        if ln.startswith(name + " "):
            return float(ln.split()[1])
    return None


def kube_ipvs0():
    out = nsx("node", "ip", "-o", "addr", "show", "dev", "kube-ipvs0", check_rc=False)
    return [f.split()[3].split("/")[0] for f in out.splitlines() if len(f.split()) > 3]


def vip_routes(ns="node", fam="-4"):
    """The VIPs' local routes: {address: device}."""
    out = nsx(ns, "ip", fam, "route", "show", "table", "local", "proto", "95", check_rc=False)
    return {f.split()[1]: f.split()[f.split().index("dev") + 1] for f in out.splitlines()
            if f.startswith("local ") and "dev" in f.split()}


PING = r"""
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); s.settimeout(3)
p = struct.pack("!BBHHH", 8, 0, 0, 77, 1) + b"nl"
c = sum(struct.unpack("!5H", p)); c = (c >> 16) + (c & 0xffff); c = ~(c + (c >> 16)) & 0xffff
s.sendto(p[:2] + struct.pack("!H", c) + p[4:], (sys.argv[1], 0))
for _ in range(5):
    d, a = s.recvfrom(200)
    if a[0] == sys.argv[1] and d[20] == 0:
        print("reply"); break
"""

# bind() and listen() on a VIP, as a hostNetwork pod may; a connection to
# that port is the companion's (cluster-ips-check rejects it, as
# kube-proxy's KUBE-IPVS-FILTER does).
BIND = r"""
import socket, sys
for port in (80, 9999):
    s = socket.socket(); s.bind((sys.argv[1], port)); s.listen(1); s.close()
print("bound")
"""

NODE_CONNECT = r"""
import socket, sys
with socket.create_connection((sys.argv[1], 80), timeout=3) as c:
    c.settimeout(3); c.sendall(b"?\n"); print(c.recv(100).decode().strip())
"""


def lb_routes():
    out = nsx("node", "ip", "route", "show", "table", LB_TABLE, check_rc=False)
    return sorted(f.split()[1] for f in out.splitlines() if f.startswith("local "))


def topology():
    for ns in NS.values():
        sh("ip", "netns", "add", ns)
    links = [("client", "10.1.0.2", "10.1.0.1")] + [(k, v, v.rsplit(".", 1)[0] + ".1") for k, v in EPS.items()]
    node = ["link set lo up", f"addr add {NODE_IP}/32 dev lo"]
    for i, (ns, ip, gw) in enumerate(links):
        node += [f"link add n{i} type veth peer name eth0 netns {NS[ns]}", f"link set n{i} up",
                 f"addr add {gw}/24 dev n{i}"]
    sh("ip", "netns", "exec", NS["node"], "sysctl", "-qw", "net.ipv4.ip_forward=1")
    for c in node:
        nsx("node", "ip", *c.split())
    for ns, ip, gw in links:
        for c in ("link set lo up", "link set eth0 up", f"addr add {ip}/24 dev eth0", f"route add default via {gw}"):
            nsx(ns, "ip", *c.split())
    # IPVS refuses a real server whose address has no route type
    # (EINVAL), which is all of them in a namespace without tables yet.
    for ns in ("fresh", "fresh2"):
        sh("ip", "netns", "exec", NS[ns], "ip", "link", "set", "lo", "up")


def start_daemon(path):
    return spawn("node", NLPROXY, *FLAGS, "--manifests", path, "--sync-period", "3s", "--min-sync-period", "0s",
                 stdout=subprocess.DEVNULL, stderr=open(os.path.join(TMP, "daemon.log"), "a"))


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=15)


def main():
    global TMP
    if os.geteuid() != 0:
        print("SKIP ipvs_live: needs root")
        return 1 if os.environ.get("CI") == "true" else 0
    if not os.path.exists("/proc/net/ip_vs"):
        sh("modprobe", "ip_vs", check_rc=False)
    if not os.path.exists("/proc/net/ip_vs"):
        print("ipvs_live: this kernel has no IPVS (run it in tests/vm/run)")
        return 1
    TMP = tempfile.mkdtemp(prefix="nlproxy-ipvs.")
    path = os.path.join(TMP, "objs.yaml")
    try:
        topology()
        for k in EPS:
            spawn(k, "python3", "-c", SERVER, k)
        # What an older nlproxy or kube-proxy leaves: the VIPs as addresses
        # of kube-ipvs0, one of them stale.
        nsx("node", "ip", "link", "add", "kube-ipvs0", "type", "dummy")
        for a in (CIP, "10.96.99.99"):
            nsx("node", "ip", "addr", "add", f"{a}/32", "dev", "kube-ipvs0")
        manifest(path, list(EPS.values()))
        d = start_daemon(path)
        want = {f"{CIP}:80": 2, f"{NODE_IP}:{NODEPORT}": 2, f"{LB1}:80": 2}
        ok = wait_for("sync", lambda: all(len(vs_lines().get(k, {})) == n for k, n in want.items()))
        check("daemon programs the ClusterIP, NodePort and LB virtual servers", ok, vs_lines())
        if not ok:
            return 1

        # 0. VIPs as local routes.
        check("the ClusterIP is a local route of table local on kube-ipvs0, proto 95",
              vip_routes() == {CIP: "kube-ipvs0"}, vip_routes())
        check("kube-ipvs0 keeps no address (an older proxy's are removed)", kube_ipvs0() == [], kube_ipvs0())
        local = nsx("node", "ip", "route", "show", "table", "local", check_rc=False)
        check("the stale address's local route is gone", "10.96.99.99" not in local, local)
        out = nsx("node", "python3", "-c", NODE_CONNECT, CIP, check_rc=False).strip()
        check("a TCP connection from the node to the ClusterIP", out in EPS, out)
        r = subprocess.run(["ip", "netns", "exec", NS["node"], "python3", "-c", BIND, CIP], capture_output=True,
                           text=True, timeout=30)
        check("a hostNetwork socket binds the ClusterIP", r.stdout.strip() == "bound", r.stderr)
        out = nsx("client", "python3", "-c", PING, CIP, check_rc=False).strip()
        check("the ClusterIP answers ping from a pod", out == "reply", out)

        # 1. ipvsadm-restore of the dry-run equals the real sync.
        dry = sh(NLPROXY, *FLAGS, "--manifests", path, "--dry-run", "--output", "ipvsadm")
        restore = dry.split("# nftables companion ruleset")[0]
        subprocess.run(["ip", "netns", "exec", NS["fresh"], "ipvsadm-restore"], input=restore, text=True,
                       check=True, timeout=30)
        a = sorted(nsx("node", "ipvsadm-save", "-n").splitlines())
        b = sorted(nsx("fresh", "ipvsadm-save", "-n").splitlines())
        check("ipvsadm-restore of the dry-run equals ipvsadm-save -n after a real sync", a == b and a,
              f"\n  node:  {a}\n  dry:   {b}")

        # 2. Graceful termination.
        cl = Client()
        first = cl.cmd(f"open {CIP} 80")
        check("a long-lived connection from a pod through the ClusterIP", first in EPS, first)
        if first not in EPS:
            return 1
        other = "e2" if first == "e1" else "e1"
        manifest(path, [EPS[other]])
        gone = f"{EPS[first]}:8080"
        ok = wait_for("weight 0", lambda: vs_lines().get(f"{CIP}:80", {}).get(gone) == 0)
        check("the removed endpoint's real server gets weight 0, not deleted", ok, vs_lines())
        check("the established connection keeps working", cl.cmd("ping") == first)
        news = [cl.cmd(f"new {CIP} 80") for _ in range(6)]
        check("new connections go to the remaining endpoint", news == [other] * 6, news)
        time.sleep(4)  # a full sync (--sync-period 3s) while the connection lives
        check("the real server stays while its connection lives", gone in vs_lines().get(f"{CIP}:80", {}),
              vs_lines())
        check("the connection still works after a full sync", cl.cmd("ping") == first)
        cl.cmd("reset")
        ok = wait_for("deleted", lambda: gone not in vs_lines().get(f"{CIP}:80", {"x": 0}), timeout=40)
        check("the real server is deleted once its connection is gone", ok, vs_lines())

        # 3. Restart.
        live = cl.cmd(f"open {CIP} 80")
        before = vs_lines()
        stop(d)
        check("nlproxy exits on SIGTERM", d.returncode == 0, d.returncode)
        check("its virtual servers stay after it exits", vs_lines() == before, vs_lines())
        check("the connection survives the exit", cl.cmd("ping") == live)
        d = start_daemon(path)
        seen = []
        end = time.monotonic() + 5
        while time.monotonic() < end:  # the first seconds of the new process
            seen.append(vs_lines() == before)
            time.sleep(0.1)
        check("the virtual servers are never absent while nlproxy starts", all(seen), seen.count(False))
        check("the connection survives the restart", cl.cmd("ping") == live)
        check("new connections after the restart", cl.cmd(f"new {CIP} 80") == other)
        check("NodePort after the restart", cl.cmd(f"new {NODE_IP} {NODEPORT}") == other)

        # 3b. Periodic syncs (--sync-period 3s) are partial; the virtual
        # servers are checked by each, and a full sync repairs them.
        full_n = "kubeproxy_sync_full_proxy_rules_duration_seconds_count"
        part_n = "kubeproxy_sync_partial_proxy_rules_duration_seconds_count"
        full0, part0 = metric(full_n), metric(part_n) or 0
        time.sleep(7)
        full1, part1 = metric(full_n), metric(part_n) or 0
        check("periodic syncs are partial", full0 is not None and full0 == full1 and part1 >= part0 + 2,
              (full0, full1, part0, part1))
        nsx("node", "ipvsadm", "-D", "-t", f"{CIP}:80")
        ok = wait_for("repaired", lambda: vs_lines().get(f"{CIP}:80") == before[f"{CIP}:80"], timeout=20)
        check("a virtual server deleted by someone else is back at the next periodic sync",
              ok and (metric(full_n) or 0) > full1, (vs_lines(), metric(full_n), full1))
        nsx("node", "ipvsadm", "-E", "-t", f"{CIP}:80", "-s", "wlc")
        ok = wait_for("repaired", lambda: " wlc" not in nsx("node", "ipvsadm", "-Ln", check_rc=False), timeout=20)
        check("a virtual server edited by someone else is set back", ok, nsx("node", "ipvsadm", "-Ln"))
        check("new connections after the repairs", cl.cmd(f"new {CIP} 80") == other)

        # 4. Load balancer IPs.
        check("the LB IP is not a VIP route of kube-ipvs0", vip_routes() == {CIP: "kube-ipvs0"}, vip_routes())
        check(f"the LB IP is a local route of table {LB_TABLE}", lb_routes() == [LB1], lb_routes())
        rules = nsx("node", "ip", "rule", "show")
        check(f"the fwmark rule routes marked packets to table {LB_TABLE}",
              f"fwmark 0x2000/0x2000 lookup {LB_TABLE}" in rules, rules)
        check("a connection to the LB IP", cl.cmd(f"new {LB1} 80") == other)
        manifest(path, [EPS[other]], lb=LB2)
        ok = wait_for("LB moved", lambda: lb_routes() == [LB2] and f"{LB2}:80" in vs_lines())
        check("a changed LB IP moves its route and virtual server", ok and f"{LB1}:80" not in vs_lines(),
              (lb_routes(), vs_lines()))
        check("a connection to the new LB IP", cl.cmd(f"new {LB2} 80") == other)
        stop(d)

        # 5. Cleanup.
        r = subprocess.run(["ip", "netns", "exec", NS["node"], NLPROXY, *FLAGS, "--cleanup"], capture_output=True,
                           text=True, timeout=60)
        check("--cleanup succeeds", r.returncode == 0, r.stderr)
        check("--cleanup removes the virtual servers and kube-ipvs0", not vs_lines() and
              "kube-ipvs0" not in nsx("node", "ip", "link", "show"), vs_lines())
        rules = nsx("node", "ip", "rule", "show")
        check("--cleanup removes the LB routes and the fwmark rule", not lb_routes() and f"lookup {LB_TABLE}" not in rules,
              (lb_routes(), rules))
        check("--cleanup removes the VIP routes", not vip_routes(), vip_routes())

        # 6. IPVS settings.
        opts = ["--ipvs-scheduler", "sh", "--ipvs-scheduler-flags", "sh-fallback,sh-port", "--ipvs-strict-arp",
                "--ipvs-tcp-timeout", "1h", "--ipvs-tcpfin-timeout", "2m", "--ipvs-udp-timeout", "45s",
                "--ipvs-exclude-cidrs", "198.51.100.0/24"]
        nsx("opts", "ip", "link", "set", "lo", "up")
        nsx("opts", "ip", "addr", "add", f"{NODE_IP}/32", "dev", "lo")
        nsx("opts", "ipvsadm", "-A", "-t", "198.51.100.1:80", "-s", "rr")
        nsx("opts", "ipvsadm", "-A", "-t", "198.18.0.1:80", "-s", "rr")
        # Plus an IPv6 LoadBalancer service: the routes and rule of that family.
        path6 = os.path.join(TMP, "v6.yaml")
        with open(path6, "w") as f:
            f.write(f"""apiVersion: v1
kind: Service
metadata: {{name: web6, namespace: demo}}
spec:
  type: LoadBalancer
  clusterIP: fd00:96::10
  clusterIPs: [fd00:96::10]
  ipFamilies: [IPv6]
  ports: [{{name: http, port: 80, targetPort: 8080, nodePort: 30081, protocol: TCP}}]
status:
  loadBalancer:
    ingress: [{{ip: "{LB6}"}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web6-1
  namespace: demo
  labels: {{kubernetes.io/service-name: web6}}
addressType: IPv6
ports: [{{name: http, port: 8080, protocol: TCP}}]
endpoints:
- addresses: [fd00:244::2]
  nodeName: node-a
  conditions: {{ready: true}}
""")
        r = subprocess.run(["ip", "netns", "exec", NS["opts"], NLPROXY, *FLAGS, *opts, "--manifests", path,
                            "--manifests", path6, "--once"], capture_output=True, text=True, timeout=60)
        check("nlproxy --once with the IPVS settings", r.returncode == 0, r.stderr)
        saved = nsx("opts", "ipvsadm-save", "-n").splitlines()
        check("a foreign virtual server in --ipvs-exclude-cidrs survives, one elsewhere does not",
              "-A -t 198.51.100.1:80 -s rr" in saved and not any("198.18.0.1" in ln for ln in saved), saved)
        routes6 = nsx("opts", "ip", "-6", "route", "show", "table", LB_TABLE)
        rules6 = nsx("opts", "ip", "-6", "rule", "show")
        check("IPv6: the LB IP is a local route of table 95, with the fwmark rule",
              f"local {LB6} dev lo" in routes6 and f"fwmark 0x2000/0x2000 lookup {LB_TABLE}" in rules6,
              (routes6, rules6))
        dry = sh(NLPROXY, *FLAGS, *opts, "--manifests", path, "--manifests", path6, "--dry-run", "--output", "ipvsadm")
        subprocess.run(["ip", "netns", "exec", NS["fresh2"], "ipvsadm-restore"],
                       input=dry.split("# nftables companion ruleset")[0], text=True, check=True, timeout=30)
        a = sorted(ln for ln in saved if "198.51.100.1" not in ln)
        b = sorted(nsx("fresh2", "ipvsadm-save", "-n").splitlines())
        check("scheduler flags: the dry-run equals ipvsadm-save -n", a == b and any("-b sh-fallback,sh-port" in ln
                                                                                   for ln in a) and
              any(f"[{LB6}]:80" in ln for ln in a), f"\n  {a}\n  {b}")
        arp = [nsx("opts", "sysctl", "-n", f"net.ipv4.conf.all.{k}").strip() for k in ("arp_ignore", "arp_announce")]
        check("--ipvs-strict-arp sets arp_ignore=1 and arp_announce=2", arp == ["1", "2"], arp)
        tmo = nsx("opts", "ipvsadm", "-Ln", "--timeout").strip()
        check("the IPVS timeouts are set", tmo.endswith("3600 120 45"), tmo)
        # IPv6 refuses a local route on a down device: lo holds that family's.
        v6 = vip_routes("opts", "-6")
        check("IPv6: the ClusterIP is a local route of table local on lo, proto 95",
              v6.get("fd00:96::10") == "lo" and LB6 not in v6, v6)
        r = subprocess.run(["ip", "netns", "exec", NS["opts"], NLPROXY, *FLAGS, *opts, "--cleanup"],
                           capture_output=True, text=True, timeout=60)
        check("--cleanup removes the IPv6 VIP routes", r.returncode == 0 and not vip_routes("opts", "-6")
              and not vip_routes("opts"), (r.stderr, vip_routes("opts", "-6")))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        for ns in NS.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["rm", "-rf", TMP])
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
