#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# make e2e-crossnode: what kube-proxy users most often get wrong between
# nodes, and the e2e suite does not check, in a two-node cluster of
# tests/cluster/cluster.sh with nlproxy installed by its DaemonSet
# (deploy.sh). One agnhost netexec backend ("pinned") runs on node 1 behind
# two Services reached at their NodePort (the Local one is of type
# LoadBalancer, without a load balancer: only that type gets a
# healthCheckNodePort), and an external client (a network namespace of this
# script's own on the harness's node bridge, at an address of this run's
# slot that no node uses) makes the requests:
#
#   etp-local       externalTrafficPolicy: Local: through node 1 (the local
#                   endpoint) the request is answered and the backend sees
#                   the client's own address (netexec /clientip); through
#                   node 2 (no local endpoint, while node 2 proves it knows
#                   the endpoint: the Service's ClusterIP answers from node 2
#                   itself) it is dropped (curl times out: kube-proxy drops,
#                   it does not reject)
#   health-check    the Local Service's healthCheckNodePort: GET / answers
#                   200 with localEndpoints 1 on node 1, 503 with
#                   localEndpoints 0 on node 2
#   etp-cluster     externalTrafficPolicy: Cluster through node 2 (no local
#                   endpoint): answered, and the backend does not see the
#                   client's address (masqueraded; node 2's address is what
#                   kube-proxy's masquerade gives); through node 1 too, as
#                   kube-proxy masquerades all external traffic of such a
#                   Service
#   udp-move        a UDP ClusterIP Service whose only endpoint moves from
#                   node 1 to node 2 (the pod deleted, one made on node 2)
#                   while a client pod on node 1 keeps sending from one
#                   source port (`nc -u -p 12345`, as the suite's Conntrack
#                   specs: the same conntrack entry each time, which never
#                   times out while it is refreshed): the new pod answers
#                   within CROSS_UDP_BOUND seconds of being Ready (the stale
#                   entry flushed) and only it answers afterwards; how long
#                   the switch took is in the line
#
# Each check prints one line: "crossnode: PASS|FAIL NAME: ..." with its
# figures, then "crossnode: N passed, N failed". The script exits 1 when a
# check failed or the teardown left something behind (the cluster's, and the
# client's namespace, link and address). Root only.
#
# Knobs (environment): CROSS_CHECKS (the checks run, in this order by
# default: etp-local health-check etp-cluster udp-move), CROSS_OUT
# (build/e2e-crossnode: results.txt, the checks' lines in disruption.sh's
# format; logs/ of a failed run, or with E2E_KEEP_LOGS=1), CROSS_TIMEOUT
# (120 s: each wait for a pod or a Service), CROSS_UDP_BOUND (10 s: the
# switch after the new pod is Ready), KUBE_BIN_DIR as e2e.sh.
set -u
cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD

CROSS_CHECKS=${CROSS_CHECKS:-etp-local health-check etp-cluster udp-move}
CROSS_OUT=${CROSS_OUT:-build/e2e-crossnode}
CROSS_TIMEOUT=${CROSS_TIMEOUT:-120}
CROSS_UDP_BOUND=${CROSS_UDP_BOUND:-10}
case $CROSS_OUT in /*) ;; *) CROSS_OUT=$ROOT/$CROSS_OUT ;; esac
NS=nlproxy-crossnode
# The client pod's UDP loop: one request every UDP_INTERVAL s (plus nc's
# 1 s wait for the answer), at most UDP_MAX requests and UDP_MAX_SECONDS s.
UDP_INTERVAL=0.2
UDP_MAX=400
UDP_MAX_SECONDS=300

. tests/cluster/cluster.sh
. tests/cluster/deploy.sh
. tests/cluster/images.sh
. tests/cluster/workload.sh

CHECKS_NAME=crossnode
CHECKS_OUT=$CROSS_OUT
. tests/cluster/checks.sh

cluster_node_prereqs || die "$CLUSTER_MISSING"
[ -x build/nlproxy ] || die "build/nlproxy not built (make all)"

# --- the external client: a network namespace on the node bridge ---

XNS=
XVETH=
XIP=

# xclient_up: namespace ${RUN_ID}-x$$ with its eth0 on the harness's bridge
# (a veth ${RUN_ID}x), address 198.51.100.(16 * slot + 14)/28: the slot's
# /28 is this run's alone (cluster.sh: .16N+1 the host, .16N+1+i node i,
# at most 13 nodes); .16N+14 is free with 12 nodes or fewer. The nodes are
# on-link: no route needed. Recorded in the slot's state, so that the next
# run reaps them if this one dies without its teardown.
xclient_up() {
        local i ip=198.51.100.$((16 * CLUSTER_SLOT + 14))
        [ $((1 + CLUSTER_NODES)) -lt 14 ] || { log "no free address for the client with $CLUSTER_NODES nodes"; return 1; }
        for ((i = 1; i <= CLUSTER_NODES; i++)); do
                [ "${NODE_IP[$i]}" != "$ip" ] || { log "$ip is node $i's"; return 1; }
        done
        [ "$HOST_IP" != "$ip" ] || return 1
        XNS=${CLUSTER_RUN_ID}-x$$
        XVETH=${CLUSTER_RUN_ID}x
        XIP=$ip
        _cluster_state netns "$XNS"
        _cluster_state link "$XVETH"
        ip netns add "$XNS" || return 1
        ip link add "$XVETH" type veth peer name eth0 netns "$XNS" || return 1
        ip link set "$XVETH" master "$_CLUSTER_BRIDGE" up &&
                ip -n "$XNS" link set lo up &&
                ip -n "$XNS" addr add "$XIP/28" dev eth0 &&
                ip -n "$XNS" link set eth0 up
}

# xclient_down: its processes (only what this script ran in it, each bounded
# by timeout) ended by PID, the namespace and the link removed.
xclient_down() {
        local p
        [ -n "$XNS" ] || return 0
        if [ -e "/run/netns/$XNS" ]; then
                for p in $(ip netns pids "$XNS" 2>/dev/null); do
                        kill -KILL "$p" 2>/dev/null
                done
                ip netns del "$XNS" 2>/dev/null
        fi
        ip link del "$XVETH" 2>/dev/null
        return 0
}

# xclient_leftovers: what xclient_down left, one line each.
xclient_leftovers() {
        [ -n "$XNS" ] || return 0
        [ -e "/run/netns/$XNS" ] && echo "netns $XNS"
        ip link show "$XVETH" >/dev/null 2>&1 && echo "link $XVETH"
        ip -o addr show 2>/dev/null | grep -F " $XIP/" | awk '{print "address " $4 " on " $2}'
        return 0
}

# xcurl ARGS...: curl from the external client, bounded (2 s to connect,
# 3 s in all); curl's exit status (28: timed out).
xcurl() {
        timeout 10 nsenter --net="/run/netns/$XNS" curl -sS --connect-timeout 2 -m 3 "$@"
}

# xwait URL SECS: until URL answers from the client; XWAITED (s), XOUT the answer.
xwait() {
        local t0
        t0=$(date +%s%N)
        while [ $((($(date +%s%N) - t0) / 1000000000)) -lt "$2" ]; do
                if XOUT=$(xcurl "$1" 2>/dev/null) && [ -n "$XOUT" ]; then
                        XWAITED=$(_secs_since "$t0")
                        return 0
                fi
                sleep 0.5
        done
        XWAITED=$(_secs_since "$t0")
        return 1
}

# --- run, teardown ---

checks_logs_extra() {
        kubectl_admin get pods,services,endpointslices -n "$NS" -o wide >"$1/objects.txt" 2>&1
}
checks_down_extra() { xclient_down; }
checks_leftovers_extra() { xclient_leftovers; }
checks_start

# --- the workload ---

# pinned_pod NAME APP NODE_INDEX: an agnhost netexec pod (HTTP 8080, UDP
# 8081) on that node, label app=APP.
pinned_pod() {
        kubectl_admin apply -f - >>"$CLUSTER_DIR/logs/kubectl.log" 2>&1 <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $1, namespace: $NS, labels: {app: $2}}
spec:
  nodeName: ${NODE_NAME[$3]}
  terminationGracePeriodSeconds: 1
  containers:
    - name: netexec
      image: $WORKLOAD_IMAGE
      imagePullPolicy: Never
      args: [netexec, --http-port=8080, --udp-port=8081]
      readinessProbe:
        httpGet: {path: /healthz, port: 8080}
        periodSeconds: 1
EOF
}

pod_ready() {
        kubectl_admin -n "$NS" wait --for=condition=Ready "pod/$1" --timeout "${CROSS_TIMEOUT}s" \
                >>"$CLUSTER_DIR/logs/kubectl.log" 2>&1
}

workload_crossnode() {
        kubectl_admin apply -f - >>"$CLUSTER_DIR/logs/kubectl.log" 2>&1 <<EOF || return 1
apiVersion: v1
kind: Namespace
metadata: {name: $NS}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: $NS}
spec:
  nodeName: ${NODE_NAME[1]}
  terminationGracePeriodSeconds: 1
  containers:
    - name: client
      image: $WORKLOAD_IMAGE
      imagePullPolicy: Never
      args: [pause]
---
apiVersion: v1
kind: Service
metadata: {name: local, namespace: $NS}
spec:
  # Only a LoadBalancer Service gets a healthCheckNodePort; no load
  # balancer here: its NodePort is what the client reaches.
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: pinned}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: cluster, namespace: $NS}
spec:
  type: NodePort
  externalTrafficPolicy: Cluster
  selector: {app: pinned}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: udp, namespace: $NS}
spec:
  selector: {app: udp}
  ports: [{name: udp, port: 8081, targetPort: 8081, protocol: UDP}]
EOF
        pinned_pod pinned pinned 1 && pinned_pod udp-1 udp 1 || return 1
        pod_ready client && pod_ready pinned && pod_ready udp-1 ||
                { log "workload not Ready: $(kubectl_admin -n "$NS" get pods -o wide 2>&1 | tail -4)"; return 1; }
}

svc_field() { kubectl_admin -n "$NS" get service "$1" -o jsonpath="{$2}"; }

# ct_count NODE_INDEX FILTER...: how many conntrack entries of the node's
# match ("?" when conntrack did not say).
ct_count() {
        local i=$1 n
        shift
        n=$(node_exec "$i" timeout 10 conntrack -L "$@" 2>&1 >/dev/null |
                sed -n 's/.*: \([0-9]*\) flow entries have been shown.*/\1/p')
        echo "${n:-?}"
}

# --- the checks ---

check_etp_local() {
        local ok=0 np cip seen on1 rc2 tries=5 i t0 dropped=0 n2 fwd pod_ip
        np=$(svc_field local .spec.ports[0].nodePort)
        pod_ip=$(kubectl_admin -n "$NS" get pod pinned -o jsonpath='{.status.podIP}')
        cip=$(svc_field local .spec.clusterIP)
        # Node 1: answered, the client's address seen.
        if xwait "http://${NODE_IP[1]}:$np/clientip" "$CROSS_TIMEOUT"; then
                seen=${XOUT%:*}
                on1="node 1 answered in $XWAITED s, backend saw $seen"
                [ "$seen" = "$XIP" ] || { ok=1; on1="$on1 (not the client's $XIP)"; }
        else
                ok=1
                on1="node 1 did not answer in $XWAITED s"
        fi
        # Node 2 knows the endpoint (its own requests to the ClusterIP reach
        # it): a request to its NodePort that is not answered then proves
        # the policy, not a node that has not caught up.
        n2=-
        t0=$SECONDS
        while [ $((SECONDS - t0)) -lt "$CROSS_TIMEOUT" ]; do
                if [[ $(node_exec 2 timeout 10 curl -sS --connect-timeout 2 -m 3 "http://$cip/hostname" 2>/dev/null) == pinned ]]; then
                        n2=ok
                        break
                fi
                sleep 0.5
        done
        [ "$n2" = ok ] || ok=1
        for ((i = 0; i < tries; i++)); do
                xcurl -o /dev/null "http://${NODE_IP[2]}:$np/clientip" 2>/dev/null
                rc2=$?
                [ "$rc2" = 28 ] && dropped=$((dropped + 1))
                # Anything but a timeout: answered (0), refused or reset.
                [ "$rc2" = 28 ] || log "etp-local: node 2's NodePort: curl exit $rc2"
        done
        [ "$dropped" = "$tries" ] || ok=1
        # Not forwarded either (a forward without masquerade would time out
        # too, the backend's answer going back through node 1): node 2 has
        # no conntrack entry of the client's to the backend.
        fwd=$(ct_count 2 -s "$XIP" --reply-src "$pod_ip")
        [ "$fwd" = 0 ] || ok=1
        result etp-local "$ok" "NodePort $np; client $XIP; $on1; node 2 reaches the ClusterIP $cip itself: $n2; node 2's NodePort: $dropped of $tries requests dropped (timed out), $fwd conntrack entries on node 2 from the client to the backend $pod_ip"
}

# hc_get NODE_INDEX PORT: "STATUS LOCALENDPOINTS" of GET / from the client.
hc_get() {
        local body code
        body=$(mktemp "$TMP/hc.XXXXXX")
        code=$(xcurl -o "$body" -w '%{http_code}' "http://${NODE_IP[$1]}:$2/" 2>/dev/null)
        echo "${code:-none} $(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["localEndpoints"])' \
                "$body" 2>/dev/null || echo -)"
        rm -f "$body"
}

check_health_check() {
        local ok=0 hc t0 r1 r2
        hc=$(svc_field local .spec.healthCheckNodePort)
        [ -n "$hc" ] && [ "$hc" != 0 ] || { result health-check 1 "the Local Service has no healthCheckNodePort"; return; }
        # Bounded: each node's nlproxy opens the port once it has seen the
        # Service and counts the endpoints once it has seen the slice.
        t0=$SECONDS
        while [ $((SECONDS - t0)) -lt "$CROSS_TIMEOUT" ]; do
                r1=$(hc_get 1 "$hc")
                r2=$(hc_get 2 "$hc")
                [ "$r1" = "200 1" ] && [ "$r2" = "503 0" ] && break
                sleep 1
        done
        [ "$r1" = "200 1" ] && [ "$r2" = "503 0" ] || ok=1
        result health-check "$ok" "healthCheckNodePort $hc: node 1 answered ${r1% *} localEndpoints ${r1#* }, node 2 answered ${r2% *} localEndpoints ${r2#* } (want 200 1 and 503 0)"
}

check_etp_cluster() {
        local ok=0 np on2 on1 seen
        np=$(svc_field cluster .spec.ports[0].nodePort)
        if xwait "http://${NODE_IP[2]}:$np/clientip" "$CROSS_TIMEOUT"; then
                seen=${XOUT%:*}
                on2="through node 2 answered in $XWAITED s, backend saw $seen"
                if [ "$seen" = "$XIP" ]; then
                        ok=1
                        on2="$on2 (the client's own address: not masqueraded)"
                elif [ "$seen" = "${NODE_IP[2]}" ]; then
                        on2="$on2 (node 2's address)"
                fi
        else
                ok=1
                on2="through node 2 not answered in $XWAITED s"
        fi
        if xwait "http://${NODE_IP[1]}:$np/clientip" "$CROSS_TIMEOUT"; then
                seen=${XOUT%:*}
                on1="through node 1 answered, backend saw $seen"
                [ "$seen" != "$XIP" ] || { ok=1; on1="$on1 (the client's own address: not masqueraded)"; }
        else
                ok=1
                on1="through node 1 not answered in $XWAITED s"
        fi
        result etp-cluster "$ok" "NodePort $np; client $XIP; $on2; $on1"
}

# The client pod's loop (sh in the container): $1 IP, $2 port, $3 max
# requests, $4 max seconds, $5 interval, $6 the stop file. One line per
# request: the time and the answer ("-": none).
_UDP_LOOP='
ip=$1 port=$2 max=$3 end=$(($(date +%s) + $4)) ival=$5 stop=$6
n=0
while [ "$n" -lt "$max" ] && [ "$(date +%s)" -lt "$end" ] && [ ! -e "$stop" ]; do
        n=$((n + 1))
        out=$(echo hostname | nc -u -w1 -p 12345 "$ip" "$port" 2>/dev/null)
        echo "$(date +%s.%N) ${out:--}"
        sleep "$ival"
done
echo "result tried=$n"
'

check_udp_move() {
        local ok=0 cip old_ip new_ip t_del t_ready='' first='' i log=$CLUSTER_DIR/client-udp.log pid stale
        local n_before n_after wrong_after silent gap last_old ready_s switch_del switch_ready
        cip=$(svc_field udp .spec.clusterIP)
        old_ip=$(kubectl_admin -n "$NS" get pod udp-1 -o jsonpath='{.status.podIP}')
        _client_cid "$NS" || { result udp-move 1 "no client container"; return; }
        # The loop is on before the move, and the old pod answers it.
        _CLIENT_EXEC_TIMEOUT=$((UDP_MAX_SECONDS + 60)) \
                _client_exec "$NS" sh -c "$_UDP_LOOP" sh "$cip" 8081 "$UDP_MAX" "$UDP_MAX_SECONDS" \
                "$UDP_INTERVAL" /tmp/stop-udp >"$log" 2>&1 &
        pid=$!
        _CLIENT_PID[udp]=$pid
        for ((i = 0; i < CROSS_TIMEOUT * 5; i++)); do
                [ "$(grep -c ' udp-1$' "$log")" -ge 3 ] && break
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.2
        done
        if [ "$(grep -c ' udp-1$' "$log")" -lt 3 ]; then
                result udp-move 1 "the old pod never answered the loop: $(tail -2 "$log" | tr '\n' ' ')"
                return
        fi
        t_del=$(date +%s.%N)
        kubectl_admin -n "$NS" delete pod udp-1 --wait=false >>"$CLUSTER_DIR/logs/kubectl.log" 2>&1 || ok=1
        pinned_pod udp-2 udp 2 || ok=1
        if pod_ready udp-2; then
                t_ready=$(date +%s.%N)
        else
                ok=1
        fi
        new_ip=$(kubectl_admin -n "$NS" get pod udp-2 -o jsonpath='{.status.podIP}')
        # Until the new pod answers (bounded), then a few more requests.
        for ((i = 0; i < (CROSS_UDP_BOUND + 5) * 5; i++)); do
                grep -q ' udp-2$' "$log" && break
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.2
        done
        sleep 4
        _client_exec "$NS" touch /tmp/stop-udp >/dev/null 2>&1
        for ((i = 0; i < 50; i++)); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        unset "_CLIENT_PID[udp]"
        # Conntrack entries of node 1 still to the old pod (informational:
        # what kube-proxy's cleanup removes).
        stale=$(ct_count 1 -p udp --reply-src "$old_ip" --dport 8081)
        first=$(awk '$2 == "udp-2" {print $1; exit}' "$log")
        last_old=$(awk '$2 == "udp-1" {t = $1} END {print t}' "$log")
        n_before=$(awk -v t="$t_del" '$1 ~ /^[0-9]/ && $1 < t && $2 != "-"' "$log" | wc -l)
        n_after=$(awk -v f="${first:-0}" 'f > 0 && $1 ~ /^[0-9]/ && $1 > f' "$log" | wc -l)
        # After the first answer of the new pod, every request is answered by it.
        wrong_after=$(awk -v f="${first:-0}" 'f > 0 && $1 ~ /^[0-9]/ && $1 > f && $2 != "udp-2"' "$log" | wc -l)
        silent=$(awk -v t="$t_del" -v f="${first:-9e9}" '$1 ~ /^[0-9]/ && $1 > t && $1 < f && $2 == "-"' "$log" | wc -l)
        ready_s=- switch_del=- switch_ready=- gap=-
        [ -n "$t_ready" ] && ready_s=$(awk -v a="$t_del" -v b="$t_ready" 'BEGIN {printf "%.1f", b - a}')
        if [ -n "$first" ]; then
                switch_del=$(awk -v a="$t_del" -v b="$first" 'BEGIN {printf "%.1f", b - a}')
                [ -n "$t_ready" ] && switch_ready=$(awk -v a="$t_ready" -v b="$first" 'BEGIN {printf "%.1f", b - a}')
                [ -n "$last_old" ] && gap=$(awk -v a="$last_old" -v b="$first" 'BEGIN {printf "%.1f", b - a}')
        fi
        # The new pod within the bound once Ready (answers timed before
        # Ready count as 0), and nothing else after it.
        if [ -z "$first" ] || [ "$switch_ready" = - ] ||
                ! awk -v s="$switch_ready" -v b="$CROSS_UDP_BOUND" 'BEGIN {exit !(s <= b)}'; then
                ok=1
        fi
        [ "$wrong_after" = 0 ] && [ "$n_after" -gt 0 ] || ok=1
        result udp-move "$ok" "ClusterIP $cip:8081 from node 1's client, source port 12345; $old_ip (node 1) -> ${new_ip:--} (node 2); new pod Ready $ready_s s after the delete; first answer from it $switch_del s after the delete, $switch_ready s after Ready (bound $CROSS_UDP_BOUND s); $gap s since the old pod's last answer; $silent requests unanswered meanwhile; $n_before answered before, $n_after after the switch, $wrong_after of them not by the new pod; node 1's conntrack entries still to $old_ip: ${stale:-?}"
}

t=$SECONDS
images_build pause agnhost nlproxy || die "images_build failed"
log "images built in $((SECONDS - t)) s; nlproxy image $IMAGE_NLPROXY"
_import_hook() { images_import "$2"; }
CLUSTER_IMAGES_HOOK=_import_hook
TMP=$(mktemp -d /tmp/nlproxy-crossnode.XXXXXX)
cluster_up "$TMP" 2 || die "the cluster did not come up"
xclient_up || die "the external client's namespace"
nlproxy_deploy "$IMAGE_NLPROXY" || die "nlproxy did not become Ready"
workload_crossnode || die "the workload did not come up"
log "client $XIP in $XNS; nodes ${NODE_IP[1]} ${NODE_IP[2]}; checks: $CROSS_CHECKS"

for c in $CROSS_CHECKS; do
        case $c in
        etp-local) check_etp_local ;;
        health-check) check_health_check ;;
        etp-cluster) check_etp_cluster ;;
        udp-move) check_udp_move ;;
        *) result "$c" 1 "no such check (etp-local health-check etp-cluster udp-move)" ;;
        esac
done
checks_end
