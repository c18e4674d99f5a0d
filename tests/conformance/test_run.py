#!/usr/bin/env python3
"""Self-test of the conformance runner's judging (tests/conformance/run) and
of its probes' resends (nlc_agent.py), without network namespaces: verdicts
from synthetic probe outcomes, the service a flow belongs to, the address
parser (cross-checked against nlproxy's own when build/nlproxy exists), the
deadline plan, and UDP/TCP attempts against listeners on 127.0.0.1.
Run by tests/conformance_selftest.sh."""
import importlib.machinery
import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
import types
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True


def load(name, path):
    loader = importlib.machinery.SourceFileLoader(name, path)
    spec = importlib.util.spec_from_loader(name, loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


run = load("nlc_run", os.path.join(HERE, "run"))
agent = load("nlc_agent", os.path.join(HERE, "nlc_agent.py"))

NODE = {"192.168.0.2", "192.168.1.2", "100.64.1.1"}
TOPO = types.SimpleNamespace(owned_by_node=NODE)


def svc(name, affinity, ports, cip, typ="ClusterIP", ext=None, lb=None):
    spec = {"type": typ, "clusterIP": cip, "clusterIPs": [cip] if cip != "None" else [cip], "ports": ports,
            "sessionAffinity": "ClientIP" if affinity else "None"}
    if ext:
        spec["externalIPs"] = ext
    return {"metadata": {"namespace": "ns", "name": name}, "spec": spec,
            "status": {"loadBalancer": {"ingress": [{"ip": i} for i in lb or []]}}}


def port(p, np=None, proto="TCP"):
    d = {"port": p, "protocol": proto}
    if np:
        d["nodePort"] = np
    return d


def flow(dst, dport, verdict="DNAT", eps=(), masq=False, src="10.0.0.2", proto="TCP"):
    return {"name": "f", "proto": proto, "src": src, "dst": dst, "dport": dport,
            "expect": {"verdict": verdict, "endpoints": list(eps), "masq": masq}}


def answers(*idents, peer="10.0.0.2"):
    return [{"kind": "answer", "ident": i, "peer": peer, "ms": 3.0} for i in idents]


OBJS = {"services": [
    svc("sticky", True, [port(80, 3101), port(53, 3153, "UDP")], "172.30.1.10", "LoadBalancer",
        ext=["192.168.99.60"], lb=["5.6.7.10"]),
    svc("plain", False, [port(8080, 3102), port(53, 3154)], "172.30.1.20", "LoadBalancer",
        ext=["192.168.99.60"], lb=["5.6.7.20"]),
    svc("legacy", True, [port(80)], "172.030.002.010"),
    svc("headless", True, [port(80)], "None"),
    svc("cip-only", True, [port(80, 3300)], "172.30.1.30"),
    {"metadata": {"namespace": "ns", "name": "extname"},
     "spec": {"type": "ExternalName", "clusterIP": "172.30.1.40", "ports": [port(80)], "sessionAffinity": "ClientIP"}},
]}


class FlowAffinity(unittest.TestCase):
    def sticky(self, dst, dport, proto="TCP"):
        return run.flow_affinity(flow(dst, dport, proto=proto), OBJS, NODE)

    def test_cluster_ip(self):
        self.assertTrue(self.sticky("172.30.1.10", 80))
        self.assertFalse(self.sticky("172.30.1.20", 8080))
        self.assertFalse(self.sticky("172.30.1.10", 8080), "the other service's port is not the sticky one's")

    def test_external_ip_shared_by_port_and_protocol(self):
        self.assertTrue(self.sticky("192.168.99.60", 80))
        self.assertFalse(self.sticky("192.168.99.60", 8080))
        self.assertTrue(self.sticky("192.168.99.60", 53, "UDP"))
        self.assertFalse(self.sticky("192.168.99.60", 53, "TCP"))

    def test_lb_ip(self):
        self.assertTrue(self.sticky("5.6.7.10", 80))
        self.assertFalse(self.sticky("5.6.7.20", 8080))

    def test_node_port_on_node_addresses_only(self):
        self.assertTrue(self.sticky("192.168.0.2", 3101))
        self.assertTrue(self.sticky("192.168.1.2", 3153, "UDP"))
        self.assertTrue(self.sticky("127.0.0.1", 3101))
        self.assertFalse(self.sticky("192.168.0.2", 3102))
        self.assertFalse(self.sticky("203.0.113.9", 3101), "a NodePort on an address the node does not own")
        self.assertFalse(self.sticky("192.168.0.2", 3300), "a ClusterIP service has no NodePort")

    def test_legacy_and_special_services(self):
        self.assertTrue(self.sticky("172.30.2.10", 80), "clusterIP 172.030.002.010")
        self.assertFalse(self.sticky("172.30.1.40", 80), "ExternalName gets no rules")
        self.assertFalse(self.sticky("10.1.1.1", 80), "no service")

    def test_conflicting_claims_are_a_scenario_error(self):
        objs = {"services": [svc("a", True, [port(80)], "172.30.9.1"), svc("b", False, [port(80)], "172.30.9.1")]}
        with self.assertRaisesRegex(ValueError, "ns/a.*ns/b"):
            run.flow_affinity(flow("172.30.9.1", 80), objs, NODE)


class Verdicts(unittest.TestCase):
    EPS = ["10.180.2.1:80", "10.180.2.2:80"]

    def test_mixed_step(self):
        """The bug: in a step with a ClientIP and a None service, the None
        service's flow was judged sticky and failed on correct behaviour."""
        plain = flow("172.30.1.20", 8080, eps=self.EPS)
        sticky = flow("172.30.1.10", 80, eps=self.EPS)
        spread = answers(*(self.EPS * 10))
        stuck = answers(*([self.EPS[1]] * 20))
        ok, why = run.check(plain, spread, TOPO, run.flow_affinity(plain, OBJS, NODE))
        self.assertTrue(ok, why)
        ok, why = run.check(sticky, stuck, TOPO, run.flow_affinity(sticky, OBJS, NODE))
        self.assertTrue(ok, why)
        self.assertIn("sticky", why)
        # and each judgement still fails on wrong behaviour
        ok, why = run.check(sticky, spread, TOPO, True)
        self.assertFalse(ok)
        self.assertIn("session affinity broken", why)
        ok, why = run.check(plain, stuck, TOPO, False)
        self.assertFalse(ok)
        self.assertIn("never reached", why)

    def test_dnat(self):
        f = flow("172.30.1.20", 8080, eps=self.EPS)
        ok, why = run.check(f, answers("10.180.2.1:80", "10.180.9.9:80"), TOPO, False)
        self.assertFalse(ok)
        self.assertIn("landed outside", why)
        ok, why = run.check(f, answers(*self.EPS) + [{"kind": "timeout", "ms": 2000.0}], TOPO, False)
        self.assertFalse(ok, "a timed-out connection is a failure, never retried away")
        self.assertIn("1 of 3 connections failed", why)
        ok, why = run.check(f, answers(*self.EPS, peer="100.64.1.1"), TOPO, False)
        self.assertFalse(ok)
        self.assertIn("expected no masquerade", why)
        f = flow("5.6.7.20", 8080, eps=self.EPS, masq=True)
        self.assertTrue(run.check(f, answers(*self.EPS, peer="100.64.1.1"), TOPO, False)[0])
        self.assertFalse(run.check(f, answers(*self.EPS), TOPO, False)[0])
        self.assertFalse(run.check(f, [], TOPO, False)[0])

    def test_reject_is_told_from_a_timeout(self):
        f = flow("172.30.1.20", 9, verdict="REJECT")
        err = [{"kind": "error", "errno": "ECONNREFUSED", "ms": 2500.0}]
        self.assertTrue(run.check(f, [{"kind": "error", "errno": "ECONNREFUSED", "ms": 30.0}], TOPO, False)[0])
        ok, why = run.check(f, err, TOPO, False)
        self.assertFalse(ok, "2.5 s is not 'at once' at speed factor 1")
        self.assertIn("within 2.0s", why)
        self.assertTrue(run.check(f, [{"kind": "error", "errno": "ECONNREFUSED", "ms": 1050.0}], TOPO, False)[0],
                        "an error after one resend (TCP's at 1 s) is still a reject")
        self.assertTrue(run.check(f, err, TOPO, False, reject_ms=3000)[0], "but it is on a machine 3x slower")
        for o in ({"kind": "timeout", "ms": 3000.0}, answers("10.180.2.1:80")[0],
                  {"kind": "error", "errno": "EPERM", "ms": 1.0}):
            ok, why = run.check(f, [o], TOPO, False, reject_ms=10000)
            self.assertFalse(ok, f"{o} is not a reject, however slow the machine")

    def test_drop(self):
        f = flow("172.30.1.50", 80, verdict="DROP")
        self.assertTrue(run.check(f, [{"kind": "timeout", "ms": 1500.0}] * 2, TOPO, False)[0])
        self.assertTrue(run.check(f, [{"kind": "error", "errno": "EPERM", "ms": 1.0}], TOPO, False)[0])
        for o in (answers("10.180.2.1:80")[0], {"kind": "error", "errno": "ECONNREFUSED", "ms": 1.0}):
            self.assertFalse(run.check(f, [{"kind": "timeout", "ms": 1500.0}, o], TOPO, False)[0])

    def test_pass(self):
        f = flow("10.1.1.1", 80, verdict="PASS")
        self.assertTrue(run.check(f, answers("10.1.1.1:80"), TOPO, False)[0])
        self.assertFalse(run.check(f, answers("10.180.2.1:80"), TOPO, False)[0])
        self.assertFalse(run.check(f, answers("10.1.1.1:80", peer="100.64.1.1"), TOPO, False)[0])


class Addresses(unittest.TestCase):
    GOOD = {
        "10.180.00.001": "10.180.0.1",
        "010.001.002.003": "10.1.2.3",          # decimal, not octal (8.1.2.3)
        "0000255.0.0.01": "255.0.0.1",
        "192.168.0.2": "192.168.0.2",
        "::ffff:10.180.0.1": "10.180.0.1",      # IPv4-mapped: IPv4
        "fd00:0010::0002": "fd00:10::2",
        "2001:DB8::1": "2001:db8::1",
    }
    BAD = ["256.0.0.1", "1.2.3", "1.2.3.4.5", " 1.2.3.4", "1.2.3.4 ", "+1.2.3.4", "1..2.3", "0x0a.1.2.3",
           "\u0661.2.3.4", "fe80::1%eth0", "::ffff:010.1.2.3", "1:2:3:4:5:6:7:8:9", "", "node-a.example"]

    def test_parse(self):
        for s, want in self.GOOD.items():
            self.assertEqual(run.norm(s), want, s)
        for s in self.BAD:
            with self.assertRaises(ValueError, msg=s):
                run.parse_ip(s)
            self.assertIsNone(run.try_norm(s))
        self.assertEqual(run.parse_ep("010.180.000.001:80"), ("10.180.0.1", 80))
        self.assertEqual(run.parse_ep("[fd00::0001]:80"), ("fd00::1", 80))

    def test_same_rules_as_nlproxy(self):
        """nlproxy's parser (proxy/ipaddr.c), through `nlproxy trace`: it
        prints the source address it read, or rejects it."""
        nlp = os.path.join(ROOT, "build", "nlproxy")
        if not os.access(nlp, os.X_OK):
            self.skipTest(f"{nlp} missing (make all)")
        manifest = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"nlc-selftest-{os.getpid()}.json")
        with open(manifest, "w") as f:
            f.write('{"apiVersion": "v1", "kind": "List", "items": []}\n')
        try:
            for s in list(self.GOOD) + self.BAD:
                if not s or s.strip() != s or s.startswith("+"):
                    continue   # not an argv-safe probe of the parser
                got = None
                for dst in ("172.30.0.1:80", "[fd00::1]:80"):
                    r = subprocess.run([nlp, "trace", s, dst, "--manifests", manifest],
                                       capture_output=True, text=True, timeout=30)
                    if r.returncode == 0:
                        got = r.stdout.split("\n")[0].split()[2]
                        break
                self.assertEqual(got, run.try_norm(s), f"{s!r}: nlproxy read {got}, the runner {run.try_norm(s)}")
        finally:
            os.unlink(manifest)


class Plan(unittest.TestCase):
    def test_scaling(self):
        dnat = flow("172.30.1.20", 8080, eps=Verdicts.EPS)
        self.assertEqual(run.probe_plan(dnat), (20, 2.0, 2))
        self.assertEqual(run.probe_plan(dnat, 3.0), (20, 6.0, 2), "slower: longer waits, never more attempts")
        self.assertEqual(run.probe_plan(flow("1.1.1.1", 1, verdict="DROP"), 2.0), (2, 3.0, 99))
        self.assertEqual(run.probe_plan(flow("1.1.1.1", 1, verdict="REJECT"), 2.0), (3, 4.0, 99))

    def test_fixed_speed(self):
        os.environ["NLC_SPEED"] = "2.5"
        try:
            sp = run.Speed()
            self.assertEqual(sp.calibrate(), 2.5)
            self.assertEqual(sp.factor(), 2.5)
        finally:
            del os.environ["NLC_SPEED"]

    def test_measured_speed(self):
        sp = run.Speed()
        f = sp.calibrate()
        self.assertGreater(sp.start_ms, 0)
        self.assertTrue(1.0 <= f <= run.Speed.CAP)
        self.assertTrue(1.0 <= sp.factor() <= run.Speed.CAP)


class Listener:
    """UDP on 127.0.0.1 that counts datagrams and answers from the n-th on
    (never when answer_from is None)."""

    def __init__(self, answer_from=None):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind(("127.0.0.1", 0))
        self.s.settimeout(0.2)
        self.port = self.s.getsockname()[1]
        self.seen = 0
        self.answer_from = answer_from
        self.stop = False
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    def loop(self):
        while not self.stop:
            try:
                data, peer = self.s.recvfrom(512)
            except socket.timeout:
                continue
            self.seen += 1
            if self.answer_from is not None and self.seen >= self.answer_from:
                self.s.sendto(f"127.0.0.1:{self.port} {peer[0]}\n".encode(), peer)

    def close(self):
        self.stop = True
        self.t.join(2)
        self.s.close()


class Resends(unittest.TestCase):
    def probe(self, port, proto="udp", timeout=1.0):
        return agent.attempt({"proto": proto, "src": "127.0.0.1", "dst": "127.0.0.1", "dport": port,
                              "timeout": timeout})

    def test_lost_datagram_is_resent_on_the_same_flow(self):
        lis = Listener(answer_from=2)
        try:
            o = self.probe(lis.port)
        finally:
            lis.close()
        self.assertEqual(o["kind"], "answer", o)
        self.assertEqual(lis.seen, 2)
        self.assertGreaterEqual(o["ms"], 1000.0 / agent.SENDS * 0.9)

    def test_silence_stays_a_timeout_with_bounded_resends(self):
        lis = Listener(answer_from=None)
        try:
            t0 = time.monotonic()
            o = self.probe(lis.port)
            took = time.monotonic() - t0
            time.sleep(0.3)
        finally:
            lis.close()
        self.assertEqual(o["kind"], "timeout", o)
        self.assertEqual(lis.seen, agent.SENDS)
        self.assertTrue(0.95 <= took < 1.5, took)

    def test_refusal_is_an_error_not_a_timeout(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
        s.close()
        for proto in ("udp", "tcp"):
            o = self.probe(closed, proto)
            self.assertEqual((o["kind"], o.get("errno")), ("error", "ECONNREFUSED"), (proto, o))


class DetectLocal(unittest.TestCase):
    """The node context of the --detect-local-mode scenarios: the flags, the
    scenario's own Node object, and the names of the pods' interfaces."""
    NC = {"nodeName": "test-node", "primaryNodeIP": "192.168.0.2", "localAddresses": ["192.168.0.2"],
          "clusterCIDR": "10.0.0.0/8"}

    def nc(self, **kw):
        return dict(self.NC, **kw)

    def test_flags(self):
        sm = run.sm
        self.assertEqual(sm.node_flags(self.nc(localTrafficDetector="ClusterCIDR"))[4:],
                         ["--cluster-cidr", "10.0.0.0/8"])
        # the shared scenarios' "None": no detector at all
        self.assertNotIn("--detect-local-mode", sm.node_flags(self.nc(localTrafficDetector="None", clusterCIDR=None)))
        self.assertEqual(sm.node_flags(self.nc(localTrafficDetector="BridgeInterface", podBridgeInterface="cbr0"))[6:],
                         ["--detect-local-mode", "BridgeInterface", "--pod-bridge-interface", "cbr0"])
        self.assertEqual(sm.node_flags(self.nc(localTrafficDetector="InterfaceNamePrefix",
                                               podInterfaceNamePrefix="veth"))[6:],
                         ["--detect-local-mode", "InterfaceNamePrefix", "--pod-interface-name-prefix", "veth"])

    def test_scenario_node_replaces_the_made_one(self):
        import json
        import tempfile
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "test-node"},
                "spec": {"podCIDRs": ["10.0.1.0/24"]}}
        with tempfile.TemporaryDirectory() as d:
            for objs, want in (({"nodes": [node]}, [node["spec"]]), ({}, [None])):
                run.sm.write_case(d, self.nc(localTrafficDetector="NodeCIDR"), objs, [])
                with open(os.path.join(d, "objects.json")) as f:
                    items = json.load(f)["items"]
                self.assertEqual([i.get("spec") for i in items if i["kind"] == "Node"], want)

    def topo(self, pod_ifs):
        cases = [("c", self.nc(podInterfaces=pod_ifs), {"endpointSlices": [
            {"endpoints": [{"addresses": ["10.180.0.5"], "nodeName": "test-node"}],
             "ports": [{"port": 80, "protocol": "TCP"}]}]},
                  [flow("172.30.0.1", 80, src="10.0.0.2"), flow("172.30.0.1", 80, src="10.0.0.3"),
                   flow("172.30.0.1", 80, src="fd00::2")])]
        return run.Topology(1, cases[0][1], cases)

    def test_pod_interface_names(self):
        t = self.topo({"10.0.0.2": "cbr0", "fd00:0::2": "veth6", "10.180.0.5": "veth5"})
        names = {ips[0]: t.ifname[i] for i, _, _, ips in t.peers if ips}
        self.assertEqual(names["10.0.0.2"], "cbr0")
        self.assertEqual(names["fd00::2"], "veth6")
        self.assertEqual(names["10.180.0.5"], "veth5")
        self.assertRegex(names["10.0.0.3"], r"^n[0-9]+$")
        self.assertTrue(all(t.ifname[i].startswith("n") for i, _, kind, _ in t.peers if kind in ("remote", "up")))
        for bad in ({"10.0.0.2": "cbr0", "10.0.0.3": "cbr0"}, {"10.0.0.2": "n2"}, {"10.0.0.2": "a-name-too-long-x"},
                    {"10.0.0.2": "br 0"}):
            with self.assertRaises(RuntimeError):
                self.topo(bad)


if __name__ == "__main__":
    unittest.main(verbosity=2)
