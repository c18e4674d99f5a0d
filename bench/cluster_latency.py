#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Helpers of bench/cluster_latency.sh (network programming latency, the SIG
Scalability SLI, in the real cluster of tests/cluster).

  quantiles --before F --after F [--name N]
      p50/p99 of the histogram N (kubeproxy_network_programming_duration_seconds)
      over what was observed between two scrapes of /metrics (the delta of
      the cumulative buckets), computed as Prometheus' histogram_quantile:
      the rank q*count located in the cumulative buckets, linear
      interpolation inside the bucket found (its lower bound 0 for the first
      bucket), the highest finite bound when the rank falls in +Inf.
      Prints JSON: count, sum, p50, p99.

  watch --server URL --ca F --cert F --key F --out F
      The API side, measured in the same run: every EndpointSlice event of
      a watch over all namespaces whose endpoints.kubernetes.io/
      last-change-trigger-time is new for that slice gives one sample, the
      time it reached this watch minus the trigger time (the same pairs
      nlproxy observes). Lines "RECEIVED_UNIX LATENCY_S NS/NAME" appended
      to F, flushed each; runs until SIGTERM.

  samples --file F --from T0 --to T1 [--buckets-from METRICS]
      p50/p99 of the watch's samples received in [T0, T1): exact, and
      through nlproxy's buckets (the same quantization as its histogram,
      for a like-for-like ratio). Prints JSON.

  create --server URL ... --namespace NS --count N --rate R --prefix P
      N ClusterIP Services P-0..P-(N-1) selecting app=lat-backend, created
      at R per second (POSTs from 4 threads). Prints how long it took.
"""
import argparse
import json
import math
import os
import signal
import ssl
import sys
import threading
import time
import urllib.request
from datetime import datetime

NAME = "kubeproxy_network_programming_duration_seconds"
TRIGGER = "endpoints.kubernetes.io/last-change-trigger-time"


def parse_hist(path, name):
    """Cumulative buckets {le: count}, sum and count of histogram `name`."""
    buckets, total, count = {}, 0.0, 0
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            key, _, val = line.rpartition(" ")
            if key.startswith(name + "_bucket{"):
                le = key.split('le="', 1)[1].split('"', 1)[0]
                buckets[math.inf if le == "+Inf" else float(le)] = float(val)
            elif key == name + "_sum":
                total = float(val)
            elif key == name + "_count":
                count = float(val)
    return buckets, total, count


def histogram_quantile(q, buckets):
    """Prometheus' histogram_quantile on cumulative buckets {le: count}."""
    les = sorted(buckets)
    if not les or les[-1] != math.inf:
        return math.nan
    total = buckets[math.inf]
    if total == 0:
        return math.nan
    rank = q * total
    for i, le in enumerate(les):
        if buckets[le] >= rank:
            break
    if le == math.inf:
        return les[-2] if len(les) > 1 else math.nan
    lower = les[i - 1] if i > 0 else 0.0
    below = buckets[les[i - 1]] if i > 0 else 0.0
    inside = buckets[le] - below
    if inside == 0:
        return le
    return lower + (le - lower) * (rank - below) / inside


def cmd_quantiles(a):
    b0, s0, c0 = parse_hist(a.before, a.name)
    b1, s1, c1 = parse_hist(a.after, a.name)
    if not b1:
        sys.exit("no histogram %s in %s" % (a.name, a.after))
    delta = {le: b1[le] - b0.get(le, 0.0) for le in b1}
    out = {"count": c1 - c0, "sum": round(s1 - s0, 3),
           "p50": histogram_quantile(0.5, delta), "p99": histogram_quantile(0.99, delta)}
    print(json.dumps({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}))


def ssl_ctx(a):
    ctx = ssl.create_default_context(cafile=a.ca)
    ctx.load_cert_chain(a.cert, a.key)
    return ctx


def rfc3339(s):
    # Go's RFC3339Nano: up to 9 fractional digits, "Z"; Python takes 6.
    s = s.replace("Z", "+00:00")
    if "." in s:
        head, rest = s.split(".", 1)
        frac = "".join(ch for ch in rest if ch.isdigit())
        tz = rest[len(frac):]
        s = "%s.%s%s" % (head, (frac + "000000")[:6], tz)
    return datetime.fromisoformat(s).timestamp()


def cmd_watch(a):
    ctx = ssl_ctx(a)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    seen = {}
    out = open(a.out, "a", buffering=1)
    base = a.server + "/apis/discovery.k8s.io/v1/endpointslices"
    deadline = time.time() + a.max_seconds
    while not stop.is_set() and time.time() < deadline:
        try:
            with urllib.request.urlopen(urllib.request.Request(base + "?limit=5000"), context=ctx, timeout=30) as r:
                lst = json.load(r)
            for s in lst.get("items") or []:
                md = s["metadata"]
                seen[md["namespace"] + "/" + md["name"]] = (md.get("annotations") or {}).get(TRIGGER)
            rv = lst["metadata"]["resourceVersion"]
            url = "%s?watch=1&allowWatchBookmarks=false&resourceVersion=%s&timeoutSeconds=%d" % (base, rv, 1800)
            with urllib.request.urlopen(urllib.request.Request(url), context=ctx, timeout=1900) as r:
                for line in r:
                    now = time.time()
                    ev = json.loads(line)
                    if ev.get("type") not in ("ADDED", "MODIFIED"):
                        continue
                    md = ev["object"]["metadata"]
                    key = md["namespace"] + "/" + md["name"]
                    tt = (md.get("annotations") or {}).get(TRIGGER)
                    if tt and seen.get(key) != tt:
                        seen[key] = tt
                        out.write("%.3f %.3f %s\n" % (now, now - rfc3339(tt), key))
        except (OSError, ValueError) as e:
            print("watch: %s; again in 1 s" % e, file=sys.stderr, flush=True)
            time.sleep(1)


def quantile_exact(q, xs):
    """The sample at rank ceil(q*n) (nearest rank)."""
    if not xs:
        return None
    xs = sorted(xs)
    return xs[max(0, math.ceil(q * len(xs)) - 1)]


def cmd_samples(a):
    xs = []
    with open(a.file) as f:
        for line in f:
            p = line.split()
            if len(p) >= 2 and a.t_from <= float(p[0]) < a.t_to:
                xs.append(float(p[1]))
    out = {"count": len(xs), "p50": quantile_exact(0.5, xs), "p99": quantile_exact(0.99, xs)}
    if a.buckets_from:
        b, _, _ = parse_hist(a.buckets_from, a.name)
        cum = {le: float(sum(1 for x in xs if x <= le)) for le in b}
        out["p50_bucketed"] = histogram_quantile(0.5, cum) if xs else None
        out["p99_bucketed"] = histogram_quantile(0.99, cum) if xs else None
    print(json.dumps(out))


def cmd_create(a):
    ctx = ssl_ctx(a)
    url = "%s/api/v1/namespaces/%s/services" % (a.server, a.namespace)
    t0 = time.time()
    errors = []
    lock = threading.Lock()
    nxt = [0]

    def worker():
        while True:
            with lock:
                i = nxt[0]
                if i >= a.count:
                    return
                nxt[0] += 1
            # Paced: request i goes out at t0 + i/rate.
            delay = t0 + i / a.rate - time.time()
            if delay > 0:
                time.sleep(delay)
            body = json.dumps({"apiVersion": "v1", "kind": "Service",
                               "metadata": {"name": "%s-%d" % (a.prefix, i)},
                               "spec": {"selector": {"app": a.selector},
                                        "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}).encode()
            req = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
                    r.read()
            except OSError as e:
                with lock:
                    errors.append("%s-%d: %s" % (a.prefix, i, e))

    th = [threading.Thread(target=worker) for _ in range(4)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    print(json.dumps({"created": a.count - len(errors), "seconds": round(time.time() - t0, 1),
                      "errors": errors[:5]}))
    sys.exit(1 if errors else 0)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quantiles")
    q.add_argument("--before", required=True)
    q.add_argument("--after", required=True)
    q.add_argument("--name", default=NAME)
    for n in ("watch", "create"):
        w = sub.add_parser(n)
        w.add_argument("--server", required=True)
        w.add_argument("--ca", required=True)
        w.add_argument("--cert", required=True)
        w.add_argument("--key", required=True)
        if n == "watch":
            w.add_argument("--out", required=True)
            w.add_argument("--max-seconds", type=float, default=7200)
        else:
            w.add_argument("--namespace", required=True)
            w.add_argument("--count", type=int, required=True)
            w.add_argument("--rate", type=float, required=True)
            w.add_argument("--prefix", default="lat")
            w.add_argument("--selector", default="lat-backend")
    s = sub.add_parser("samples")
    s.add_argument("--file", required=True)
    s.add_argument("--from", dest="t_from", type=float, required=True)
    s.add_argument("--to", dest="t_to", type=float, required=True)
    s.add_argument("--buckets-from")
    s.add_argument("--name", default=NAME)
    a = p.parse_args()
    {"quantiles": cmd_quantiles, "watch": cmd_watch, "samples": cmd_samples, "create": cmd_create}[a.cmd](a)


if __name__ == "__main__":
    main()
