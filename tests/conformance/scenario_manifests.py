#!/usr/bin/env python3
"""Turn the shared conformance scenarios into nlproxy inputs.

For every scenario step and variant, writes OUT/<case>/objects.json (a v1 List
with the Services, EndpointSlices and the node's Node object) and
OUT/<case>/flags (one nlproxy flag per line, from the node context), plus
OUT/<case>/flows.json (the flows to check). Prints the case names.
"""
import json
import os
import sys


def node_flags(nc):
    flags = ["--hostname-override", nc["nodeName"], "--node-ip", nc["primaryNodeIP"]]
    mode = nc.get("localTrafficDetector")
    if nc.get("clusterCIDR") and mode:
        flags += ["--cluster-cidr", nc["clusterCIDR"]]
    # "None" (the shared scenarios): no detector, i.e. no --cluster-cidr
    if mode in ("NodeCIDR", "BridgeInterface", "InterfaceNamePrefix"):
        flags += ["--detect-local-mode", mode]
    if nc.get("podBridgeInterface"):
        flags += ["--pod-bridge-interface", nc["podBridgeInterface"]]
    if nc.get("podInterfaceNamePrefix"):
        flags += ["--pod-interface-name-prefix", nc["podInterfaceNamePrefix"]]
    if nc.get("serviceCIDRs"):
        flags += ["--service-cluster-ip-range", ",".join(nc["serviceCIDRs"])]
    if nc.get("nodePortAddresses"):
        flags += ["--nodeport-addresses", ",".join(nc["nodePortAddresses"])]
    if nc.get("masqueradeAll"):
        flags += ["--masquerade-all"]
    return flags


def node_object(nc):
    labels = dict(nc.get("nodeLabels") or {})
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": nc["nodeName"], "labels": labels},
        "status": {"addresses": [{"type": "InternalIP", "address": nc["primaryNodeIP"]}]},
    }


def cases(doc):
    for sc in doc["scenarios"]:
        steps = sc["steps"]
        for i, st in enumerate(steps):
            yield f"{sc['id']}-step{i + 1}", sc["nodeContext"], st["objects"], st["flows"]
        for j, v in enumerate(sc.get("variants") or []):
            objs = v.get("objects") or steps[0]["objects"]
            yield f"{sc['id']}-variant{j + 1}", v.get("nodeContext") or sc["nodeContext"], objs, v["flows"]


def chains(doc):
    """Group the cases that share one topology: a scenario's steps, in order,
    form one chain (each step's objects replace the previous state); each
    variant is a chain of its own.  Yields (scenario_id, [(case, nc, objs,
    flows), ...]) in file order; case names are those of cases()."""
    by_id = {}
    order = []
    for name, nc, objs, flows in cases(doc):
        sid, _, label = name.rpartition("-")
        key = (sid, "steps" if label.startswith("step") else label)
        if key not in by_id:
            by_id[key] = []
            order.append(key)
        by_id[key].append((name, nc, objs, flows))
    for key in order:
        yield key[0], by_id[key]


def write_case(d, nc, objs, flows):
    """Write objects.json, flags and flows.json of one case into directory d."""
    os.makedirs(d, exist_ok=True)
    items = list(objs.get("services", [])) + list(objs.get("endpointSlices", [])) + list(objs.get("nodes", []))
    # the scenario's own Node object of this node (its podCIDRs for NodeCIDR
    # detection) replaces the one made from the node context
    if not any(n.get("metadata", {}).get("name") == nc["nodeName"] for n in objs.get("nodes", [])):
        items.append(node_object(nc))
    with open(os.path.join(d, "objects.json"), "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List", "items": items}, f, indent=1, sort_keys=True)
    with open(os.path.join(d, "flags"), "w") as f:
        f.write("\n".join(node_flags(nc)) + "\n")
    with open(os.path.join(d, "flows.json"), "w") as f:
        json.dump({"nodeContext": nc, "flows": flows}, f, indent=1)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: scenario_manifests.py SCENARIOS.json OUTDIR")
    with open(sys.argv[1]) as f:
        doc = json.load(f)
    out = sys.argv[2]
    for name, nc, objs, flows in cases(doc):
        write_case(os.path.join(out, name), nc, objs, flows)
        print(name)


if __name__ == "__main__":
    main()
