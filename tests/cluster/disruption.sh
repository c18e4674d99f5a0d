#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# make e2e-disruption: what the e2e suite does not check, in the real
# cluster of tests/cluster/cluster.sh with nlproxy installed by its
# DaemonSet (deploy.sh). A client pod connects to a ClusterIP Service (two
# agnhost netexec backends) in a bounded loop while each disruption happens
# (tests/cluster/workload.sh: the loop runs in the pod, driven through the
# node's containerd, so it keeps going while the API server or the kubelet
# is away), and every failed request is counted:
#
#   rolling-update  the DaemonSet rolled to a new image name (`kubectl apply
#                   -k` of the overlay with it): no request fails, the new
#                   pod is Ready, a Service created afterwards works
#   kill-9          nlproxy's process killed with SIGKILL by its PID (found
#                   through this node's containerd, proven ours by its cgroup):
#                   no request fails (the rules stay in the kernel), the
#                   container restarts and is Ready, a new Service works
#   apiserver       kube-apiserver stopped and started again: no request
#                   fails, nlproxy is not restarted, a Service created after
#                   the restart works (its watch resumed)
#   kubelet         the node's kubelet stopped and started again: no request
#                   fails, no container restarts, a new Service works
#   down            nlproxy taken off the node (a nodeSelector no node has),
#                   a Service created meanwhile does not work yet while the
#                   old one does; nlproxy back: the new Service works
#
# Each check prints one line: "disruption: PASS|FAIL NAME: tried=N failed=N
# ..." with its times (s). The script exits 1 when a check failed or the
# teardown left something behind. Root only.
#
# Knobs (environment): DISRUPT_CHECKS (the checks run, in this order by
# default: rolling-update kill-9 apiserver kubelet down), DISRUPT_OUT
# (build/e2e-disruption: results.txt, the checks' lines for
# tests/cluster/results.py; logs/ of a failed run, or with E2E_KEEP_LOGS=1),
# DISRUPT_TIMEOUT (120 s: each wait for convergence), CLIENT_INTERVAL (0.2
# s between requests), CLIENT_MAX, CLIENT_MAX_SECONDS (the loop's bounds),
# KUBE_BIN_DIR as e2e.sh.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD

DISRUPT_CHECKS=${DISRUPT_CHECKS:-rolling-update kill-9 apiserver kubelet down}
DISRUPT_OUT=${DISRUPT_OUT:-build/e2e-disruption}
DISRUPT_TIMEOUT=${DISRUPT_TIMEOUT:-120}
case $DISRUPT_OUT in /*) ;; *) DISRUPT_OUT=$ROOT/$DISRUPT_OUT ;; esac
NS=nlproxy-disruption

. tests/cluster/cluster.sh
. tests/cluster/deploy.sh
. tests/cluster/images.sh
. tests/cluster/workload.sh

CHECKS_NAME=disruption
CHECKS_OUT=$DISRUPT_OUT
. tests/cluster/checks.sh

cluster_node_prereqs || die "$CLUSTER_MISSING"
[ -x build/nlproxy ] || die "build/nlproxy not built (make all)"
checks_start

nlproxy_restarts() {
        kubectl_admin -n kube-system get pods -l app.kubernetes.io/name=nlproxy \
                -o jsonpath='{range .items[*]}{.status.containerStatuses[0].restartCount}{"\n"}{end}' | head -1
}

# restarts: every container restart in the test namespace and nlproxy's, one number.
restarts() {
        kubectl_admin get pods -n "$NS" -o jsonpath='{range .items[*]}{.status.containerStatuses[0].restartCount}{"\n"}{end}' |
                awk -v n="$(nlproxy_restarts)" '{s += $1} END {print s + n}'
}

# new_service NAME: a Service made now; NEW_URL its URL, and how long until
# the client reaches it in NEW_WAITED ("-" when it never did).
new_service() {
        local ip
        ip=$(workload_service "$NS" "$1") && [ -n "$ip" ] || { NEW_WAITED=-; return 1; }
        NEW_URL=http://$ip/hostname
        if client_wait_ok "$NS" "$NEW_URL" "$DISRUPT_TIMEOUT"; then
                NEW_WAITED=$CLIENT_WAITED
        else
                NEW_WAITED=-
                return 1
        fi
}

# loop_numbers: the loop's figures for a result line.
loop_numbers() { echo "tried=$CLIENT_TRIED failed=$CLIENT_FAILED backends=$CLIENT_BACKENDS"; }

# A request failed, or one backend never answered: not a pass.
loop_ok() { [ "$CLIENT_TRIED" -gt 0 ] && [ "$CLIENT_FAILED" = 0 ] && [ "$CLIENT_BACKENDS" = 2 ]; }

check_rolling_update() {
        local ok=1 t0 conv=- before image
        before=$(nlproxy_pod "${NODE_NAME[1]}")
        client_loop_start "$NS" "$URL" rolling || { result rolling-update 1 "client loop did not start"; return; }
        t0=$(date +%s%N)
        if nlproxy_deploy "$IMAGE_NLPROXY_ALT"; then
                conv=$(_secs_since "$t0")
                ok=0
        fi
        client_loop_stop "$NS" rolling || ok=1
        loop_ok || ok=1
        image=$(kubectl_admin -n kube-system get pod "$(nlproxy_pod "${NODE_NAME[1]}")" -o jsonpath='{.spec.containers[0].image}')
        [ "$(nlproxy_pod "${NODE_NAME[1]}")" != "$before" ] && [ "$image" = "$IMAGE_NLPROXY_ALT" ] || ok=1
        new_service after-rolling || ok=1
        result rolling-update "$ok" "$(loop_numbers); rollout to $image Ready in $conv s; new Service reached in $NEW_WAITED s"
}

check_kill_9() {
        local ok=0 pid exe conv=- r0 t0 i r up netprog
        pid=$(nlproxy_pod_pid 1)
        [ -n "$pid" ] || { result kill-9 1 "no nlproxy process found through containerd"; return; }
        # Proven ours before the kill: in this node's cgroup root, the
        # container's nlproxy binary.
        exe=$(readlink "/proc/$pid/exe")
        if ! grep -q ":/${NODE_NAME[1]}/" "/proc/$pid/cgroup" || [ "${exe##*/}" != nlproxy ]; then
                result kill-9 1 "PID $pid ($exe) is not this node's nlproxy"
                return
        fi
        r0=$(nlproxy_restarts)
        # The workload's slices older than the new process will be when its
        # latencies are read (below): otherwise the check proves nothing.
        while [ $((SECONDS - T_WORKLOAD)) -lt 20 ]; do sleep 1; done
        client_loop_start "$NS" "$URL" kill9 || { result kill-9 1 "client loop did not start"; return; }
        t0=$(date +%s%N)
        kill -KILL "$pid"
        for ((i = 0; i < DISRUPT_TIMEOUT * 5; i++)); do
                r=$(nlproxy_restarts)
                if [ -n "$r" ] && [ "$r" -gt "$r0" ] &&
                        [ "$(kubectl_admin -n kube-system get pod "$(nlproxy_pod "${NODE_NAME[1]}")" \
                                -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]; then
                        conv=$(_secs_since "$t0")
                        break
                fi
                sleep 0.2
        done
        [ "$conv" != - ] || ok=1
        client_loop_stop "$NS" kill9 || ok=1
        loop_ok || ok=1
        new_service after-kill || ok=1
        # The new process's network programming latencies: none longer
        # than it has lived (kube-proxy ignores trigger times from before
        # its start; the workload's slices, listed at its start, are older
        # than that). Counted from the buckets: those above the first
        # bound past its age.
        up=$(_secs_since "$t0")
        netprog=$(node_exec 1 curl -sf -m 5 http://127.0.0.1:10249/metrics | awk -v up="$up" '
                $1 ~ /^kubeproxy_network_programming_duration_seconds_bucket/ {
                        le = $1; sub(/.*le="/, "", le); sub(/".*/, "", le)
                        if (le != "+Inf" && le + 0 >= up + 0 && !seen) { seen = 1; within = $2 } }
                $1 == "kubeproxy_network_programming_duration_seconds_count" { c = $2 }
                END { if (!seen) within = c; if (c != "") printf "%d observations, %d longer than %s s", c, c - within, up }')
        [[ $netprog == *", 0 longer than"* ]] || ok=1
        result kill-9 "$ok" "$(loop_numbers); PID $pid killed, restarted and Ready in $conv s; new Service reached in $NEW_WAITED s; latencies of the new process: ${netprog:-none scraped}"
}

check_apiserver() {
        local ok=0 r0 t0 down
        r0=$(restarts)
        client_loop_start "$NS" "$URL" apiserver || { result apiserver 1 "client loop did not start"; return; }
        t0=$(date +%s%N)
        apiserver_stop
        # Away long enough for every watch to break and retry.
        sleep 5
        if apiserver_start; then
                _cluster_state pid "$APISERVER_PID $(readlink -f "$K8S_APISERVER")"
        else
                ok=1
        fi
        down=$(_secs_since "$t0")
        new_service after-apiserver || ok=1
        client_loop_stop "$NS" apiserver || ok=1
        loop_ok || ok=1
        [ "$(restarts)" = "$r0" ] || ok=1
        result apiserver "$ok" "$(loop_numbers); API away $down s; restarts $r0 -> $(restarts); new Service reached in $NEW_WAITED s after"
}

check_kubelet() {
        local ok=0 r0 t0 down
        r0=$(restarts)
        client_loop_start "$NS" "$URL" kubelet || { result kubelet 1 "client loop did not start"; return; }
        t0=$(date +%s%N)
        kubelet_stop 1
        sleep 5
        kubelet_start 1 || ok=1
        down=$(_secs_since "$t0")
        kubectl_admin wait --for=condition=Ready "node/${NODE_NAME[1]}" --timeout "${DISRUPT_TIMEOUT}s" >/dev/null || ok=1
        new_service after-kubelet || ok=1
        client_loop_stop "$NS" kubelet || ok=1
        loop_ok || ok=1
        [ "$(restarts)" = "$r0" ] || ok=1
        result kubelet "$ok" "$(loop_numbers); kubelet away $down s; restarts $r0 -> $(restarts); new Service reached in $NEW_WAITED s after"
}

check_down() {
        local ok=0 ip t0 early conv=- late
        client_loop_start "$NS" "$URL" down || { result down 1 "client loop did not start"; return; }
        # The DaemonSet's pod goes from this node: no node has the label.
        kubectl_admin -n kube-system patch daemonset nlproxy --type merge \
                -p '{"spec":{"template":{"spec":{"nodeSelector":{"nlproxy-disruption/hold":"true"}}}}}' \
                >>"$CLUSTER_DIR/logs/kubectl.log" 2>&1 || ok=1
        kubectl_admin -n kube-system wait --for=delete pod -l app.kubernetes.io/name=nlproxy \
                --timeout "${DISRUPT_TIMEOUT}s" >>"$CLUSTER_DIR/logs/kubectl.log" 2>&1 || ok=1
        ip=$(workload_service "$NS" while-down) || ok=1
        late=http://$ip/hostname
        # Nothing else programs Services: the new one does not answer yet
        # (the check would prove nothing otherwise). EndpointSlice first.
        sleep 3
        if [[ $(client_get "$NS" "$late" 2>/dev/null) == backend-* ]]; then
                early="reached while nlproxy was away (something else proxies?)"
                ok=1
        else
                early="not reached while nlproxy was away (expected)"
        fi
        t0=$(date +%s%N)
        kubectl_admin -n kube-system patch daemonset nlproxy --type json \
                -p '[{"op":"remove","path":"/spec/template/spec/nodeSelector/nlproxy-disruption~1hold"}]' \
                >>"$CLUSTER_DIR/logs/kubectl.log" 2>&1 || ok=1
        if client_wait_ok "$NS" "$late" "$DISRUPT_TIMEOUT"; then
                conv=$(_secs_since "$t0")
        else
                ok=1
        fi
        nlproxy_wait_ready || ok=1
        client_loop_stop "$NS" down || ok=1
        loop_ok || ok=1
        result down "$ok" "$(loop_numbers); Service made while down $early; reached $conv s after nlproxy was let back"
}

t=$SECONDS
images_build pause agnhost nlproxy || die "images_build failed"
log "images built in $((SECONDS - t)) s; nlproxy image $IMAGE_NLPROXY"
ALT_TAG=${IMAGE_NLPROXY#*:}-rolled
_import() { images_import "$2" && images_nlproxy_tag "$2" "$ALT_TAG"; }
CLUSTER_IMAGES_HOOK=_import
TMP=$(mktemp -d /tmp/nlproxy-disruption.XXXXXX)
cluster_up "$TMP" 1 || die "the cluster did not come up"
nlproxy_deploy "$IMAGE_NLPROXY" || die "nlproxy did not become Ready"
workload_up "$NS" || die "the workload did not come up"
# The client container's ID, once: the loops reach it through containerd
# even while the API server is away.
_client_cid "$NS" || die "no client container"
T_WORKLOAD=$SECONDS
CIP=$(kubectl_admin -n "$NS" get service backend -o jsonpath='{.spec.clusterIP}')
URL=http://$CIP/hostname
client_wait_ok "$NS" "$URL" 60 || die "the client does not reach $URL before any disruption"
log "client reaches $URL; checks: $DISRUPT_CHECKS"

for c in $DISRUPT_CHECKS; do
        case $c in
        rolling-update) check_rolling_update ;;
        kill-9) check_kill_9 ;;
        apiserver) check_apiserver ;;
        kubelet) check_kubelet ;;
        down) check_down ;;
        *) result "$c" 1 "no such check (rolling-update kill-9 apiserver kubelet down)" ;;
        esac
done
checks_end
