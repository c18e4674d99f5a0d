#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Cluster DNS for the test cluster (tests/cluster/cluster.sh): Debian's
dnsmasq, fed from the API server.

No CoreDNS image exists here. dnsmasq answers, under --domain:
  <svc>.<ns>.svc.<domain>  A      the Service's ClusterIP(s)
  <svc>.<ns>.svc.<domain>  CNAME  the externalName of an ExternalName Service
  headless Services: the service name and <pod>.<svc>.<ns>.svc.<domain>, A
    records of the ready endpoints: what nlproxy's --headless-hosts-file
    writes, from a second nlproxy instance that only reads (--dry-run).
Nothing else: names outside the domain are not forwarded anywhere.

The ClusterIPs are polled once a second (a LIST of Services) and written
with the headless records into one hosts file in dnsmasq's --hostsdir,
which dnsmasq re-reads by itself (inotify); the CNAMEs are command-line
options, so a change of them restarts dnsmasq. Both children (dnsmasq,
nlproxy) are stopped on SIGTERM, and this exits when its parent shell is
gone. Writes DIR/status: "ready" once dnsmasq answers the first records.
"""
import argparse
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request


def log(msg):
    print(time.strftime("%H:%M:%S"), msg, flush=True)


class Feeder:
    def __init__(self, a):
        self.a = a
        self.ctx = ssl.create_default_context(cafile=a.ca)
        self.ctx.load_cert_chain(a.cert, a.key)
        self.hostsdir = os.path.join(a.dir, "hosts.d")
        os.makedirs(self.hostsdir, exist_ok=True)
        self.headless = os.path.join(a.dir, "headless.hosts")
        self.dnsmasq = None
        self.nlproxy = None
        self.cnames = None
        self.hosts = None
        self.restarts = 0
        self.stopping = False

    def services(self):
        req = urllib.request.Request(self.a.server + "/api/v1/services")
        with urllib.request.urlopen(req, context=self.ctx, timeout=10) as r:
            return json.load(r).get("items") or []

    def records(self, items):
        hosts, cnames = [], []
        for s in items:
            md, spec = s.get("metadata") or {}, s.get("spec") or {}
            name = "%s.%s.svc.%s" % (md.get("name"), md.get("namespace"), self.a.domain)
            if spec.get("type") == "ExternalName":
                target = (spec.get("externalName") or "").rstrip(".")
                if target:
                    cnames.append((name, target))
                continue
            for ip in spec.get("clusterIPs") or [spec.get("clusterIP")]:
                if ip and ip != "None":
                    hosts.append("%s\t%s" % (ip, name))
        try:
            with open(self.headless) as f:
                hosts += [l.rstrip("\n") for l in f if l.strip() and not l.startswith("#")]
        except FileNotFoundError:
            pass
        return "\n".join(sorted(hosts)) + "\n", sorted(cnames)

    def write_hosts(self, text):
        # Renamed into the watched folder: dnsmasq sees only whole files.
        tmp = os.path.join(self.a.dir, ".cluster.hosts")
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.rename(tmp, os.path.join(self.hostsdir, "cluster.hosts"))

    def start_dnsmasq(self):
        args = ["dnsmasq", "--keep-in-foreground", "--log-facility=-", "--pid-file=",
                "--conf-file=/dev/null", "--user=root", "--group=root",
                "--listen-address=" + self.a.listen, "--bind-interfaces", "--except-interface=lo",
                "--port=53", "--no-resolv", "--no-hosts", "--no-negcache",
                "--local=/%s/" % self.a.domain, "--hostsdir=" + self.hostsdir,
                "--cache-size=0", "--local-ttl=0"]
        args += ["--cname=%s,%s" % c for c in self.cnames]
        self.dnsmasq = subprocess.Popen(args, stdout=sys.stdout, stderr=sys.stderr)
        log("dnsmasq %d started with %d CNAMEs" % (self.dnsmasq.pid, len(self.cnames)))

    def stop_child(self, p):
        if p and p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    def start_nlproxy(self):
        # Reads the API like the DaemonSet's nlproxy, programs nothing,
        # serves nothing: only its headless records are wanted.
        args = [self.a.nlproxy, "--dry-run", "--kubeconfig", self.a.kubeconfig,
                "--hostname-override", "dns-feeder", "--cluster-domain", self.a.domain,
                "--headless-hosts-file", self.headless,
                "--healthz-bind-address", "", "--metrics-bind-address", ""]
        out = open(os.path.join(self.a.dir, "nlproxy-dry-run.log"), "w")
        self.nlproxy = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=out)
        log("nlproxy --dry-run %d started" % self.nlproxy.pid)

    def stop(self, *_):
        self.stopping = True

    def run(self):
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        parent = os.getppid()
        self.start_nlproxy()
        ready = False
        try:
            while not self.stopping:
                # The harness that started this is gone (killed): so is this.
                if os.getppid() != parent:
                    break
                try:
                    hosts, cnames = self.records(self.services())
                except Exception as e:  # the API server restarting: keep serving
                    log("list services: %s" % e)
                    time.sleep(1)
                    continue
                if hosts != self.hosts:
                    self.write_hosts(hosts)
                    self.hosts = hosts
                if cnames != self.cnames or self.dnsmasq is None or self.dnsmasq.poll() is not None:
                    if self.dnsmasq is not None and self.dnsmasq.poll() is not None:
                        self.restarts += 1
                        log("dnsmasq exited %s" % self.dnsmasq.returncode)
                        if self.restarts > 20:
                            return 1
                    self.stop_child(self.dnsmasq)
                    self.cnames = cnames
                    self.start_dnsmasq()
                if self.nlproxy.poll() is not None:
                    log("nlproxy --dry-run exited %s" % self.nlproxy.returncode)
                    self.start_nlproxy()
                if not ready:
                    with open(os.path.join(self.a.dir, "status"), "w") as f:
                        f.write("ready\n")
                    ready = True
                time.sleep(1)
        finally:
            self.stop_child(self.dnsmasq)
            self.stop_child(self.nlproxy)
        return 0


def main():
    p = argparse.ArgumentParser()
    for o in ("server", "ca", "cert", "key", "listen", "dir", "domain", "nlproxy", "kubeconfig"):
        p.add_argument("--" + o, required=True)
    return Feeder(p.parse_args()).run()


if __name__ == "__main__":
    sys.exit(main())
