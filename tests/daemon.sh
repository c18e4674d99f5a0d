#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The long-running daemon against the real kernel, in a scratch network
# namespace: /healthz, /metrics, /debug/table, a healthCheckNodePort server,
# a manifest edit reaching the nftables ruleset, SIGHUP, SIGTERM leaving
# the rules in place, /proxyMode and /configz, and a metrics port taken by
# another process (retried, or fatal with --bind-address-hard-fail). Needs
# root; skips otherwise (fails under CI=true).
set -u

cd "$(dirname "$0")/.."
BIN=${NLPROXY:-build/nlproxy}
NS="nlp-daemon-$$"
PASS=0
FAIL=0
PID=    # the daemon
IPPID=  # `ip netns exec`, which forks the daemon and returns its exit status
HOLDER= # a python process holding a port
TMP=

ok() { PASS=$((PASS + 1)); echo "ok   $1"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL $1${2:+: $2}"; }

skip() {
        echo "SKIP daemon.sh: $1"
        if [ "${CI:-}" = true ]; then
                echo "0 passed, 1 failed (skipped under CI=true)"
                exit 1
        fi
        exit 0
}

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces, nftables)"
command -v ip >/dev/null || skip "needs ip (iproute2)"
command -v nft >/dev/null || skip "needs nft"
command -v curl >/dev/null || skip "needs curl"
[ -x "$BIN" ] || skip "$BIN not built"

cleanup() {
        # Only the daemon this script started, by its PID.
        if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
                kill -KILL "$PID" 2>/dev/null
        fi
        [ -n "$IPPID" ] && wait "$IPPID" 2>/dev/null
        [ -n "$HOLDER" ] && kill "$HOLDER" 2>/dev/null
        ip netns del "$NS" 2>/dev/null
        [ -n "$TMP" ] && rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

TMP=$(mktemp -d /tmp/nlproxy-daemon-sh.XXXXXX)
ip netns add "$NS" || skip "cannot create a network namespace"
ip -n "$NS" link set lo up
# The node address on lo: no dummy/veth module needed.
ip -n "$NS" addr add 192.0.2.1/32 dev lo

in_ns() { ip netns exec "$NS" "$@"; }

# http PATH-or-URL -> "CODE BODY" on stdout, bounded by curl's timeout.
http() { in_ns curl -s -m 3 -w '\n%{http_code}' "$1" 2>/dev/null; }
code_of() { tail -n1 <<<"$1"; }

write_manifests() { # port hcport
        cat >"$TMP/m/cluster.yaml.tmp" <<EOF
apiVersion: v1
kind: Node
metadata: {name: node1}
status:
  addresses: [{type: InternalIP, address: 192.0.2.1}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.10
  ports: [{port: $1, nodePort: 30080}]
  externalTrafficPolicy: Local
  healthCheckNodePort: $2
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
endpoints: [{addresses: [10.244.0.5], nodeName: node1}]
ports: [{port: 8080, name: ""}]
EOF
        mv "$TMP/m/cluster.yaml.tmp" "$TMP/m/cluster.yaml"
}

# wait_for SECONDS CMD...: polls every 0.1 s.
wait_for() {
        local end=$((SECONDS + $1))
        shift
        while [ $SECONDS -le $end ]; do
                "$@" && return 0
                sleep 0.1
        done
        return 1
}

ruleset_has() { in_ns nft list table ip nlproxy 2>/dev/null | grep -qF -- "$1"; }
healthz_up() { [ "$(code_of "$(http http://127.0.0.1:10256/healthz)")" = 200 ]; }

mkdir -p "$TMP/m"
write_manifests 80 32000
in_ns sh -c 'echo $$ >"$0/pid"; exec "$@"' "$TMP" "$BIN" --manifests "$TMP/m" --hostname-override node1 \
        --node-ip 192.0.2.1 --healthz-bind-address 127.0.0.1:10256 --metrics-bind-address 127.0.0.1:10249 \
        --sync-period 2s --min-sync-period 100ms 2>"$TMP/log" &
IPPID=$!
wait_for 5 test -s "$TMP/pid" || { bad "start" "no pid file"; echo "$PASS passed, $FAIL failed"; exit 1; }
PID=$(cat "$TMP/pid")

if wait_for 10 healthz_up; then ok "/healthz answers 200"; else bad "/healthz" "$(tail -5 "$TMP/log")"; fi
r=$(http http://127.0.0.1:10256/healthz)
grep -q '"nodeEligible": true' <<<"$r" && ok "/healthz body has nodeEligible" || bad "/healthz body" "$r"
r=$(http http://127.0.0.1:10256/livez)
[ "$(code_of "$r")" = 200 ] && ok "/livez answers 200" || bad "/livez" "$r"

r=$(http http://127.0.0.1:10249/metrics)
missing=
for m in kubeproxy_sync_proxy_rules_duration_seconds_bucket kubeproxy_sync_full_proxy_rules_duration_seconds \
        kubeproxy_sync_proxy_rules_last_timestamp_seconds kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds \
        kubeproxy_sync_proxy_rules_service_changes_total kubeproxy_sync_proxy_rules_endpoint_changes_total \
        kubeproxy_sync_proxy_rules_no_local_endpoints_total kubeproxy_sync_proxy_rules_nftables_sync_failures_total \
        kubeproxy_network_programming_duration_seconds; do
        grep -q "^$m" <<<"$r" || missing="$missing $m"
done
[ -z "$missing" ] && ok "/metrics has kube-proxy's names" || bad "/metrics" "missing$missing"

r=$(http http://127.0.0.1:10249/debug/table)
grep -q '"web"' <<<"$r" && ok "/debug/table lists the service" || bad "/debug/table" "$(head -c 300 <<<"$r")"

# kube-proxy's /proxyMode and /configz (the e2e "should check kube-proxy urls" reads the former).
r=$(http http://127.0.0.1:10249/proxyMode)
[ "$r" = "$(printf 'nftables\n200')" ] && ok "/proxyMode: nftables" || bad "/proxyMode" "$r"
r=$(http http://127.0.0.1:10249/configz)
if [ "$(code_of "$r")" = 200 ] && head -n -1 <<<"$r" | python3 -c '
import json, sys
c = json.load(sys.stdin)
assert list(c) == ["kubeproxy.config.k8s.io"], list(c)
k = c["kubeproxy.config.k8s.io"]
assert k["Mode"] == "nftables" and k["HostnameOverride"] == "node1", k
assert k["MetricsBindAddress"] == "127.0.0.1:10249" and k["HealthzBindAddress"] == "127.0.0.1:10256", k
assert k["NFTables"]["SyncPeriod"] == "2s" and k["NFTables"]["MinSyncPeriod"] == "100ms", k["NFTables"]
ct = k["Conntrack"]
assert (ct["MaxPerCore"], ct["Min"], ct["TCPEstablishedTimeout"], ct["TCPCloseWaitTimeout"]) == \
       (32768, 131072, "24h0m0s", "1h0m0s"), ct
assert k["OOMScoreAdj"] == -999 and k["FeatureGates"] == {}, k
'; then
        ok "/configz: {\"kubeproxy.config.k8s.io\": the effective configuration}"
else
        bad "/configz" "$(head -c 400 <<<"$r")"
fi

if wait_for 5 ruleset_has "10.96.0.10 . tcp . 80 :"; then ok "the ruleset has the service"; else
        bad "ruleset" "$(in_ns nft list table ip nlproxy 2>&1 | head -20)"; fi

r=$(http http://192.0.2.1:32000/)
[ "$(code_of "$r")" = 200 ] && grep -q '"localEndpoints": 1' <<<"$r" && ok "healthCheckNodePort answers 200" ||
        bad "healthCheckNodePort" "$r"

# An edit (renamed into place) reaches the kernel without a signal.
write_manifests 8080 32001
if wait_for 5 ruleset_has "10.96.0.10 . tcp . 8080 :"; then ok "a manifest edit reaches the ruleset"; else
        bad "manifest edit" "$(tail -5 "$TMP/log")"; fi
ruleset_has "10.96.0.10 . tcp . 80 :" && bad "old port still in the ruleset" || ok "the old port is gone"
r=$(http http://192.0.2.1:32001/)
[ "$(code_of "$r")" = 200 ] && ok "healthCheckNodePort moved" || bad "healthCheckNodePort move" "$r"

kill -HUP "$PID"
if wait_for 5 grep -q "SIGHUP: reloading" "$TMP/log" && kill -0 "$PID" 2>/dev/null && healthz_up; then
        ok "SIGHUP reloads and the daemon stays up"
else
        bad "SIGHUP" "$(tail -5 "$TMP/log")"
fi

kill -TERM "$PID"
rc=124
for _ in $(seq 50); do
        if ! kill -0 "$PID" 2>/dev/null; then
                wait "$IPPID"
                rc=$?
                break
        fi
        sleep 0.1
done
[ "$rc" = 0 ] && ok "SIGTERM: exit 0" || bad "SIGTERM" "exit $rc; $(tail -5 "$TMP/log")"
PID=
IPPID=
ruleset_has "10.96.0.10 . tcp . 8080 :" && ok "the rules stay after exit" || bad "rules after exit"

# --- a metrics port taken: retried every 5 s, or fatal with --bind-address-hard-fail ---
in_ns python3 -c 'import os, socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 10249)); s.listen(1); print(os.getpid(), flush=True); time.sleep(30)' >"$TMP/holder" 2>/dev/null &
disown $!  # no "Terminated" notice when it is killed
wait_for 5 test -s "$TMP/holder" || bad "port holder" "did not start"
HOLDER=$(cat "$TMP/holder")
in_ns timeout 10 "$BIN" --manifests "$TMP/m" --hostname-override node1 --node-ip 192.0.2.1 \
        --healthz-bind-address 127.0.0.1:10256 --metrics-bind-address 127.0.0.1:10249 --bind-address-hard-fail \
        2>"$TMP/hard.log"
rc=$?
[ "$rc" = 1 ] && grep -q "starting the metrics server failed: listen on 127.0.0.1:10249: Address already in use" \
        "$TMP/hard.log" && ok "--bind-address-hard-fail: a taken metrics port exits 1" ||
        bad "--bind-address-hard-fail" "exit $rc; $(tail -3 "$TMP/hard.log")"
in_ns sh -c 'echo $$ >"$0/pid"; exec "$@"' "$TMP" "$BIN" --manifests "$TMP/m" --hostname-override node1 \
        --node-ip 192.0.2.1 --healthz-bind-address 127.0.0.1:10256 --metrics-bind-address 127.0.0.1:10249 \
        2>"$TMP/retry.log" &
IPPID=$!
rm -f "$TMP/pid"
wait_for 5 test -s "$TMP/pid" && PID=$(cat "$TMP/pid")
metrics_up() { [ "$(code_of "$(http http://127.0.0.1:10249/metrics)")" = 200 ]; }
if wait_for 10 healthz_up && grep -q "listen on 127.0.0.1:10249: Address already in use; retrying every 5 s" \
        "$TMP/retry.log"; then
        ok "without it: logged, and the proxy and /healthz go on"
else
        bad "listen retry" "$(tail -3 "$TMP/retry.log")"
fi
kill "$HOLDER" 2>/dev/null
HOLDER=
wait_for 8 metrics_up && ok "the metrics server comes up once the port is free" ||
        bad "metrics after retry" "$(tail -3 "$TMP/retry.log")"
kill -TERM "$PID" 2>/dev/null
wait "$IPPID" 2>/dev/null
PID=
IPPID=

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
