# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# nlproxy installed in the cluster of tests/cluster/cluster.sh as users
# install it: `kubectl apply -k` of an overlay of packaging/kubernetes.
# Sourced, not run, after cluster.sh:
#
#   nlproxy_deploy IMAGE      # apply -k; Ready (readiness probe) on every node
#   nlproxy_pod NODE          # the name of the nlproxy pod on NODE
#   nlproxy_pod_pid NODE      # the host PID of its nlproxy process
#   nlproxy_logs DEST         # every nlproxy pod's log, and each node's ruleset
#   nlproxy_undeploy          # kubectl delete -k
#
# The overlay (written into $CLUSTER_DIR/overlay) changes only what
# docs/deploy.md, "Fill in the cluster's values", tells a user to change and
# nothing else:
#   - the image (kustomize images: IMAGE);
#   - the service CIDR (the DaemonSet's --service-cluster-ip-range=), the
#     API server's APISERVER_SERVICE_CIDR;
#   - the API server's address (`server:` of the ConfigMap's kubeconfig.conf):
#     no packaging can know it, and the `kubernetes` Service cannot stand in
#     for it (its ClusterIP is what nlproxy provides);
#   - the mode (`mode:` of the ConfigMap's config.conf), NLPROXY_MODE, only
#     when a test asks for another one than the packaged nftables;
#   - `conntrack.tcpBeLiberal: true` (NLPROXY_TCP_BE_LIBERAL=false leaves it
#     out), as Kubernetes' own CI configures kube-proxy's nftables mode
#     (kubernetes/test-infra#31591): like that mode (kubernetes#122663),
#     nlproxy does not drop packets conntrack calls INVALID, and the suite's
#     "Conntrack should drop INVALID conntrack entries" spec needs one of the
#     two. Its boom-server pairs an ACK with the last SYN seen from the
#     client's address, not port: when a closing connection's last ACK lands
#     between a new connection's SYN and ACK, the out-of-window packet goes
#     to the old connection with the new one's numbers, conntrack calls it
#     INVALID, it reaches the client un-NATed and the client answers RST
#     (seen once, in a loaded CI run; nlproxy had not synced for a minute).
# The clusterCIDR stays the packaged 10.244.0.0/16: cluster.sh allocates its
# pod CIDRs inside it. Authentication is the pod's service account token,
# authorization the packaged ClusterRole.
#
# Variables: NLPROXY_OVERLAY (the overlay's folder), NLPROXY_READY_TIMEOUT
# (180 s: the DaemonSet Ready on every node), NLPROXY_MODE (nftables or ipvs),
# NLPROXY_TCP_BE_LIBERAL (true).

NLPROXY_READY_TIMEOUT=${NLPROXY_READY_TIMEOUT:-180}
NLPROXY_MODE=${NLPROXY_MODE:-nftables}
NLPROXY_TCP_BE_LIBERAL=${NLPROXY_TCP_BE_LIBERAL:-true}
NLPROXY_OVERLAY=

# nlproxy_overlay IMAGE: the overlay, in $CLUSTER_DIR/overlay.
nlproxy_overlay() {
        NLPROXY_OVERLAY=$CLUSTER_DIR/overlay
        mkdir -p "$NLPROXY_OVERLAY" || return 1
        # The patches are computed from the packaged files: the index of the
        # argument in the DaemonSet, the kubeconfig with only `server:` changed.
        python3 - "$_CLUSTER_ROOT/packaging/kubernetes" "$1" "$APISERVER_SERVICE_CIDR" "$APISERVER_URL" \
                "$NLPROXY_OVERLAY" "$NLPROXY_MODE" "$NLPROXY_TCP_BE_LIBERAL" \
                >"$NLPROXY_OVERLAY/kustomization.yaml" <<'EOF' || return 1
import json, os, re, sys, yaml
pkg, image, cidr, server, here, mode, liberal = sys.argv[1:]
ds = yaml.safe_load(open(pkg + "/daemonset.yaml"))
args = ds["spec"]["template"]["spec"]["containers"][0]["args"]
idx = [i for i, a in enumerate(args) if a.startswith("--service-cluster-ip-range=")]
if len(idx) != 1:
    sys.exit("daemonset.yaml: no single --service-cluster-ip-range= argument")
cm = yaml.safe_load(open(pkg + "/configmap.yaml"))
kc, n = re.subn(r"(?m)^(\s*server:\s*).*$", lambda m: m.group(1) + server, cm["data"]["kubeconfig.conf"])
if n != 1:
    sys.exit("configmap.yaml: no single server: line in kubeconfig.conf")
# The mode as a user sets it: the ConfigMap's KubeProxyConfiguration.
conf, n = re.subn(r"(?m)^mode:\s*\S+\s*$", "mode: " + mode, cm["data"]["config.conf"])
if n != 1:
    sys.exit("configmap.yaml: no single mode: line in config.conf")
if liberal == "true":
    conf, n = re.subn(r"(?m)^conntrack:\n(\s+)", lambda m: m.group(0) + "tcpBeLiberal: true\n" + m.group(1), conf)
    if n != 1:
        sys.exit("configmap.yaml: no single conntrack: block in config.conf")
name, _, tag = image.rpartition(":")
if not name or "/" in tag:
    name, tag = image, "latest"
k = {
    "apiVersion": "kustomize.config.k8s.io/v1beta1",
    "kind": "Kustomization",
    # kustomize takes no absolute path for a base.
    "resources": [os.path.relpath(pkg, here)],
    "images": [{"name": "nlproxy", "newName": name, "newTag": tag}],
    "patches": [
        {"target": {"kind": "DaemonSet", "name": "nlproxy"},
         "patch": json.dumps([{"op": "replace", "path": "/spec/template/spec/containers/0/args/%d" % idx[0],
                               "value": "--service-cluster-ip-range=" + cidr}])},
        {"target": {"kind": "ConfigMap", "name": "nlproxy"},
         "patch": json.dumps([{"op": "replace", "path": "/data/kubeconfig.conf", "value": kc},
                              {"op": "replace", "path": "/data/config.conf", "value": conf}])},
    ],
}
print("# Generated by tests/cluster/deploy.sh: the image, the service CIDR, the API server.")
print(yaml.safe_dump(k, sort_keys=False))
EOF
}

# nlproxy_deploy IMAGE: installed, and Ready on every node through its
# readiness probe (nlproxy's /healthz: its first sync done).
nlproxy_deploy() {
        local t0=$SECONDS
        nlproxy_overlay "$1" || { _cluster_log "nlproxy overlay"; return 1; }
        kubectl_admin apply -k "$NLPROXY_OVERLAY" >>"$CLUSTER_DIR/logs/kubectl.log" 2>&1 ||
                { _cluster_log "kubectl apply -k: $(tail -3 "$CLUSTER_DIR/logs/kubectl.log")"; return 1; }
        nlproxy_wait_ready || return 1
        _cluster_log "nlproxy Ready on $CLUSTER_NODES node(s) in $((SECONDS - t0)) s"
}

# nlproxy_wait_ready: the DaemonSet rolled out, every pod Ready.
nlproxy_wait_ready() {
        if ! kubectl_admin -n kube-system rollout status daemonset/nlproxy --timeout "${NLPROXY_READY_TIMEOUT}s" \
                >>"$CLUSTER_DIR/logs/kubectl.log" 2>&1; then
                _cluster_log "nlproxy not Ready in $NLPROXY_READY_TIMEOUT s:"
                kubectl_admin -n kube-system get pods -l app.kubernetes.io/name=nlproxy -o wide >&2
                kubectl_admin -n kube-system describe pods -l app.kubernetes.io/name=nlproxy 2>&1 | tail -25 >&2
                return 1
        fi
        kubectl_admin -n kube-system wait --for=condition=Ready pod -l app.kubernetes.io/name=nlproxy --timeout 60s \
                >>"$CLUSTER_DIR/logs/kubectl.log" 2>&1
}

nlproxy_pod() {
        kubectl_admin -n kube-system get pods -l app.kubernetes.io/name=nlproxy \
                --field-selector "spec.nodeName=$1" -o jsonpath='{.items[0].metadata.name}'
}

# nlproxy_pod_pid NODE_INDEX: the host PID of nlproxy in its pod on that
# node (for a kill -9 from outside): the process of that node whose
# executable is /usr/sbin/nlproxy inside its container.
nlproxy_pod_pid() {
        local i=$1 cid
        cid=$(kubectl_admin -n kube-system get pod "$(nlproxy_pod "${NODE_NAME[$i]}")" \
                -o jsonpath='{.status.containerStatuses[0].containerID}') || return 1
        node_ctr "$i" tasks ls 2>/dev/null | awk -v c="${cid#containerd://}" '$1 == c {print $2}'
}

# nlproxy_logs DEST: each nlproxy pod's log (and the previous container's),
# and each node's nftables ruleset.
nlproxy_logs() {
        local p i
        mkdir -p "$1" || return 1
        for p in $(kubectl_admin -n kube-system get pods -l app.kubernetes.io/name=nlproxy -o name 2>/dev/null); do
                kubectl_admin -n kube-system logs "$p" >"$1/${p#pod/}.log" 2>&1
                kubectl_admin -n kube-system logs --previous "$p" >"$1/${p#pod/}.previous.log" 2>/dev/null ||
                        rm -f "$1/${p#pod/}.previous.log"
        done
        for ((i = 1; i <= CLUSTER_NODES; i++)); do
                [ -n "${CONTAINERD_PID[$i]:-}" ] && node_exec "$i" nft list ruleset >"$1/${NODE_NAME[$i]}.nft" 2>&1
        done
        return 0
}

nlproxy_undeploy() {
        [ -n "$NLPROXY_OVERLAY" ] || return 0
        kubectl_admin delete -k "$NLPROXY_OVERLAY" --wait=true --timeout 60s >>"$CLUSTER_DIR/logs/kubectl.log" 2>&1
}
