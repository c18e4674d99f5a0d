#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Peak RSS of a cold sync, of a full sync over it, and of the daemon (issue 15).

  sudo python3 bench/mem_peak.py TREE N [TREE N ...]

For each TREE (a built nlproxy checkout: its build/tests/nlp_steps and
build/nlproxy) and size N (services, 2 endpoints each), in fresh network
namespaces:
 1. nlp_steps `load` of bench/gen's N x 2 YAML, `sync full` (cold), `sync
    full` again (what the daemon's hourly full sync does, tables in place):
    VmHWM after each answer, and the cold sync's compute_us + sync_us and
    CPU (as bench/nft_sync.py reads them; its peak RSS column is the same
    VmHWM after the whole run);
 2. the daemon as users run it: `nlproxy --manifests DIR --once` with DIR
    from `bench/gen --split-bytes 33554432` (files of at most 32 MiB), its
    maximum RSS from /usr/bin/time.
Give trees alternately (base new base new) to compare in the same run.
Data goes to $MEM_PEAK_DATA (default /tmp/nlp-mem-peak). One line a run.
"""
import os, subprocess, sys, tempfile

FLAGS = ["--node-ip", "192.168.0.10", "--cluster-cidr", "10.0.0.0/8",
         "--service-cluster-ip-range", "10.96.0.0/12,fd00:96::/108", "--hostname-override", "node-0"]
GEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen")
DATA = os.environ.get("MEM_PEAK_DATA", "/tmp/nlp-mem-peak")


def data(n):
    os.makedirs(DATA, exist_ok=True)
    y, d = os.path.join(DATA, "c%d.yaml" % n), os.path.join(DATA, "d%d" % n)
    if not os.path.exists(y):
        subprocess.run([GEN, "--services", str(n), "--endpoints", "2", y], check=True, stdout=subprocess.DEVNULL)
    if not os.path.isdir(d):
        subprocess.run([GEN, "--services", str(n), "--endpoints", "2", "--split-bytes", "33554432", d],
                       check=True, stdout=subprocess.DEVNULL)
    return y, d


class Netns:
    def __enter__(self):
        self.name = "nlpmem%d" % os.getpid()
        subprocess.run(["ip", "netns", "add", self.name], check=True, timeout=60)
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True, timeout=60)
        return self.name

    def __exit__(self, *a):
        subprocess.run(["ip", "netns", "del", self.name], timeout=120)


def hwm_mib(pid):
    for ln in open("/proc/%d/status" % pid):
        if ln.startswith("VmHWM:"):
            return int(ln.split()[1]) / 1024
    return 0.0


def steps(tree, y):
    with Netns() as ns:
        p = subprocess.Popen(["ip", "netns", "exec", ns, os.path.join(tree, "build/tests/nlp_steps")] + FLAGS,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        out = []
        try:
            for c in ["load " + y, "sync full", "sync full"]:
                p.stdin.write(c + "\n")
                p.stdin.flush()
                ans = p.stdout.readline().split()
                if not ans or ans[0] not in ("ok", "synced"):
                    raise RuntimeError("nlp_steps: %r -> %r" % (c, ans))
                out.append((ans, hwm_mib(p.pid)))
        finally:
            p.stdin.close()
            p.wait(timeout=600)
    cold = out[1][0]
    return out[1][1], out[2][1], (int(cold[2]) + int(cold[3])) / 1e6, int(cold[4]) / 1e6


def daemon(tree, d):
    with Netns() as ns, tempfile.NamedTemporaryFile("r") as tf:
        subprocess.run(["ip", "netns", "exec", ns, "/usr/bin/time", "-o", tf.name, "-f", "%M",
                        os.path.join(tree, "build/nlproxy"), "--manifests", d, "--once"] + FLAGS,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=1200)
        return int(tf.read().split()[-1]) / 1024


def main():
    a = sys.argv[1:]
    if not a or len(a) % 2:
        sys.exit(__doc__)
    for tree, n in zip(a[::2], a[1::2]):
        y, d = data(int(n))
        cold, again, secs, cpu = steps(tree, y)
        print("%s %sx2: cold sync peak %.1f MiB, full sync again %.1f MiB, cold %.3f s (CPU %.3f s), "
              "daemon --once %.1f MiB" % (tree, n, cold, again, secs, cpu, daemon(tree, d)), flush=True)


if __name__ == "__main__":
    main()
