#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The API watcher against a real kube-apiserver (v1.26 from
# ../shared/kubernetes) on Debian's etcd, both on loopback
# (tests/cluster/apiserver.sh): `nlproxy --dry-run` reads it with the
# packaged ServiceAccount and ClusterRole, through a bound token from the
# TokenRequest API, and /debug/table shows what it would program. Checks:
#   1. Services and EndpointSlices created, updated and deleted are reflected;
#      a token rotated (file rewritten, the old one revoked by deleting the
#      Secret it is bound to) is picked up; the API server restarted on the
#      same data: the table is kept while it is down, and watching resumes.
#   2. etcd restored from a backup taken before some changes: the restored
#      server's resourceVersion is behind the one nlproxy last saw; the
#      changes that the backup lacks leave the table within BOUND seconds
#      (client-go, and nlproxy before, re-watched from the old resourceVersion
#      and kept them until the new history overtook it: minutes here).
#   3. etcd wiped: a new, empty cluster; its objects replace the old ones.
# Each part runs its own daemon, so that the backoff of one outage (client-go's:
# it resets after two quiet minutes) does not slow the next. No root needed,
# nothing touches the kernel.
set -u

cd "$(dirname "$0")/.."
BIN=${NLPROXY:-build/nlproxy}
# After an outage the reflectors retry on client-go's backoff: at most 30 s,
# doubled by its jitter. Once a check gets through, a history reset relists
# at once: BOUND. A same-data restart relists too (the new watch cache
# expires the old resourceVersion at once, 410) after one more backoff.
BOUND=60
RESUME_BOUND=120
PASS=0
FAIL=0
NLPID=
TMP=

ok() { PASS=$((PASS + 1)); echo "ok   $1"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL $1${2:+: $2}"; }
die() {
        bad "$@"
        echo "$PASS passed, $FAIL failed"
        exit 1
}

skip() {
        echo "SKIP watch_apiserver.sh: $1"
        if [ "${CI:-}" = true ]; then
                echo "0 passed, 1 failed (skipped under CI=true)"
                exit 1
        fi
        exit 0
}

. tests/cluster/apiserver.sh
cluster_prereqs || skip "$CLUSTER_MISSING"
[ -x "$BIN" ] || skip "$BIN not built"

cleanup() {
        # Only the processes this script started, by PID.
        if [ -n "$NLPID" ]; then
                kill -KILL "$NLPID" 2>/dev/null
                wait "$NLPID" 2>/dev/null
        fi
        cluster_teardown
        # NLPROXY_TEST_KEEP=1 keeps the logs (and the data) for a post-mortem.
        if [ -n "${NLPROXY_TEST_KEEP:-}" ]; then
                [ -n "$TMP" ] && echo "kept $TMP"
        else
                [ -n "$TMP" ] && rm -rf "$TMP"
        fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

TMP=$(mktemp -d /tmp/nlproxy-watch-apiserver.XXXXXX)

wait_for() { # SECONDS CMD...: polls every 0.2 s
        local end=$((SECONDS + $1))
        shift
        while [ $SECONDS -le $end ]; do
                "$@" && return 0
                sleep 0.2
        done
        return 1
}

t0=$SECONDS
cluster_init "$TMP" || die "cluster_init"
etcd_start || die "etcd start"
apiserver_start || die "kube-apiserver start"
ok "etcd and kube-apiserver up ($((SECONDS - t0)) s)"

# --- what nlproxy is given: the packaged RBAC, a bound token in a file ---
provision() {
        kubectl_admin apply -f packaging/kubernetes/serviceaccount.yaml -f packaging/kubernetes/clusterrole.yaml \
                -f packaging/kubernetes/clusterrolebinding.yaml >>"$TMP/kubectl.log" 2>&1
}
# new_token N: a token bound to Secret tok-N (deleting it revokes the token),
# written to the file as the kubelet does: whole, by rename. 600 s is the
# shortest lifetime TokenRequest grants.
new_token() {
        kubectl_admin -n kube-system create secret generic "tok-$1" >>"$TMP/kubectl.log" 2>&1 &&
                kubectl_admin -n kube-system create token nlproxy --duration 600s --bound-object-kind Secret \
                        --bound-object-name "tok-$1" >"$TMP/token.new" 2>>"$TMP/kubectl.log" &&
                cp "$TMP/token.new" "$TMP/token.$1" && mv "$TMP/token.new" "$TMP/token"
}
token_works() { # FILE: HTTP status of a LIST with that token
        curl -s -o /dev/null -w '%{http_code}' -m 5 --cacert "$CLUSTER_CA" -H "Authorization: Bearer $(cat "$1")" \
                "$APISERVER_URL/api/v1/services?limit=1"
}
provision || die "RBAC" "$(tail -3 "$TMP/kubectl.log")"
new_token 1 || die "TokenRequest" "$(tail -3 "$TMP/kubectl.log")"
cat >"$TMP/kubeconfig" <<EOF
apiVersion: v1
kind: Config
current-context: nlproxy
contexts: [{name: nlproxy, context: {cluster: test, user: nlproxy}}]
clusters: [{name: test, cluster: {server: "$APISERVER_URL", certificate-authority: pki/ca.crt}}]
users: [{name: nlproxy, user: {tokenFile: token}}]
EOF

apply() { kubectl_admin apply -f - >>"$TMP/kubectl.log" 2>&1 || bad "kubectl apply" "$(tail -2 "$TMP/kubectl.log")"; }
svc() { # name clusterIP [port]
        apply <<EOF
{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "$1", "namespace": "default"},
 "spec": {"clusterIP": "$2", "ports": [{"name": "http", "port": ${3:-80}, "targetPort": 8080}]}}
EOF
}
slice() { # name service address
        apply <<EOF
{"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
 "metadata": {"name": "$1", "namespace": "default", "labels": {"kubernetes.io/service-name": "$2"}},
 "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
 "endpoints": [{"addresses": ["$3"], "conditions": {"ready": true}, "nodeName": "node1"}]}
EOF
}
node() { # zone: this node, as the kubelet registers it
        apply <<EOF
{"apiVersion": "v1", "kind": "Node",
 "metadata": {"name": "node1", "labels": {"kubernetes.io/hostname": "node1", "topology.kubernetes.io/zone": "$1"}},
 "status": {"addresses": [{"type": "InternalIP", "address": "198.51.100.7"}]}}
EOF
}
del() { kubectl_admin -n default delete "$@" >>"$TMP/kubectl.log" 2>&1 || bad "kubectl delete $*"; }
# churn N: N ConfigMaps created and deleted: 2N revisions, as a busy cluster
# writes (leases, events) and nlproxy never sees.
churn() {
        python3 -c 'import json,sys
print(json.dumps({"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "ConfigMap",
    "metadata": {"name": "churn-%d" % i, "namespace": "default", "labels": {"churn": "1"}}, "data": {"i": str(i)}}
    for i in range(int(sys.argv[1]))]}))' "$1" | kubectl_admin create -f - >/dev/null 2>>"$TMP/kubectl.log" &&
                kubectl_admin delete --raw "/api/v1/namespaces/default/configmaps?labelSelector=churn%3D1" \
                        >/dev/null 2>>"$TMP/kubectl.log"
}

# What the table holds: "ns/name=port:endpoint,..." per service port, sorted;
# nodeIPs separately.
table() { curl -s -m 3 "http://127.0.0.1:$MP/debug/table"; }
state() {
        table | python3 -c 'import json,sys
t = json.load(sys.stdin) or {}
print(" ".join(sorted("%s/%s=%d:%s" % (s["namespace"], s["name"], s["port"],
      ",".join(sorted(e["address"] for e in s.get("endpoints", [])))) for s in t.get("services", []))))' 2>/dev/null
}
node_ips() {
        table | python3 -c 'import json,sys; print(" ".join((json.load(sys.stdin) or {}).get("config", {}).get("nodeIPs", [])))' 2>/dev/null
}
state_is() { [ "$(state)" = "$(tr ' ' '\n' <<<"$1" | LC_ALL=C sort | xargs)" ]; }
metric() { curl -s -m 3 "http://127.0.0.1:$MP/metrics" | awk -v m="$1" '$1==m {print $2}'; }
KUBE="default/kubernetes=443:"

N=0
LOG=
read -r HP MP < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
start_proxy() {
        N=$((N + 1))
        LOG="$TMP/nlproxy.$N.log"
        "$BIN" --dry-run --kubeconfig "$TMP/kubeconfig" --hostname-override node1 \
                --healthz-bind-address "127.0.0.1:$HP" --metrics-bind-address "127.0.0.1:$MP" \
                --min-sync-period 100ms -v 2 >"$TMP/nlproxy.$N.out" 2>"$LOG" &
        NLPID=$!
        wait_for 20 grep -q "initial lists synced" "$LOG" || die "daemon $N: synced" "$(tail -5 "$LOG")"
}
stop_proxy() {
        local rc=124 i
        kill -TERM "$NLPID"
        for ((i = 0; i < 50; i++)); do
                if ! kill -0 "$NLPID" 2>/dev/null; then
                        wait "$NLPID"
                        rc=$?
                        break
                fi
                sleep 0.1
        done
        [ "$rc" = 0 ] && ok "daemon $N: SIGTERM, exit 0" || bad "daemon $N: SIGTERM" "exit $rc"
        [ "$FAIL" != 0 ] && { echo "--- daemon $N log (tail) ---"; tail -20 "$LOG"; }
        NLPID=
}
expect() { # SECONDS STATE WHAT: and how long it took
        local t=$EPOCHREALTIME took
        if wait_for "$1" state_is "$2"; then
                took=$(python3 -c "print('%.1f' % ($EPOCHREALTIME - $t))")
                ok "$3 (in $took s)"
        else
                bad "$3" "table [$(state)], want [$2] after $1 s"
        fi
}
# expect_reset: each reflector logged that the server's history went back.
reset_missing() {
        local k
        for k in services endpointslices node; do
                grep -q "$k: the server is at resourceVersion [0-9]*, behind the [0-9]* last seen" "$LOG" ||
                        echo -n " $k"
        done
}
no_reset_missing() { [ -z "$(reset_missing)" ]; }
expect_reset() {
        wait_for $BOUND no_reset_missing && ok "$1: each reflector saw the server behind and relisted" ||
                bad "$1: no history reset seen by" "$(reset_missing)"
}

# ======== 1: events, token rotation, a restart on the same data ========
node z1
svc web 10.96.10.10
slice web-1 web 10.244.0.5
start_proxy
expect 10 "$KUBE default/web=80:10.244.0.5" "initial lists"
[ "$(node_ips)" = 198.51.100.7 ] && ok "this Node's address reached the table" || bad "node" "nodeIPs [$(node_ips)]"

svc a1 10.96.10.11
slice a1-1 a1 10.244.1.1
expect 10 "default/a1=80:10.244.1.1 $KUBE default/web=80:10.244.0.5" "Service and EndpointSlice created"
slice a1-1 a1 10.244.1.2
expect 10 "default/a1=80:10.244.1.2 $KUBE default/web=80:10.244.0.5" "EndpointSlice updated"
svc a1 10.96.10.11 81
expect 10 "default/a1=81:10.244.1.2 $KUBE default/web=80:10.244.0.5" "Service updated (port 80 -> 81)"
del service a1
del endpointslice a1-1
expect 10 "$KUBE default/web=80:10.244.0.5" "Service and EndpointSlice deleted"

# Token rotation: a new bound token in the file, the old one revoked. The API
# server caches a good token for 10 s, so the revocation takes a moment.
new_token 2 || bad "second token" "$(tail -3 "$TMP/kubectl.log")"
del -n kube-system secret tok-1
revoked() { [ "$(token_works "$TMP/token.1")" = 401 ]; }
wait_for 30 revoked && [ "$(token_works "$TMP/token.2")" = 200 ] && ok "token rotated: the old one revoked (401)" ||
        bad "token revocation" "old token: $(token_works "$TMP/token.1")"

# The API server restarted on the same data (SIGTERM; it would drain the
# watches for a minute: SIGKILL after 3 s). While it is down nothing changes.
before=$(state)
apiserver_stop 3
sleep 2
[ "$(state)" = "$before" ] && kill -0 "$NLPID" && ok "API server down: the table is kept" ||
        bad "outage" "table [$(state)]"
apiserver_start || die "kube-apiserver restart"
svc b1 10.96.10.12
slice b1-1 b1 10.244.2.1
expect $RESUME_BOUND "$KUBE default/b1=80:10.244.2.1 default/web=80:10.244.0.5" \
        "API server restarted: watching resumed"
grep -q "the bearer token in .* changed" "$LOG" && ok "the rotated token was read from the file" ||
        bad "token rotation" "no token change in the log"
grep -q "history was reset" "$LOG" && bad "a same-data restart was taken for a history reset" ||
        ok "same data: no history reset seen"
grep -qF "$(cat "$TMP/token.2")" "$LOG" && bad "a token is logged" || ok "no token in the log"
stop_proxy

# ======== 2: etcd restored from a backup ========
etcd_snapshot "$TMP/backup.db" || die "etcd snapshot"
start_proxy
expect 10 "$KUBE default/b1=80:10.244.2.1 default/web=80:10.244.0.5" "daemon $N: initial lists"
# After the backup: writes that nlproxy does not watch, then changes to each
# of its three kinds, so that each reflector's last resourceVersion is ahead
# of the backup.
churn 200 || bad "churn" "$(tail -2 "$TMP/kubectl.log")"
svc ghost 10.96.10.13
slice ghost-1 ghost 10.244.3.1
slice web-1 web 10.244.0.6
node z2
expect 10 "$KUBE default/b1=80:10.244.2.1 default/ghost=80:10.244.3.1 default/web=80:10.244.0.6" \
        "changes after the backup reflected"
sleep 1
rv_old=$(etcd_revision)
after=$(state)
apiserver_stop 3
etcd_stop
[ "$(state)" = "$after" ] && ok "API server and etcd down: the table is kept" || bad "outage" "table [$(state)]"
etcd_restore "$TMP/backup.db" || die "etcd restore" "$(tail -3 "$TMP/logs/etcdctl.log")"
etcd_start || die "etcd start on the restored data"
rv_new=$(etcd_revision)
[ "$rv_new" -lt "$rv_old" ] && ok "the restored history is behind: revision $rv_new < $rv_old" ||
        bad "restore" "revision $rv_new, was $rv_old"
apiserver_start || die "kube-apiserver on the restored etcd"
expect $BOUND "$KUBE default/b1=80:10.244.2.1 default/web=80:10.244.0.5" \
        "restored from the backup: what it lacks is gone, the rest back to its version"
expect_reset "restore"
svc c1 10.96.10.14
expect 10 "$KUBE default/b1=80:10.244.2.1 default/c1=80: default/web=80:10.244.0.5" "watching the restored history"
v=$(metric nlproxy_watch_history_resets_total)
[ "${v%.*}" = 3 ] && ok "nlproxy_watch_history_resets_total $v" || bad "history resets metric" "[$v]"
stop_proxy

# ======== 3: etcd wiped ========
churn 200 || bad "churn" "$(tail -2 "$TMP/kubectl.log")"
start_proxy
expect 10 "$KUBE default/b1=80:10.244.2.1 default/c1=80: default/web=80:10.244.0.5" "daemon $N: initial lists"
apiserver_stop 3
etcd_stop
etcd_wipe
etcd_start || die "etcd start on no data"
apiserver_start || die "kube-apiserver on the empty etcd"
# A new cluster: the ServiceAccount is new, the old token is refused (401);
# the new one comes through the file.
provision || bad "RBAC again" "$(tail -3 "$TMP/kubectl.log")"
new_token 3 || bad "token after the wipe" "$(tail -3 "$TMP/kubectl.log")"
svc fresh 10.96.10.15
expect $BOUND "$KUBE default/fresh=80:" "etcd wiped: only the new cluster's services"
no_node() { [ -z "$(node_ips)" ]; }
wait_for $BOUND no_node && ok "this Node, gone with the old data, left the table" || bad "node" "nodeIPs [$(node_ips)]"
expect_reset "wipe"
grep -q 'rest_client_requests_total{code="401"}' <(curl -s -m 3 "http://127.0.0.1:$MP/metrics") &&
        grep -q "the bearer token in .* changed" "$LOG" && ok "the old token refused (401), the new one read" ||
        bad "token after the wipe" "$(grep -c 401 "$LOG") lines with 401"
stop_proxy

echo "$PASS passed, $FAIL failed ($((SECONDS - t0)) s)"
[ "$FAIL" = 0 ]
