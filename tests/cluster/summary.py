#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""build/e2e/summary.json from e2e.test's ginkgo JSON report
(tests/cluster/e2e.sh): the run (nodes, mode, how nlproxy ran and from
which image, versions, timings) and every spec of the focus by name:
passed, failed (with the failure's first line), skipped (with the reason
the spec gave). Specs outside the focus are not listed. Prints the failed
specs and "e2e: N passed, N failed, N skipped"; exits 1 when a spec failed,
none ran, or the report is missing.
"""
import argparse
import json
import re
import sys
import time


def full_name(s):
    return " ".join([t for t in s.get("ContainerHierarchyTexts") or [] if t] + [s.get("LeafNodeText") or ""]).strip()


def first_line(msg, limit=300):
    msg = (msg or "").strip()
    line = msg.splitlines()[0] if msg else ""
    return line[:limit]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--report", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--nodes", type=int, required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--focus", required=True)
    p.add_argument("--skip", required=True)
    p.add_argument("--rc", type=int, required=True)
    p.add_argument("--commit", default="")
    p.add_argument("--kubernetes", default="")
    p.add_argument("--overlay", default="")
    p.add_argument("--times", default="")
    p.add_argument("--daemonset", default="")
    p.add_argument("--mode", default="", help="the mode of the deployed ConfigMap")
    a = p.parse_args()

    summary = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": a.commit,
        "kubernetes": a.kubernetes,
        "nodes": a.nodes,
        "mode": "nftables",
        "nlproxy": {
            "installed": "kubectl apply -k of an overlay of packaging/kubernetes (image, service CIDR, API server)",
            "image": a.image,
        },
        "focus": a.focus,
        "skip": a.skip,
        "e2e_exit_code": a.rc,
        "seconds": {k: int(v) for k, v in (x.split("=") for x in a.times.split(",") if x)},
        "passed": [],
        "failed": [],
        "skipped": [],
    }
    if a.overlay:
        try:
            summary["nlproxy"]["overlay"] = open(a.overlay).read()
        except OSError:
            pass
    if a.daemonset:
        try:
            ds = json.load(sys.stdin if a.daemonset == "-" else open(a.daemonset))
            pod = ds["spec"]["template"]["spec"]
            c = pod["containers"][0]
            summary["nlproxy"].update({
                "daemonset": "%s/%s" % (ds["metadata"]["namespace"], ds["metadata"]["name"]),
                "image": c.get("image", a.image),
                "args": c.get("args", []),
                "capabilities": (c.get("securityContext") or {}).get("capabilities"),
                "hostNetwork": pod.get("hostNetwork", False),
                "ready": "%s/%s" % (ds["status"].get("numberReady", 0), ds["status"].get("desiredNumberScheduled", 0)),
            })
            mode = re.search(r"(?m)^\s*mode:\s*(\S+)", summary["nlproxy"].get("overlay", "")) or None
            if mode:
                summary["mode"] = mode.group(1)
        except (ValueError, KeyError, IndexError, OSError):
            pass
    if a.mode:
        summary["mode"] = a.mode
    # What the overlay changed beyond the cluster's own values (deploy.sh).
    extra = [x for x, pat in (("mode: ipvs", r"mode:\s+ipvs"),
                              ("conntrack.tcpBeLiberal: true", r"tcpBeLiberal:\s+true"))
             if re.search(pat, summary["nlproxy"].get("overlay", ""))]
    if extra:
        summary["nlproxy"]["installed"] = summary["nlproxy"]["installed"].replace(
            "API server)", "API server; " + ", ".join(extra) + ")")

    focus, skip = re.compile(a.focus), re.compile(a.skip)
    try:
        suites = json.load(open(a.report))
    except (OSError, ValueError) as e:
        summary["error"] = "no report: %s" % e
        suites = []
    for suite in suites:
        for s in suite.get("SpecReports") or []:
            if s.get("LeafNodeType") != "It":
                if s.get("State") not in ("passed", "skipped"):
                    summary["failed"].append({"name": "[%s]" % s.get("LeafNodeType"),
                                              "reason": first_line((s.get("Failure") or {}).get("Message"))})
                continue
            name = full_name(s)
            if not focus.search(name) or skip.search(name):
                continue
            state = s.get("State")
            secs = round((s.get("RunTime") or 0) / 1e9, 1)
            msg = first_line((s.get("Failure") or {}).get("Message"))
            if state == "passed":
                summary["passed"].append({"name": name, "seconds": secs})
            elif state == "skipped":
                summary["skipped"].append({"name": name, "reason": msg, "seconds": secs})
            else:
                summary["failed"].append({"name": name, "state": state, "reason": msg, "seconds": secs})
    for k in ("passed", "failed", "skipped"):
        summary[k].sort(key=lambda x: x["name"])
        summary[k + "_count"] = len(summary[k])
    with open(a.out, "w") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")
    for x in summary["failed"]:
        print("FAIL %s: %s" % (x["name"], x["reason"]))
    print("e2e: %d passed, %d failed, %d skipped" % (len(summary["passed"]), len(summary["failed"]) + (1 if not suites else 0),
                                                   len(summary["skipped"])))
    return 0 if suites and not summary["failed"] and summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
