#!/usr/bin/env python3
"""Partial syncs: after every step of a sequence of changes, the kernel
ruleset programmed incrementally by the nftables backend must equal the
dry-run of the same state (loaded with nft -f in a second scratch namespace).
Before every sync another agent commits to a table of its own, so every
partial sync runs the backend's cheap check of our tables (the ruleset
generation moved): the sync must stay partial (the check's expectations,
kept up to date by each partial sync, match the kernel). Also checks that a
partial sync after a change from outside (a foreign rule added to our
table) repairs it with a full sync, and that a failed transaction keeps the
old rules. Runs only in network namespaces it creates; never touches the
host."""
import copy
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = os.path.join(ROOT, "build/tests/nlp_steps")
FLAGS = ["--hostname-override", "node-0", "--node-ip", "192.168.0.2", "--cluster-cidr", "10.0.0.0/8",
         "--service-cluster-ip-range", "10.96.0.0/12", "--nodeport-addresses", "192.168.0.0/24"]
passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def sh(*args, **kw):
    return subprocess.run(list(args), check=True, capture_output=True, text=True, **kw).stdout


def listing(ns):
    """nft -j list of every table in the namespace (ours: the main tables and
    any shard tables), per "family table", normalised: no handles, objects
    sorted by kind and name, set elements sorted; rule order inside a chain
    kept."""
    doc = json.loads(sh("ip", "netns", "exec", ns, "nft", "-j", "list", "ruleset"))
    tables = {}
    for o in doc["nftables"]:
        (kind, body), = o.items()
        if kind == "metainfo":
            continue
        body = dict(body)
        body.pop("handle", None)
        if "elem" in body:
            body["elem"] = sorted(json.dumps(e, sort_keys=True) for e in body["elem"])
        key = f"{body['family']} {body['name'] if kind == 'table' else body['table']}"
        tables.setdefault(key, []).append((kind, body.get("chain", body.get("name", "")),
                                           json.dumps(body, sort_keys=True)))
    # Rules keep their order within a chain (stable sort on kind, chain).
    return {k: sorted(v, key=lambda x: (x[0], x[1])) for k, v in tables.items()}


def masq_elems(ns):
    """The kernel's external-masq and nodeport-masq elements (main IPv4
    table), as "addr . proto . port" and "proto . port" strings."""
    out = set()
    for name in ("external-masq", "nodeport-masq"):
        doc = json.loads(sh("ip", "netns", "exec", ns, "nft", "-j", "list", "set", "ip", "nlproxy", name))
        for o in doc["nftables"]:
            for e in o.get("set", {}).get("elem", []):
                out.add(" . ".join(str(x) for x in e["concat"]))
    return out


class Steps:
    def __init__(self, ns):
        self.p = subprocess.Popen(["ip", "netns", "exec", ns, STEPS] + FLAGS, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)

    def cmd(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=30)


def svc(name, ip, ports, typ="ClusterIP", **spec):
    s = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "steps"},
         "spec": {"type": typ, "clusterIP": ip, "clusterIPs": [ip], "ports": ports}}
    s["spec"].update(spec)
    return s


def eps(name, service, addrs, port=8080, pname="http"):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": "steps", "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "ports": [{"name": pname, "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [a], "nodeName": n, "conditions": {"ready": True}} for a, n in addrs]}


def main():
    # --shards N: the same steps with the service dispatch in N shard tables.
    # --companion: the IPVS backend's nftables companion ruleset instead.
    if len(sys.argv) == 3 and sys.argv[1] == "--shards":
        FLAGS.append(f"--nftables-shards={int(sys.argv[2])}")
    if sys.argv[1:] == ["--companion"]:
        os.environ["NLP_STEPS_COMPANION"] = "1"
    if os.geteuid() != 0:
        print("SKIP nft_incremental: needs root for scratch network namespaces")
        if os.environ.get("CI") == "true":
            print("0 passed, 1 failed")
            return 1
        return 0
    if not os.access(STEPS, os.X_OK):
        print(f"nft_incremental: {STEPS} missing (make build/tests/nlp_steps)")
        return 1
    pid = os.getpid()
    ns_k, ns_d = f"nlinc-k-{pid}", f"nlinc-d-{pid}"
    tmp = tempfile.mkdtemp(prefix="nlproxy-incr.")
    sh("ip", "netns", "add", ns_k)
    sh("ip", "netns", "add", ns_d)
    sh("ip", "netns", "exec", ns_k, "nft", "add", "table", "ip", "bystander")
    st = None
    try:
        st = Steps(ns_k)
        http = [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]
        state = {}

        def write(objs):
            path = os.path.join(tmp, "objs.json")
            with open(path, "w") as f:
                json.dump({"apiVersion": "v1", "kind": "List", "items": objs}, f)
            return path

        bystander = [0]

        def step(name, objs=None, delete=None, full=False, expect="partial"):
            # Another agent's commit, in its own table.
            bystander[0] += 1
            sh("ip", "netns", "exec", ns_k, "nft", "add", "chain", "ip", "bystander", f"c{bystander[0]}")
            if objs:
                for o in objs:
                    state[(o["kind"], o["metadata"]["name"])] = o
                st.cmd("apply " + write(objs))
            for kind, n in delete or []:
                state.pop((kind, n), None)
                st.cmd(f"delete-{'service' if kind == 'Service' else 'slice'} steps {n}")
            out = st.cmd("sync full" if full else "sync")
            dump = os.path.join(tmp, "dry.nft")
            st.cmd("dump " + dump)
            sh("ip", "netns", "exec", ns_d, "nft", "-f", dump)
            a, b = listing(ns_k), listing(ns_d)
            a.pop("ip bystander", None)
            kind = out.split(" ")[1] if out.startswith("synced") else out
            check(f"{name} ({kind})", out.startswith("synced") and a == b and kind == ("full" if full else expect),
                  "" if a == b else diff(a, b))
            return out

        step("empty start", full=True)
        shards = int(FLAGS[-1].split("=")[1]) if FLAGS[-1].startswith("--nftables-shards=") else 0
        check(f"{2 + 2 * shards} tables programmed", len(listing(ns_k)) == 3 + 2 * shards, sorted(listing(ns_k)))
        step("add ClusterIP service without endpoints", [svc("a", "10.96.0.10", http)])
        step("add its endpoints", [eps("a-1", "a", [("10.244.0.5", "node-0"), ("10.244.1.5", "node-1")])])
        step("add a second endpoint slice", [eps("a-2", "a", [("10.244.2.5", "node-2")])])
        step("add NodePort service", [svc("b", "10.96.0.11", [dict(http[0], nodePort=30080)], "NodePort"),
                                      eps("b-1", "b", [("10.244.0.6", "node-0")])])
        step("externalTrafficPolicy Local", [svc("b", "10.96.0.11", [dict(http[0], nodePort=30080)], "NodePort",
                                                 externalTrafficPolicy="Local")])
        # Its only endpoint moves to another node: pods and the node are still
        # short-circuited (ext- chain without its goto to local-, which goes),
        # the rest is dropped (no-endpoint-nodeports); and back.
        step("eTP Local, no local endpoint left", [eps("b-1", "b", [("10.244.1.6", "node-1")])])
        step("eTP Local, a local endpoint again", [eps("b-1", "b", [("10.244.0.6", "node-0")])])
        step("LoadBalancer with source ranges",
             [dict(svc("c", "10.96.0.12", [dict(http[0], nodePort=30081)], "LoadBalancer",
                       loadBalancerSourceRanges=["203.0.113.0/25"]),
                   status={"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}]}}),
              eps("c-1", "c", [("10.244.3.7", "node-3")])])
        # externalTrafficPolicy Cluster: no ext- chain, the external tuples
        # are marked for masquerade through two sets, which partial syncs
        # keep up to date as external addresses and NodePorts come and go.
        lb = dict(svc("c", "10.96.0.12", [dict(http[0], nodePort=30081)], "LoadBalancer",
                      loadBalancerSourceRanges=["203.0.113.0/25"]),
                  status={"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}]}})
        m = masq_elems(ns_k)
        check("LB IP and NodePort in the masquerade sets", {"198.51.100.7 . tcp . 80", "tcp . 30081"} <= m, m)
        step("externalIP added", [dict(lb, spec=dict(lb["spec"], externalIPs=["192.0.2.50"]))])
        m = masq_elems(ns_k)
        check("externalIP in external-masq", "192.0.2.50 . tcp . 80" in m, m)
        step("externalIP removed", [lb])
        m = masq_elems(ns_k)
        check("externalIP out of external-masq", "192.0.2.50 . tcp . 80" not in m and "tcp . 30081" in m, m)
        step("session affinity on", [svc("a", "10.96.0.10", http, sessionAffinity="ClientIP")])
        step("endpoint replaced", [eps("a-1", "a", [("10.244.0.9", "node-0"), ("10.244.1.5", "node-1")])])
        step("session affinity off", [svc("a", "10.96.0.10", http)])
        step("remove a slice", delete=[("EndpointSlice", "a-2")])
        step("all endpoints gone (REJECT)", delete=[("EndpointSlice", "a-1")])
        step("remove the LoadBalancer", delete=[("Service", "c"), ("EndpointSlice", "c-1")])
        step("NodePort service back to eTP Cluster", [svc("b", "10.96.0.11", [dict(http[0], nodePort=30080)],
                                                          "NodePort")])
        m = masq_elems(ns_k)
        check("NodePort in nodeport-masq", "tcp . 30080" in m, m)
        step("its NodePort removed (ClusterIP)", [svc("b", "10.96.0.11", http)])
        m = masq_elems(ns_k)
        check("NodePort out of nodeport-masq", "tcp . 30080" not in m, m)
        step("NodePort again", [svc("b", "10.96.0.11", [dict(http[0], nodePort=30080)], "NodePort")])
        step("remove the NodePort service", delete=[("Service", "b")])
        m = masq_elems(ns_k)
        check("removed service out of nodeport-masq", "tcp . 30080" not in m, m)
        step("periodic full sync", full=True)

        # Endpoint maps (docs/nftables-ruleset.md, "Endpoint selection"): a
        # change of endpoint count moves the service between epmap-<n> maps
        # (ep-<n> chains created with their first element and deleted with
        # their last, in every table they are in), a change that keeps the
        # count replaces its map elements and nothing else. A NodePort
        # service has its npmap-<n> too.
        def kep(addrs, port=8080):
            return eps("k-1", "k", [(f"10.244.7.{i}", "node-1") for i in addrs], port)

        step("endpoint maps: service with 2 endpoints",
             [svc("k", "10.96.0.30", [dict(http[0], nodePort=30090)], "NodePort"), kep([1, 2])])
        step("endpoint maps: 2 -> 3 endpoints", [kep([1, 2, 3])])
        step("endpoint maps: 3 -> 1 endpoint", [kep([3])])
        step("endpoint maps: 1 -> 0 endpoints (REJECT)", [kep([])])
        step("endpoint maps: 0 -> 2 endpoints", [kep([4, 5])])
        f = step("endpoint maps: same count, other endpoint", [kep([4, 6])]).split()
        v = [int(x) for x in f[2:]] if len(f) == 12 else []
        # One element out and in for each map, and the hairpin set's
        # address; the IPVS companion has no endpoint maps (IPVS DNATs).
        companion = os.environ.get("NLP_STEPS_COMPANION") == "1"
        check("same count, other endpoint: elements only (epmap, npmap, hairpin)",
              len(v) == 10 and v[7] == (2 if companion else 6), f)
        f = step("endpoint maps: same count, other ports", [kep([4, 6], 8081)]).split()
        v = [int(x) for x in f[2:]] if len(f) == 12 else []
        check("same count, other ports: the two maps' elements only",
              len(v) == 10 and v[7] == (0 if companion else 4), f)
        step("endpoint maps: service removed", delete=[("Service", "k"), ("EndpointSlice", "k-1")])

        # The sync's cost split (bench/nft_sync.py's columns): "synced kind
        # compute sync cpu plan encode commit bytes msgs user sys".
        f = step("instrumented sync", [eps("a-1", "a", [("10.244.0.7", "node-0")])]).split()
        v = [int(x) for x in f[2:]] if len(f) == 12 else []
        check("sync reports plan, encode, commit, batch and CPU split",
              len(v) == 10 and v[5] > 0 and v[6] > 0 and v[7] > 0 and v[3] + v[4] + v[5] == v[1], f)
        v = [int(x) for x in st.cmd("sync").split()[2:]]
        check("a sync with nothing to do sends no batch", len(v) == 10 and v[5] == v[6] == v[7] == 0, v)
        # The kernel's per-commit floor, measured beside our tables in a
        # table of its own that it removes again.
        before = listing(ns_k)
        f = st.cmd("floor 3").split()
        check("floor: medians of one-element commits",
              len(f) == 5 and f[0] == "ok" and all(x.isdigit() for x in f[1:]) and int(f[1]) > 0 and f[4] == "3", f)
        check("floor leaves the ruleset as it was", listing(ns_k) == before)

        # Random changes: endpoints shared between services (the hairpin set
        # counts them), clashing externalIPs and NodePorts, deletions.
        import random
        rnd = random.Random(7)
        for k in range(30):
            objs, dels = [], []
            for _ in range(rnd.randint(1, 3)):
                i = rnd.randrange(8)
                what = rnd.randrange(6)
                if what < 2:
                    typ = rnd.choice(["ClusterIP", "NodePort"])
                    port = dict(http[0], nodePort=30100 + rnd.randrange(3)) if typ == "NodePort" else http[0]
                    extra = {"externalIPs": [f"192.0.2.{rnd.randrange(3) + 1}"]} if rnd.randrange(2) else {}
                    if rnd.randrange(4) == 0:
                        extra["sessionAffinity"] = "ClientIP"
                    objs.append(svc(f"r{i}", f"10.96.1.{i + 1}", [port], typ, **extra))
                elif what < 5:
                    addrs = [(f"10.244.9.{rnd.randrange(4) + 1}", rnd.choice(["node-0", "node-1"]))
                             for _ in range(rnd.randrange(3))]
                    objs.append(eps(f"r{i}-1", f"r{i}", addrs))
                else:
                    dels.append(rnd.choice([("Service", f"r{i}"), ("EndpointSlice", f"r{i}-1")]))
            step(f"random step {k + 1}", objs, dels)

        # Hundreds of services at once (issue 11): the hairpin set's counts
        # for hundreds of endpoint addresses, each shared by several services,
        # changed by one partial sync; then a new zone for the node, which
        # changes every service whose endpoints carry topology hints (a
        # partial sync since the zone is no table-wide setting).
        pool = [f"10.245.{k // 200}.{k % 200 + 1}" for k in range(400)]

        def bulk(gen, first=0, count=300):
            objs = []
            for i in range(first, first + count):
                objs.append(svc(f"m{i}", f"10.96.{2 + i // 250}.{i % 250 + 1}", http))
                e = eps(f"m{i}-1", f"m{i}", [(pool[(i * 7 + gen * 13 + k) % 400], "node-0" if k == 0 else "node-1")
                                             for k in range(3)])
                for k, ep in enumerate(e["endpoints"]):
                    ep["hints"] = {"forZones": [{"name": "z1" if (i + k) % 2 else "z2"}]}
                objs.append(e)
            return objs

        def node(zone):
            return {"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": "node-0", "labels": {"topology.kubernetes.io/zone": zone}},
                    "status": {"addresses": [{"type": "InternalIP", "address": "192.168.0.2"}]}}

        step("300 services, 900 endpoints on 400 shared addresses", bulk(0))
        step("every endpoint of the 300 moved at once", bulk(1))
        step("the node in zone z1: hinted endpoints only", [node("z1")])
        step("zone z2: every hinted service changes", [node("z2")])
        step("half of them removed", delete=[(k, f"m{i}{'-1' if k == 'EndpointSlice' else ''}")
                                             for i in range(150) for k in ("Service", "EndpointSlice")])

        # A change from outside our process: partial sync must notice and repair.
        chain = "ipvs-masquerade" if os.environ.get("NLP_STEPS_COMPANION") == "1" else "services"
        sh("ip", "netns", "exec", ns_k, "nft", "add", "rule", "ip", "nlproxy", chain, "counter")
        step("outside change repaired", [svc("d", "10.96.0.13", http)], expect="full")
        # Other changes from outside, each found by the next (periodic) sync's
        # check and repaired by a full sync in place.
        for what, cmd in (("table made dormant", ["add", "table", "ip", "nlproxy", "{ flags dormant; }"]),
                          ("counter added to our table", ["add", "counter", "ip", "nlproxy", "foreign"]),
                          ("chain added to our table", ["add", "chain", "ip", "nlproxy", "foreign"]),
                          ("stray shard table", ["add", "table", "ip", "nlproxy-svc-40"]),
                          ("table flushed", ["flush", "table", "ip", "nlproxy"]),
                          ("table deleted", ["delete", "table", "ip6", "nlproxy"])):
            sh("ip", "netns", "exec", ns_k, "nft", *cmd)
            step(f"{what}: repaired", expect="full")
        # Another agent commits (a chain into our table) between the full
        # sync's read-back and its batch: the batch, made from a stale read,
        # is refused by the generation check and the sync reads again.
        st.cmd("race-next")
        step("a commit between read-back and batch: read again", full=True)
        # An element added to a set is not seen by the check: the hourly
        # full sync repairs it.
        sh("ip", "netns", "exec", ns_k, "nft", "add", "element", "ip", "nlproxy", "cluster-ips", "{ 10.96.9.9 }")
        step("element added from outside: a full sync repairs it", full=True)

        # A transaction the kernel refuses keeps the previous rules, and the
        # next sync (full, since the backend no longer trusts its record) repairs.
        before = listing(ns_k)
        st.cmd("apply " + write([svc("e", "10.96.0.14", http), eps("e-1", "e", [("10.244.0.8", "node-0")])]))
        st.cmd("fail-next")
        out = st.cmd("sync")
        after = listing(ns_k)
        check("failed transaction leaves the previous rules", out.startswith("error") and before == after, out)
        check("the kernel's refusal names the object", "nlproxy-test-missing-chain" in out, out)
        step("next sync repairs", expect="full")
    finally:
        if st:
            st.close()
        subprocess.run(["ip", "netns", "del", ns_k])
        subprocess.run(["ip", "netns", "del", ns_d])
        subprocess.run(["rm", "-rf", tmp])
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


def diff(a, b):
    for fam in sorted(set(a) | set(b)):
        sa, sb = set(a.get(fam, [])), set(b.get(fam, []))
        for x in sorted(sa - sb)[:3]:
            print(f"    kernel only [{fam}]: {x[2][:300]}")
        for x in sorted(sb - sa)[:3]:
            print(f"    dry-run only [{fam}]: {x[2][:300]}")
        if sa == sb and a.get(fam) != b.get(fam):
            print(f"    [{fam}] same objects, different order")
    return ""


if __name__ == "__main__":
    sys.exit(main())
