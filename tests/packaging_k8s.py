#!/usr/bin/env python3
"""Checks packaging/kubernetes: every YAML parses, the objects carry what
issue 6 asks of them (RBAC limited to what the proxy reads, a DaemonSet on
the host network, node-critical, tolerating every taint, NET_ADMIN and not
privileged, probes on /livez and /healthz, requests, rolling update; a
privileged init container running nlproxy --init-only on the same
configuration, for the sysctls), the
pieces refer to each other consistently, and nlproxy itself accepts the
ConfigMap's config file and the DaemonSet's arguments.

usage: tests/packaging_k8s.py [NLPROXY]   (run from the project root)
Prints one line per check and "N passed, N failed"; exits 1 on a failure.
"""
import os
import subprocess
import sys
import tempfile

import yaml

DIR = "packaging/kubernetes"
NLPROXY = sys.argv[1] if len(sys.argv) > 1 else "build/nlproxy"
MANIFESTS = "examples/redis"

# The KubeProxyConfiguration fields nlproxy reads (proxy/options.c, cfg_root).
# nlproxy ignores other fields, so a field outside this set would silently do
# nothing: the ConfigMap may use only these.
CONFIG_FIELDS = {
    "apiVersion", "kind", "mode", "clusterCIDR", "detectLocal", "detectLocalMode", "hostnameOverride",
    "healthzBindAddress", "metricsBindAddress", "nodePortAddresses", "clientConnection", "syncPeriod",
    "minSyncPeriod", "ipvs", "nftables", "iptables", "conntrack", "oomScoreAdj", "featureGates", "logging",
    "bindAddressHardFail", "linux",
}
CONFIG_SUBFIELDS = {
    "clientConnection": {"kubeconfig"},
    "detectLocal": {"clusterCIDRs", "bridgeInterface", "interfaceNamePrefix"},
    "ipvs": {"syncPeriod", "minSyncPeriod", "scheduler"},
    "nftables": {"syncPeriod", "minSyncPeriod", "masqueradeAll"},
    "iptables": {"masqueradeAll"},
    "conntrack": {"maxPerCore", "min", "tcpEstablishedTimeout", "tcpCloseWaitTimeout", "tcpBeLiberal", "udpTimeout",
                  "udpStreamTimeout"},
    "logging": {"format", "verbosity"},
    "linux": {"conntrack", "oomScoreAdj"},
}
# Capabilities the DaemonSet may add; NET_ADMIN is required.
ALLOWED_CAPS = {"NET_ADMIN", "NET_RAW", "SYS_MODULE"}

passed = 0
failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok   - {name}")
    else:
        failed += 1
        print(f"FAIL - {name}" + (f": {detail}" if detail else ""))
    return cond


def load_all():
    objs = {}
    files = sorted(f for f in os.listdir(DIR) if f.endswith((".yaml", ".yml")))
    check("packaging/kubernetes has YAML files", files, DIR)
    for f in files:
        path = os.path.join(DIR, f)
        try:
            with open(path) as fh:
                docs = [d for d in yaml.safe_load_all(fh) if d is not None]
        except yaml.YAMLError as e:
            check(f"{f} parses", False, str(e).replace("\n", " "))
            continue
        check(f"{f} parses ({len(docs)} document(s))", docs)
        for d in docs:
            ok = isinstance(d, dict) and d.get("apiVersion") and d.get("kind")
            if not check(f"{f}: {d.get('kind') if isinstance(d, dict) else d!r} has apiVersion and kind", ok):
                continue
            objs.setdefault(d["kind"], []).append((f, d))
    return files, objs


def one(objs, kind):
    lst = objs.get(kind, [])
    check(f"exactly one {kind}", len(lst) == 1, f"found {len(lst)}")
    return lst[0][1] if lst else {}


def verbs_for(role, group, resource):
    v = set()
    for r in role.get("rules") or []:
        if group in (r.get("apiGroups") or []) and resource in (r.get("resources") or []):
            v |= set(r.get("verbs") or [])
    return v


def check_rbac(objs):
    sa = one(objs, "ServiceAccount")
    role = one(objs, "ClusterRole")
    binding = one(objs, "ClusterRoleBinding")
    for group, res, want in [("", "services", {"list", "watch"}),
                             ("discovery.k8s.io", "endpointslices", {"list", "watch"}),
                             ("", "nodes", {"get", "list", "watch"}),
                             ("", "events", {"create", "patch"})]:
        got = verbs_for(role, group, res)
        check(f"ClusterRole: {res}: {', '.join(sorted(want))}", got == want, f"verbs {sorted(got)}")
    everything = set()
    wild = []
    for r in role.get("rules") or []:
        everything |= set(r.get("resources") or [])
        wild += [r for f in ("apiGroups", "resources", "verbs") if "*" in (r.get(f) or [])]
    check("ClusterRole: no wildcard", not wild, str(wild))
    check("ClusterRole: nothing beyond services, endpointslices, nodes, events",
          everything <= {"services", "endpointslices", "nodes", "events"}, str(sorted(everything)))
    ref = binding.get("roleRef") or {}
    check("ClusterRoleBinding refers to the ClusterRole",
          ref.get("kind") == "ClusterRole" and ref.get("name") == role.get("metadata", {}).get("name"), str(ref))
    subj = binding.get("subjects") or [{}]
    check("ClusterRoleBinding binds the ServiceAccount",
          any(s.get("kind") == "ServiceAccount" and s.get("name") == sa.get("metadata", {}).get("name")
              and s.get("namespace") == sa.get("metadata", {}).get("namespace") for s in subj), str(subj))
    return sa


def probe_ok(probe, path, port):
    g = (probe or {}).get("httpGet") or {}
    return g.get("path") == path and g.get("port") == port


def check_daemonset(ds, sa, cm):
    spec = ds.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or {}
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    sel = (spec.get("selector") or {}).get("matchLabels") or {}
    check("DaemonSet: selector matches the pod labels", sel and all(labels.get(k) == v for k, v in sel.items()))
    check("DaemonSet: updateStrategy RollingUpdate", (spec.get("updateStrategy") or {}).get("type") == "RollingUpdate")
    check("DaemonSet: hostNetwork", pod.get("hostNetwork") is True)
    check("DaemonSet: priorityClassName system-node-critical", pod.get("priorityClassName") == "system-node-critical")
    check("DaemonSet: tolerates every taint (operator Exists, no key)",
          any(t.get("operator") == "Exists" and not t.get("key") and not t.get("effect")
              for t in pod.get("tolerations") or []), str(pod.get("tolerations")))
    check("DaemonSet: runs as the ServiceAccount",
          pod.get("serviceAccountName") == sa.get("metadata", {}).get("name"))
    ctrs = pod.get("containers") or []
    if not check("DaemonSet: one container", len(ctrs) == 1, f"{len(ctrs)}"):
        return None
    c = ctrs[0]
    sc = c.get("securityContext") or {}
    caps = sc.get("capabilities") or {}
    add = set(caps.get("add") or [])
    check("container: not privileged", sc.get("privileged") in (None, False))
    check("container: no privilege escalation", sc.get("allowPrivilegeEscalation") is False)
    check("container: capabilities add NET_ADMIN", "NET_ADMIN" in add, str(sorted(add)))
    check("container: no capability beyond NET_ADMIN, NET_RAW, SYS_MODULE", add <= ALLOWED_CAPS, str(sorted(add)))
    check("container: capabilities drop ALL", "ALL" in (caps.get("drop") or []))
    check("container: livenessProbe GET /livez on 10256", probe_ok(c.get("livenessProbe"), "/livez", 10256))
    check("container: readinessProbe GET /healthz on 10256", probe_ok(c.get("readinessProbe"), "/healthz", 10256))
    req = (c.get("resources") or {}).get("requests") or {}
    check("container: resource requests for cpu and memory", req.get("cpu") and req.get("memory"), str(req))
    mounts = {m.get("name"): m for m in c.get("volumeMounts") or []}
    vols = {v.get("name"): v for v in pod.get("volumes") or []}
    # nlproxy reads no file of the node; a hostPath that the node lacks
    # (/lib/modules where every module is built in) keeps the pod from
    # starting, as the real cluster of tests/cluster showed.
    hp = [n for n, v in vols.items() if v.get("hostPath")]
    check("pod: no hostPath volume", not hp, str(hp))
    cmv = [n for n, v in vols.items() if (v.get("configMap") or {}).get("name") == cm.get("metadata", {}).get("name")]
    check("pod: the ConfigMap is a volume", cmv)
    cm_dir = mounts.get(cmv[0], {}).get("mountPath") if cmv else None
    check("container: the ConfigMap is mounted read-only", cm_dir and mounts[cmv[0]].get("readOnly") is True)
    args = list(c.get("command") or [])[1:] + list(c.get("args") or [])
    cfg = [a.split("=", 1)[1] for a in args if a.startswith("--config=")]
    data = cm.get("data") or {}
    check("container: --config is the ConfigMap's config.conf",
          cfg and cm_dir and cfg[0] == os.path.join(cm_dir, "config.conf") and "config.conf" in data, str(cfg))
    # The init container: kube-proxy's --init-only with the same configuration,
    # privileged (a writable /proc/sys and /sys), the only privileged part.
    inits = pod.get("initContainers") or []
    check("DaemonSet: one init container", len(inits) == 1, f"{len(inits)}")
    if inits:
        ic = inits[0]
        iargs = list(ic.get("command") or [])[1:] + list(ic.get("args") or [])
        imounts = {m.get("name"): m for m in ic.get("volumeMounts") or []}
        check("init container: runs nlproxy --init-only",
              (ic.get("command") or [None])[0] == (c.get("command") or [None])[0] and "--init-only" in iargs,
              str(iargs))
        check("init container: the proxy's image", ic.get("image") == c.get("image"), str(ic.get("image")))
        check("init container: the proxy's --config",
              cfg and [a for a in iargs if a.startswith("--config=")] == ["--config=" + cfg[0]], str(iargs))
        check("init container: the ConfigMap mounted as in the proxy container",
              cmv and imounts.get(cmv[0], {}).get("mountPath") == cm_dir, str(imounts))
        check("init container: privileged (writes /proc/sys and /sys)",
              (ic.get("securityContext") or {}).get("privileged") is True)
    env = {e.get("name"): e for e in c.get("env") or []}
    check("container: --hostname-override from the downward API spec.nodeName",
          "--hostname-override=$(NODE_NAME)" in args and
          ((env.get("NODE_NAME") or {}).get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName")
    return c, cm_dir, (inits[0] if inits else None)


def check_config(cm, cm_dir):
    data = cm.get("data") or {}
    try:
        cfg = yaml.safe_load(data.get("config.conf", ""))
    except yaml.YAMLError as e:
        check("ConfigMap: config.conf parses", False, str(e))
        return None
    check("ConfigMap: config.conf is a KubeProxyConfiguration",
          isinstance(cfg, dict) and cfg.get("kind") == "KubeProxyConfiguration" and
          str(cfg.get("apiVersion", "")).startswith("kubeproxy.config.k8s.io/"))
    if not isinstance(cfg, dict):
        return None
    extra = set(cfg) - CONFIG_FIELDS
    check("ConfigMap: config.conf uses only fields nlproxy reads", not extra, str(sorted(extra)))
    for k, sub in CONFIG_SUBFIELDS.items():
        if isinstance(cfg.get(k), dict):
            extra = set(cfg[k]) - sub
            check(f"ConfigMap: config.conf {k} uses only fields nlproxy reads", not extra, str(sorted(extra)))
    check("ConfigMap: healthz on port 10256 (the probes' port)",
          str(cfg.get("healthzBindAddress", "0.0.0.0:10256")).endswith(":10256"))
    kc = (cfg.get("clientConnection") or {}).get("kubeconfig")
    check("ConfigMap: clientConnection.kubeconfig is the mounted kubeconfig.conf",
          kc and cm_dir and kc == os.path.join(cm_dir, "kubeconfig.conf") and "kubeconfig.conf" in data, str(kc))
    try:
        kcfg = yaml.safe_load(data.get("kubeconfig.conf", ""))
    except yaml.YAMLError as e:
        check("ConfigMap: kubeconfig.conf parses", False, str(e))
        return data["config.conf"]
    users = [u.get("user") or {} for u in (kcfg or {}).get("users") or []]
    check("ConfigMap: kubeconfig.conf uses the service account token",
          any(u.get("tokenFile") == "/var/run/secrets/kubernetes.io/serviceaccount/token" for u in users))
    return data["config.conf"]


def check_kustomization(files, c):
    k = {}
    try:
        with open(os.path.join(DIR, "kustomization.yaml")) as fh:
            k = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError) as e:
        check("kustomization.yaml loads", False, str(e))
        return
    res = k.get("resources") or []
    others = [f for f in files if f != "kustomization.yaml"]
    check("kustomization: lists every other YAML file", sorted(res) == sorted(others), f"{res} vs {others}")
    check("kustomization: namespace kube-system", k.get("namespace") == "kube-system")
    if c:
        image = c.get("image", "").split(":")[0]
        check("kustomization: images names the container's image",
              any(i.get("name") == image for i in k.get("images") or []), image)


def run_nlproxy(name, args):
    try:
        r = subprocess.run([NLPROXY] + args, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return check(name, False, str(e))
    return check(name, r.returncode == 0 and "10.96.0.10" in r.stdout,
                 f"exit {r.returncode}: {r.stderr.strip()[-400:]}")


def main():
    files, objs = load_all()
    sa = check_rbac(objs)
    ds = one(objs, "DaemonSet")
    cm = one(objs, "ConfigMap")
    res = check_daemonset(ds, sa, cm)
    c, cm_dir, ic = res if res else (None, None, None)
    conf = check_config(cm, cm_dir)
    check_kustomization(files, c)
    if conf is not None:
        with tempfile.TemporaryDirectory(prefix="nlproxy-k8s.") as tmp:
            path = os.path.join(tmp, "config.conf")
            with open(path, "w") as fh:
                fh.write(conf)
            run_nlproxy("nlproxy accepts the ConfigMap's config.conf (--dry-run --once)",
                        ["--config", path, "--dry-run", "--once", "--manifests", MANIFESTS])
            if c:
                # The DaemonSet's own arguments, as the kubelet expands them on node-a.
                args = [a.replace("$(NODE_NAME)", "node-a") for a in (c.get("args") or [])]
                args = [("--config=" + path) if a.startswith("--config=") else a for a in args]
                run_nlproxy("nlproxy accepts the DaemonSet's arguments (--dry-run)",
                            args + ["--dry-run", "--manifests", MANIFESTS])
            if ic:
                # --init-only would change this host's sysctls: --help checks the
                # command line (nlproxy parses all of it first) and exits.
                iargs = [("--config=" + path) if a.startswith("--config=") else a for a in (ic.get("args") or [])]
                try:
                    r = subprocess.run([NLPROXY] + iargs + ["--help"], capture_output=True, text=True, timeout=60)
                    check("nlproxy accepts the init container's arguments", r.returncode == 0,
                          f"exit {r.returncode}: {r.stderr.strip()[-400:]}")
                except (OSError, subprocess.TimeoutExpired) as e:
                    check("nlproxy accepts the init container's arguments", False, str(e))
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
