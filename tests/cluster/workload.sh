# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# A test workload in the cluster of tests/cluster/cluster.sh and a client
# that connects to a Service in a bounded loop from inside a pod, driven
# through the node's containerd (not through the API server or the kubelet:
# the loop keeps running while either restarts). Sourced after cluster.sh:
#
#   workload_up NS               # backends (2 agnhost netexec), Service "backend", pod "client"
#   workload_service NS NAME     # one more ClusterIP Service on the same backends; its IP printed
#   client_get NS URL            # one request from the client pod; prints the answer
#   client_loop_start NS URL TAG # the loop started; client_loop_stop NS TAG ends it
#   client_loop_stop NS TAG      # stops it; CLIENT_TRIED, CLIENT_FAILED, CLIENT_BACKENDS set
#   client_wait_ok NS URL SECS   # until one request succeeds; CLIENT_WAITED (s) set
#
# The loop: one HTTP request (curl, a new TCP connection each) to URL every
# CLIENT_INTERVAL seconds (0.2), at most CLIENT_MAX requests (5000) and
# CLIENT_MAX_SECONDS (600) seconds, or until client_loop_stop. A request
# fails when curl fails (2 s connect and total timeout) or when the answer
# is not a backend's host name. Its output (one line per failure, then a
# `result` line) is kept in $CLUSTER_DIR/client-TAG.log.
#
# Variables: WORKLOAD_IMAGE (the agnhost image), CLIENT_INTERVAL,
# CLIENT_MAX, CLIENT_MAX_SECONDS, CLIENT_TRIED, CLIENT_FAILED,
# CLIENT_BACKENDS (how many distinct backends answered), CLIENT_WAITED.

WORKLOAD_IMAGE=${WORKLOAD_IMAGE:-registry.k8s.io/e2e-test-images/agnhost:2.43}
CLIENT_INTERVAL=${CLIENT_INTERVAL:-0.2}
CLIENT_MAX=${CLIENT_MAX:-5000}
CLIENT_MAX_SECONDS=${CLIENT_MAX_SECONDS:-600}
CLIENT_TRIED=0
CLIENT_FAILED=0
CLIENT_BACKENDS=0
CLIENT_WAITED=
declare -gA _CLIENT_PID=()

# The loop, run by sh inside the client container: $1 URL, $2 max requests,
# $3 max seconds, $4 interval, $5 the stop file.
_CLIENT_LOOP='
url=$1 max=$2 end=$(($(date +%s) + $3)) ival=$4 stop=$5
n=0 f=0
: >/tmp/backends
while [ "$n" -lt "$max" ] && [ "$(date +%s)" -lt "$end" ] && [ ! -e "$stop" ]; do
        n=$((n + 1))
        out=$(curl -sS --connect-timeout 2 -m 2 "$url" 2>&1)
        case $? in
        0) case $out in
           backend-*) grep -qxF "$out" /tmp/backends || echo "$out" >>/tmp/backends ;;
           *) f=$((f + 1)); echo "fail $(date +%s.%N) answer: $out" ;;
           esac ;;
        *) f=$((f + 1)); echo "fail $(date +%s.%N) $out" ;;
        esac
        sleep "$ival"
done
echo "result tried=$n failed=$f backends=$(wc -l </tmp/backends)"
'

# workload_up NS: namespace NS, Deployment backend (2 agnhost netexec on
# 8080), Service backend (port 80), pod client; all Ready.
workload_up() {
        local ns=$1
        kubectl_admin apply -f - >>"$CLUSTER_DIR/logs/kubectl.log" 2>&1 <<EOF || return 1
apiVersion: v1
kind: Namespace
metadata: {name: $ns}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: backend, namespace: $ns}
spec:
  replicas: 2
  selector: {matchLabels: {app: backend}}
  template:
    metadata: {labels: {app: backend}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: netexec
          image: $WORKLOAD_IMAGE
          imagePullPolicy: Never
          args: [netexec, --http-port=8080]
          readinessProbe:
            httpGet: {path: /healthz, port: 8080}
            periodSeconds: 2
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: $ns}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: client
      image: $WORKLOAD_IMAGE
      imagePullPolicy: Never
      args: [pause]
EOF
        workload_service "$ns" backend >/dev/null || return 1
        kubectl_admin -n "$ns" rollout status deployment/backend --timeout 180s >>"$CLUSTER_DIR/logs/kubectl.log" 2>&1 &&
                kubectl_admin -n "$ns" wait --for=condition=Ready pod/client --timeout 180s \
                        >>"$CLUSTER_DIR/logs/kubectl.log" 2>&1 ||
                { _cluster_log "workload not Ready: $(kubectl_admin -n "$ns" get pods -o wide 2>&1 | tail -4)"; return 1; }
}

# workload_service NS NAME: a ClusterIP Service NAME (port 80 to the
# backends' 8080); prints its ClusterIP.
workload_service() {
        kubectl_admin apply -f - >>"$CLUSTER_DIR/logs/kubectl.log" 2>&1 <<EOF || return 1
apiVersion: v1
kind: Service
metadata: {name: $2, namespace: $1}
spec:
  selector: {app: backend}
  ports: [{name: http, port: 80, targetPort: 8080}]
EOF
        kubectl_admin -n "$1" get service "$2" -o jsonpath='{.spec.clusterIP}'
}

# _client_cid NS: the client container's ID in its node's containerd, and
# _CLIENT_NODE its node's index.
_client_cid() {
        local node i cid
        node=$(kubectl_admin -n "$1" get pod client -o jsonpath='{.spec.nodeName}') &&
                cid=$(kubectl_admin -n "$1" get pod client -o jsonpath='{.status.containerStatuses[0].containerID}') ||
                return 1
        for ((i = 1; i <= CLUSTER_NODES; i++)); do
                [ "${NODE_NAME[$i]}" = "$node" ] && _CLIENT_NODE=$i
        done
        [ -n "${_CLIENT_NODE:-}" ] && [ -n "$cid" ] || return 1
        _CLIENT_CID=${cid#containerd://}
        # ctr's fifos where the node's containerd sees them too (its /run
        # is its own).
        mkdir -p "$CLUSTER_DIR/fifo"
}

# _client_exec NS ARGS...: ARGS in the client container, through containerd.
_client_exec() {
        local ns=$1
        shift
        [ -n "${_CLIENT_CID:-}" ] || _client_cid "$ns" || return 1
        timeout "${_CLIENT_EXEC_TIMEOUT:-20}" \
                ctr --address "${CONTAINERD_SOCK[$_CLIENT_NODE]}" -n k8s.io tasks exec --fifo-dir "$CLUSTER_DIR/fifo" \
                --exec-id "nlx$$-$RANDOM$RANDOM" "$_CLIENT_CID" "$@"
}

client_get() {
        _client_exec "$1" curl -sS --connect-timeout 2 -m 2 "$2"
}

client_loop_start() {
        local ns=$1 url=$2 tag=$3
        [ -n "${_CLIENT_CID:-}" ] || _client_cid "$ns" || return 1
        _CLIENT_EXEC_TIMEOUT=$((CLIENT_MAX_SECONDS + 60)) \
                _client_exec "$ns" sh -c "$_CLIENT_LOOP" sh "$url" "$CLIENT_MAX" "$CLIENT_MAX_SECONDS" \
                "$CLIENT_INTERVAL" "/tmp/stop-$tag" >"$CLUSTER_DIR/client-$tag.log" 2>&1 &
        _CLIENT_PID[$tag]=$!
        # The loop has made requests before the disruption starts.
        sleep 2
}

client_loop_stop() {
        local ns=$1 tag=$2 pid=${_CLIENT_PID[$2]:-} i line
        CLIENT_TRIED=0 CLIENT_FAILED=0 CLIENT_BACKENDS=0
        [ -n "$pid" ] || return 1
        # Requests after the disruption too.
        sleep 2
        _client_exec "$ns" touch "/tmp/stop-$tag" >/dev/null 2>&1
        for ((i = 0; i < 100; i++)); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        unset "_CLIENT_PID[$tag]"
        line=$(grep '^result ' "$CLUSTER_DIR/client-$tag.log" | tail -1)
        [ -n "$line" ] || { _cluster_log "client loop $tag: no result: $(tail -2 "$CLUSTER_DIR/client-$tag.log")"; return 1; }
        line=${line#result }
        for i in $line; do
                case $i in
                tried=*) CLIENT_TRIED=${i#tried=} ;;
                failed=*) CLIENT_FAILED=${i#failed=} ;;
                backends=*) CLIENT_BACKENDS=${i#backends=} ;;
                esac
        done
}

# client_loops_kill: every loop still running stopped (for an EXIT trap).
client_loops_kill() {
        local t
        for t in "${!_CLIENT_PID[@]}"; do
                kill -TERM "${_CLIENT_PID[$t]}" 2>/dev/null
        done
        return 0
}

# client_wait_ok NS URL SECS: until a request through URL gets a backend's
# answer; CLIENT_WAITED is how long it took (s, 0.1 s resolution).
client_wait_ok() {
        local ns=$1 url=$2 secs=$3 t0 out
        t0=$(date +%s%N)
        while [ $((($(date +%s%N) - t0) / 1000000000)) -lt "$secs" ]; do
                out=$(client_get "$ns" "$url" 2>/dev/null)
                if [[ $out == backend-* ]]; then
                        CLIENT_WAITED=$(_secs_since "$t0")
                        return 0
                fi
                sleep 0.2
        done
        CLIENT_WAITED=$(_secs_since "$t0")
        return 1
}

# _secs_since NS_TIMESTAMP: seconds since then, one decimal.
_secs_since() {
        local d=$(($(date +%s%N) - $1))
        printf '%d.%d' $((d / 1000000000)) $((d % 1000000000 / 100000000))
}
