#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Network programming latency in the real cluster of tests/cluster (the SIG
# Scalability SLI "in-cluster network programming latency": from the change
# of a Service's endpoints, the EndpointSlice's
# endpoints.kubernetes.io/last-change-trigger-time, to the proxy's rules
# programmed; SLO: p99 <= 30 s). nlproxy's histogram
# kubeproxy_network_programming_duration_seconds, scraped from its metrics
# address inside the node's network namespace (127.0.0.1:10249, the
# packaged metricsBindAddress), p50/p99 computed from the buckets' delta
# as Prometheus' histogram_quantile does, in phases:
#
#   e2e      the e2e specs of LAT_E2E_FOCUS (the 16 Services Conformance
#            specs) run against the cluster
#   create   LAT_SERVICES (1000) Services created through the API at
#            LAT_RATE per second, all selecting one Deployment of 2 agnhost
#            pods: the EndpointSlice controller makes one slice each
#   scale    that Deployment scaled to 4: every slice changes
#
# The baseline, measured in the same run: the API side, the time from each
# slice's trigger time to the slice reaching a watch of all EndpointSlices
# from this script (bench/cluster_latency.py watch): what any proxy would
# get at best. Writes bench/out/cluster_latency.{md,json} and prints the
# table. Root only; one cluster of one node, niced.
#
# Knobs: LAT_SERVICES (1000), LAT_RATE (50 Services/s), LAT_E2E_FOCUS
# ('\[sig-network\] Services.*\[Conformance\]'; empty: no e2e phase),
# LAT_TIMEOUT (600 s: each phase's convergence), LAT_CM_QPS (the
# controller manager's --kube-api-qps and burst; empty: its defaults, 20/30),
# KUBE_BIN_DIR as tests/cluster/e2e.sh.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD

LAT_SERVICES=${LAT_SERVICES:-1000}
LAT_RATE=${LAT_RATE:-50}
LAT_E2E_FOCUS=${LAT_E2E_FOCUS-'\[sig-network\] Services.*\[Conformance\]'}
LAT_TIMEOUT=${LAT_TIMEOUT:-600}
LAT_CM_QPS=${LAT_CM_QPS:-}
OUT=$ROOT/bench/out
NS=nlproxy-latency
PY=bench/cluster_latency.py

. tests/cluster/cluster.sh
. tests/cluster/deploy.sh
. tests/cluster/images.sh

log() { echo "latency: $*" >&2; }
die() {
        log "$*"
        exit 1
}

cluster_node_prereqs || die "$CLUSTER_MISSING"
[ -x build/nlproxy ] || die "build/nlproxy not built (make all)"
[ -n "$LAT_CM_QPS" ] && CLUSTER_CM_EXTRA_ARGS=(--kube-api-qps "$LAT_CM_QPS" --kube-api-burst "$LAT_CM_QPS")

TMP=
WATCH_PID=
E2E_PID=
cleanup() {
        local rc=$? left
        trap - EXIT INT TERM
        for p in $WATCH_PID $E2E_PID; do
                kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null
        done
        if [ "$rc" != 0 ] && [ -n "$CLUSTER_DIR" ]; then
                nlproxy_logs "$OUT/cluster_latency-logs/nlproxy"
                cluster_logs "$OUT/cluster_latency-logs"
                log "logs kept in $OUT/cluster_latency-logs"
        fi
        cluster_down
        left=$(cluster_leftovers)
        if [ -n "$left" ]; then
                log "left behind after the teardown:"
                sed 's/^/  /' <<<"$left" >&2
                rc=1
        fi
        [ -n "$TMP" ] && rm -rf --one-file-system "$TMP"
        exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# scrape FILE: nlproxy's /metrics on node 1 into FILE.
scrape() {
        node_exec 1 curl -sf -m 10 http://127.0.0.1:10249/metrics >"$1" &&
                grep -q '^kubeproxy_network_programming_duration_seconds_count' "$1"
}

netprog_count() { awk '$1 == "kubeproxy_network_programming_duration_seconds_count" {print $2}' "$1"; }

# settle WANT: until nlproxy has observed at least WANT more programming
# latencies than at $TMP/m.start and the count has not moved for 5 s (the
# last slices' changes in), bounded by LAT_TIMEOUT.
settle() {
        local want=$1 base now last=-1 still=0 i
        base=$(netprog_count "$TMP/m.start")
        for ((i = 0; i < LAT_TIMEOUT; i++)); do
                scrape "$TMP/m.now" || { sleep 1; continue; }
                now=$(netprog_count "$TMP/m.now")
                if [ "$now" = "$last" ]; then still=$((still + 1)); else still=0; fi
                last=$now
                awk -v n="$now" -v b="$base" -v w="$want" 'BEGIN {exit !(n - b >= w)}' && [ "$still" -ge 5 ] && return 0
                sleep 1
        done
        log "not settled in $LAT_TIMEOUT s: $((${now%.*} - ${base%.*})) of $want observations"
        return 1
}

# phase NAME T0 T1 BEFORE AFTER: one result line (JSON) for the table.
phase() {
        local n=$1 nl api
        nl=$(python3 "$PY" quantiles --before "$4" --after "$5") || return 1
        api=$(python3 "$PY" samples --file "$TMP/watch.txt" --from "$2" --to "$3" --buckets-from "$5") || return 1
        echo "{\"phase\": \"$n\", \"seconds\": $(awk -v a="$2" -v b="$3" 'BEGIN {printf "%.1f", b - a}'), \"nlproxy\": $nl, \"api\": $api}" \
                >>"$OUT/cluster_latency.json"
        log "$n: nlproxy $nl; API side $api"
}

mkdir -p "$OUT" || die "cannot create $OUT"
: >"$OUT/cluster_latency.json"
want="pause agnhost nlproxy"
[ -n "$LAT_E2E_FOCUS" ] && want="pause agnhost busybox nlproxy"
# shellcheck disable=SC2086
images_build $want || die "images_build failed"
_import() { images_import "$2"; }
CLUSTER_IMAGES_HOOK=_import
TMP=$(mktemp -d /tmp/nlproxy-latency.XXXXXX)
cluster_up "$TMP" 1 || die "the cluster did not come up"
nlproxy_deploy "$IMAGE_NLPROXY" || die "nlproxy did not become Ready"

python3 "$PY" watch --server "$APISERVER_URL" --ca "$CLUSTER_CA" --cert "$CLUSTER_DIR/pki/admin.crt" \
        --key "$CLUSTER_DIR/pki/admin.key" --out "$TMP/watch.txt" --max-seconds 7200 2>"$TMP/watch.log" &
WATCH_PID=$!
sleep 2
kill -0 "$WATCH_PID" || die "the EndpointSlice watch did not start: $(cat "$TMP/watch.log")"

if [ -n "$LAT_E2E_FOCUS" ]; then
        E2E_TEST=$(cluster_bin e2e.test) || die "no e2e.test"
        scrape "$TMP/m.e2e0" || die "no metrics from nlproxy"
        t0=$(date +%s.%N)
        # As tests/cluster/e2e.sh runs it.
        nice -n "$CLUSTER_NICE" "$E2E_TEST" --provider=local --kubeconfig "$ADMIN_KUBECONFIG" \
                --kubectl-path "$K8S_KUBECTL" --num-nodes "$CLUSTER_NODES" --report-dir "$TMP/e2e" \
                --ginkgo.focus "$LAT_E2E_FOCUS" --ginkgo.timeout 30m --ginkgo.no-color \
                --dump-logs-on-failure=false --disable-log-dump --e2e-output-dir "$TMP/e2e" \
                >"$TMP/e2e.log" 2>&1 &
        E2E_PID=$!
        wait "$E2E_PID"
        E2E_RC=$?
        E2E_PID=
        E2E_RESULT=$(grep -E '^Ran [0-9]+ of|^(SUCCESS|FAIL)!' "$TMP/e2e.log" | tr '\n' ' ')
        log "e2e ($E2E_RC): $E2E_RESULT"
        sleep 3
        scrape "$TMP/m.e2e1" || die "no metrics from nlproxy"
        # The API side's window ends with the scrape too: the suite's last
        # namespaces are still being deleted (their pods' slices change).
        t1=$(date +%s.%N)
        phase e2e "$t0" "$t1" "$TMP/m.e2e0" "$TMP/m.e2e1" || die "e2e phase"
fi

kubectl_admin apply -f - >>"$CLUSTER_DIR/logs/kubectl.log" 2>&1 <<EOF || die "deployment"
apiVersion: v1
kind: Namespace
metadata: {name: $NS}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: lat-backend, namespace: $NS}
spec:
  replicas: 2
  selector: {matchLabels: {app: lat-backend}}
  template:
    metadata: {labels: {app: lat-backend}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: netexec
          image: $IMAGE_AGNHOST
          imagePullPolicy: Never
          args: [netexec, --http-port=8080]
          readinessProbe:
            httpGet: {path: /healthz, port: 8080}
            periodSeconds: 2
EOF
kubectl_admin -n "$NS" rollout status deployment/lat-backend --timeout 180s >/dev/null || die "backends not Ready"
sleep 3

scrape "$TMP/m.start" || die "no metrics from nlproxy"
t0=$(date +%s.%N)
python3 "$PY" create --server "$APISERVER_URL" --ca "$CLUSTER_CA" --cert "$CLUSTER_DIR/pki/admin.crt" \
        --key "$CLUSTER_DIR/pki/admin.key" --namespace "$NS" --count "$LAT_SERVICES" --rate "$LAT_RATE" \
        >"$TMP/create.json" || die "creating Services: $(cat "$TMP/create.json")"
log "created: $(cat "$TMP/create.json")"
settle "$LAT_SERVICES" || die "create phase did not settle"
t1=$(date +%s.%N)
cp "$TMP/m.now" "$TMP/m.created"
phase create "$t0" "$t1" "$TMP/m.start" "$TMP/m.created" || die "create phase"

cp "$TMP/m.created" "$TMP/m.start"
t0=$(date +%s.%N)
kubectl_admin -n "$NS" scale deployment/lat-backend --replicas 4 >/dev/null || die "scale"
settle "$LAT_SERVICES" || die "scale phase did not settle"
t1=$(date +%s.%N)
cp "$TMP/m.now" "$TMP/m.scaled"
phase scale "$t0" "$t1" "$TMP/m.created" "$TMP/m.scaled" || die "scale phase"

python3 - "$OUT/cluster_latency.json" "$LAT_SERVICES" "$LAT_RATE" "${LAT_CM_QPS:-default}" \
        "${E2E_RESULT:-}" >"$OUT/cluster_latency.md" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
f = lambda v: "NA" if v is None else "%.2f" % v
r = lambda a, b: "NA" if a is None or not b else "%.2f" % (a / b)
print("| phase | s | observations nlproxy / API | nlproxy p50 | nlproxy p99 | API p50 | API p99 (bucketed) | p99 ÷ SLO 30 s | p99 ÷ API p99 (bucketed) |")
print("|---|---|---|---|---|---|---|---|---|")
for x in rows:
    n, a = x["nlproxy"], x["api"]
    print("| %s | %s | %d / %d | %s | **%s** | %s | %s (%s) | %s | %s |" % (
        x["phase"], x["seconds"], n["count"], a["count"], f(n["p50"]), f(n["p99"]), f(a["p50"]),
        f(a["p99"]), f(a.get("p99_bucketed")), r(n["p99"], 30.0), r(n["p99"], a.get("p99_bucketed"))))
print()
print("Services: %s at %s/s; controller manager kube-api-qps: %s; e2e: %s" % tuple(sys.argv[2:6]))
EOF
cat "$OUT/cluster_latency.md"
