#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# make e2e: Kubernetes' own sig-network e2e specs against nlproxy in a real
# cluster. Brings up the cluster of tests/cluster/cluster.sh (two nodes by
# default: a third of the focus needs a second node), builds the images (tests/cluster/images.sh: pause, agnhost, the
# suite's other images, nlproxy from packaging/docker/Dockerfile) and
# imports them into each node's containerd, installs nlproxy with
# `kubectl apply -k` (tests/cluster/deploy.sh), waits for its DaemonSet to be
# Ready through the readiness probe, runs `e2e.test --provider=local`, and
# tears everything down. Root only.
#
# E2E_MODE=ipvs (make e2e MODE=ipvs): nlproxy in IPVS mode, which this
# machine's kernel lacks. The one node is then the QEMU guest of tests/vm/run
# (Debian's kernel, emulated: cluster.sh's CLUSTER_VM_NODES), the control
# plane stays on the host, the ConfigMap says `mode: ipvs`, and the default
# focus is the Services conformance specs. Before the suite runs, the node's
# IPVS table must hold the `kubernetes` Service: proof that the mode is real.
#
# Knobs (environment): E2E_FOCUS, E2E_SKIP (ginkgo regexps; defaults below),
# E2E_MODE (nftables), E2E_NODES (2; 1 with ipvs), E2E_OUT (build/e2e;
# build/e2e-ipvs with ipvs), E2E_TIMEOUT (ginkgo's, 90m),
# KUBE_BIN_DIR (the Kubernetes binaries: ../shared/kubernetes),
# E2E_KEEP_LOGS=1 (keep the logs of a run that passed too).
#
# Writes into E2E_OUT: e2e.log (the suite's output), junit_01.xml,
# summary.json (nodes, mode, how nlproxy ran and from which image, every
# spec passed/failed/skipped by name, the skips' reasons, timings) and, when
# a spec failed or the run broke, logs/ (control plane, DNS, each node's
# containerd and kubelet, pod logs, nlproxy's logs and each node's
# nftables ruleset). Exits 1 when a spec failed or the cluster did not come
# up; the last line is "e2e: N passed, N failed, N skipped".
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD

E2E_MODE=${E2E_MODE:-nftables}
E2E_SKIP=${E2E_SKIP:-'Serial|Disruptive|Feature|Slow|LoadBalancer|IPv6|DualStack|NetworkPolicy|DNS|Flaky'}
case $E2E_MODE in
nftables)
        E2E_FOCUS=${E2E_FOCUS:-'\[sig-network\] (Services|Conntrack|KubeProxy|Networking|HostPort)'}
        E2E_NODES=${E2E_NODES:-2}
        E2E_OUT=${E2E_OUT:-build/e2e}
        ;;
ipvs)
        E2E_FOCUS=${E2E_FOCUS:-'\[sig-network\] Services.*\[Conformance\]'}
        E2E_NODES=${E2E_NODES:-1}
        E2E_OUT=${E2E_OUT:-build/e2e-ipvs}
        # Every node in a VM; what the Services specs start, and nlproxy.
        CLUSTER_VM_NODES=$(seq -s ' ' 1 "$E2E_NODES")
        IMAGES_WANT=${IMAGES_WANT:-pause agnhost busybox nlproxy}
        # Emulated: a pod starts in tens of seconds, not in one.
        NLPROXY_READY_TIMEOUT=${NLPROXY_READY_TIMEOUT:-900}
        NLPROXY_MODE=ipvs
        ;;
*)
        echo "e2e: E2E_MODE must be nftables or ipvs, not $E2E_MODE" >&2
        echo "e2e: 0 passed, 1 failed"
        exit 1
        ;;
esac
E2E_TIMEOUT=${E2E_TIMEOUT:-90m}
case $E2E_OUT in /*) ;; *) E2E_OUT=$ROOT/$E2E_OUT ;; esac

. tests/cluster/cluster.sh
. tests/cluster/deploy.sh
. tests/cluster/images.sh

log() { echo "e2e: $*" >&2; }
die() {
        log "$*"
        echo "e2e: 0 passed, 1 failed"
        exit 1
}

cluster_node_prereqs || die "$CLUSTER_MISSING"
[ -x build/nlproxy ] || die "build/nlproxy not built (make all)"

TMP=
E2E_PID=
RESULT=broken
T0=$SECONDS
declare -A TIMES
cleanup() {
        local rc=$?
        trap - EXIT INT TERM
        if [ -n "$E2E_PID" ]; then
                kill -TERM "$E2E_PID" 2>/dev/null
                _cluster_wait_gone "$E2E_PID" 10 || kill -KILL "$E2E_PID" 2>/dev/null
        fi
        if [ "$RESULT" != passed ] || [ -n "${E2E_KEEP_LOGS:-}" ]; then
                if [ -n "$CLUSTER_DIR" ]; then
                        nlproxy_logs "$E2E_OUT/logs/nlproxy"
                        cluster_logs "$E2E_OUT/logs"
                        log "logs kept in $E2E_OUT/logs"
                fi
        fi
        local t=$SECONDS
        cluster_down
        # Nothing may stay behind: checked, not assumed.
        left=$(cluster_leftovers)
        TIMES[teardown]=$((SECONDS - t))
        log "teardown in ${TIMES[teardown]} s"
        # The summary is written before the teardown; its time is added after.
        [ -s "$E2E_OUT/summary.json" ] && python3 - "$E2E_OUT/summary.json" "${TIMES[teardown]}" "$((SECONDS - T0))" <<'EOF'
import json, sys
f, td, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = json.load(open(f))
s.setdefault("seconds", {}).update(teardown=td, total=total)
json.dump(s, open(f, "w"), indent=1)
open(f, "a").write("\n")
EOF
        if [ -n "$left" ]; then
                log "left behind after the teardown:"
                sed 's/^/  /' <<<"$left" >&2
                echo "e2e: 0 passed, 1 failed (teardown)"
                rc=1
        elif [ -n "$CLUSTER_RUN_ID" ]; then
                log "teardown: nothing left behind (run $CLUSTER_RUN_ID)"
        fi
        [ -n "$TMP" ] && rm -rf --one-file-system "$TMP"
        exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rm -rf "$E2E_OUT"
mkdir -p "$E2E_OUT" || die "cannot create $E2E_OUT"
E2E_TEST=$(cluster_bin e2e.test) || die "no e2e.test in $K8S_SHARED_DIR"

t=$SECONDS
images_build || die "images_build failed"
TIMES[images]=$((SECONDS - t))
log "images built in ${TIMES[images]} s; nlproxy image $IMAGE_NLPROXY"

_import() { images_import "$2"; }
CLUSTER_IMAGES_HOOK=_import
CLUSTER_VM_IMAGES=
for s in "${IMAGES_BUILT[@]}"; do
        CLUSTER_VM_IMAGES+="${CLUSTER_VM_IMAGES:+ }${IMAGES_ARCHIVE[$s]}"
done
TMP=$(mktemp -d /tmp/nlproxy-e2e.XXXXXX)
t=$SECONDS
cluster_up "$TMP" "$E2E_NODES" || die "the cluster did not come up"
TIMES[cluster]=$((SECONDS - t))

t=$SECONDS
nlproxy_deploy "$IMAGE_NLPROXY" || die "nlproxy did not become Ready"
TIMES[deploy]=$((SECONDS - t))
if [ "$E2E_MODE" = ipvs ]; then
        # The guest dumps its IPVS table every few seconds (vmnode.sh).
        kip=$(kubectl_admin get service kubernetes -o jsonpath='{.spec.clusterIP}')
        for ((i = 0; i < 120; i++)); do
                grep -q "TCP  $kip:443" "${NODE_DIR[1]}/log/ipvs.txt" 2>/dev/null && break
                sleep 1
        done
        grep -q "TCP  $kip:443" "${NODE_DIR[1]}/log/ipvs.txt" 2>/dev/null ||
                die "IPVS mode: no virtual server $kip:443 in the node's IPVS table: $(head -c 600 "${NODE_DIR[1]}/log/ipvs.txt" 2>&1)"
        log "IPVS mode: the node's IPVS table holds $(grep -c '^TCP\|^UDP\|^SCTP' "${NODE_DIR[1]}/log/ipvs.txt") virtual servers"
fi

log "running e2e.test: focus '$E2E_FOCUS', skip '$E2E_SKIP'"
t=$SECONDS
# --provider=local: no cloud; the suite reaches NodePorts at the nodes'
# InternalIPs over the harness's bridge and runs `kubectl exec` with this
# kubectl. No log dump: it would ssh to the nodes; the harness keeps logs.
nice -n "$CLUSTER_NICE" "$E2E_TEST" --provider=local --kubeconfig "$ADMIN_KUBECONFIG" \
        --kubectl-path "$K8S_KUBECTL" --num-nodes "$CLUSTER_NODES" \
        --report-dir "$E2E_OUT" --ginkgo.json-report "$E2E_OUT/report.json" \
        --ginkgo.focus "$E2E_FOCUS" --ginkgo.skip "$E2E_SKIP" --ginkgo.timeout "$E2E_TIMEOUT" \
        --ginkgo.no-color --ginkgo.v --dump-logs-on-failure=false --disable-log-dump \
        --e2e-output-dir "$E2E_OUT" >"$E2E_OUT/e2e.log" 2>&1 &
# In the background: bash runs a trap (SIGTERM, Ctrl-C) only once the
# foreground command is over, and the suite runs for many minutes.
E2E_PID=$!
wait "$E2E_PID"
E2E_RC=$?
E2E_PID=
TIMES[e2e]=$((SECONDS - t))
TIMES[total]=$((SECONDS - T0))

nlproxy_info=$(kubectl_admin -n kube-system get daemonset nlproxy -o json 2>/dev/null)
python3 tests/cluster/summary.py --report "$E2E_OUT/report.json" --out "$E2E_OUT/summary.json" \
        --nodes "$CLUSTER_NODES" --image "$IMAGE_NLPROXY" --focus "$E2E_FOCUS" --skip "$E2E_SKIP" \
        --rc "$E2E_RC" --commit "$(git rev-parse HEAD 2>/dev/null)" \
        --kubernetes "$("$K8S_KUBECTL" version --client -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])' 2>/dev/null)" \
        --overlay "$NLPROXY_OVERLAY/kustomization.yaml" \
        --times "$(for k in "${!TIMES[@]}"; do printf '%s=%s,' "$k" "${TIMES[$k]}"; done)" \
        --mode "$(kubectl_admin -n kube-system get configmap nlproxy -o jsonpath='{.data.config\.conf}' 2>/dev/null |
                sed -n 's/^mode:[[:space:]]*//p')" \
        --daemonset - <<<"$nlproxy_info"
SUMMARY_RC=$?
log "times (s): $(for k in images cluster deploy e2e total; do printf '%s %s  ' "$k" "${TIMES[$k]}"; done)"
[ "$E2E_RC" = 0 ] && [ "$SUMMARY_RC" = 0 ] && RESULT=passed
[ "$RESULT" = passed ]
