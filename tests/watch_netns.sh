#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The daemon with the nftables backend on the API watcher, in a scratch
# network namespace where tests/fakeapi.py also runs: a Service learnt from
# the API server carries traffic, keeps carrying it through an API outage
# (connections reset, then the server gone altogether), and a change made
# after the server returns reaches the kernel. Needs root; skips otherwise
# (fails under CI=true).
set -u

cd "$(dirname "$0")/.."
BIN=${NLPROXY:-build/nlproxy}
NS="nlp-watch-$$"
PASS=0
FAIL=0
TMP=
PIDS=()   # what this script started, inside the namespace
IPPIDS=() # the `ip netns exec` processes that fork them

ok() { PASS=$((PASS + 1)); echo "ok   $1"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL $1${2:+: $2}"; }

skip() {
        echo "SKIP watch_netns.sh: $1"
        if [ "${CI:-}" = true ]; then
                echo "0 passed, 1 failed (skipped under CI=true)"
                exit 1
        fi
        exit 0
}

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces, nftables)"
for t in ip nft curl python3 openssl; do command -v $t >/dev/null || skip "needs $t"; done
[ -x "$BIN" ] || skip "$BIN not built"

cleanup() {
        local p
        # Only the processes this script started, by PID.
        for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
        for p in "${IPPIDS[@]}"; do wait "$p" 2>/dev/null; done
        ip netns del "$NS" 2>/dev/null
        [ -n "$TMP" ] && rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

wait_for() {
        local end=$((SECONDS + $1))
        shift
        while [ $SECONDS -le $end ]; do
                "$@" && return 0
                sleep 0.1
        done
        return 1
}

TMP=$(mktemp -d /tmp/nlproxy-watch-netns.XXXXXX)
ip netns add "$NS" || skip "cannot create a network namespace"
in_ns() { ip netns exec "$NS" "$@"; }
in_ns ip link set lo up
in_ns ip addr add 192.0.2.1/32 dev lo    # the node
in_ns ip addr add 10.244.0.5/32 dev lo   # the endpoint (a pod, here on the node itself)
# A locally sent packet is routed before nat output rewrites it: the
# service range needs a route, as on a node (there, the default route).
in_ns ip route add 10.96.0.0/16 dev lo

(
        cd "$TMP" &&
                openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 1 -subj /CN=nlproxy-test-ca &&
                openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=127.0.0.1 &&
                printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >ext &&
                openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out srv.crt -days 1 -extfile ext
) >"$TMP/openssl.log" 2>&1 || { bad "openssl" "$(tail -3 "$TMP/openssl.log")"; exit 1; }

# spawn NAME CMD...: runs CMD in the namespace in the background; its PID
# (not that of `ip netns exec`, which forks) ends up in $TMP/NAME.pid.
spawn() {
        local name=$1
        shift
        in_ns sh -c 'echo $$ >"$0"; exec "$@"' "$TMP/$name.pid" "$@" &
        IPPIDS+=("$!")
        wait_for 5 test -s "$TMP/$name.pid" || { bad "start $name"; exit 1; }
        PIDS+=("$(cat "$TMP/$name.pid")")
}
spawn fakeapi python3 tests/fakeapi.py --cert "$TMP/srv.crt" --key "$TMP/srv.key" --token tok-3e1 \
        --ports-file "$TMP/ports" --bookmark-interval 1 2>"$TMP/fakeapi.log"
FKPID=$(cat "$TMP/fakeapi.pid")
spawn backend python3 -m http.server --bind 10.244.0.5 8080 --directory "$TMP" >/dev/null 2>&1
wait_for 10 test -s "$TMP/ports" || { bad "fakeapi start" "$(tail -5 "$TMP/fakeapi.log")"; exit 1; }
read -r AP CP <"$TMP/ports"
echo hello-through-the-vip >"$TMP/index.html"

ctl() { in_ns curl -s -m 5 -X POST "http://127.0.0.1:$CP/$1" -d "$2" >/dev/null; }
svc() { # name clusterIP port
        ctl put "{\"kind\":\"services\",\"object\":{\"apiVersion\":\"v1\",\"kind\":\"Service\",
                \"metadata\":{\"name\":\"$1\",\"namespace\":\"default\"},
                \"spec\":{\"clusterIP\":\"$2\",\"ports\":[{\"port\":$3,\"targetPort\":8080}]}}}"
}
slice() { # name service
        ctl put "{\"kind\":\"endpointslices\",\"object\":{\"apiVersion\":\"discovery.k8s.io/v1\",
                \"kind\":\"EndpointSlice\",\"metadata\":{\"name\":\"$1\",\"namespace\":\"default\",
                \"labels\":{\"kubernetes.io/service-name\":\"$2\"}},\"addressType\":\"IPv4\",
                \"endpoints\":[{\"addresses\":[\"10.244.0.5\"],\"nodeName\":\"node1\"}],
                \"ports\":[{\"port\":8080,\"name\":\"\"}]}}"
}
printf 'tok-3e1\n' >"$TMP/token"
cat >"$TMP/kubeconfig" <<EOF
apiVersion: v1
kind: Config
current-context: test
contexts: [{name: test, context: {cluster: fake, user: proxy}}]
clusters: [{name: fake, cluster: {server: "https://127.0.0.1:$AP", certificate-authority: ca.crt}}]
users: [{name: proxy, user: {tokenFile: token}}]
EOF
svc web 10.96.0.10 80
slice web-1 web
ctl put '{"kind":"nodes","object":{"apiVersion":"v1","kind":"Node","metadata":{"name":"node1"},
        "status":{"addresses":[{"type":"InternalIP","address":"192.0.2.1"}]}}}'

spawn nlproxy "$BIN" --mode nftables --kubeconfig "$TMP/kubeconfig" --hostname-override node1 \
        --healthz-bind-address 127.0.0.1:10256 --metrics-bind-address 127.0.0.1:10249 \
        --sync-period 2s --min-sync-period 100ms 2>"$TMP/log"
NLPID=$(cat "$TMP/nlproxy.pid")

get() { in_ns curl -s -m 2 "http://$1/" 2>/dev/null; }
serves() { [ "$(get "$1")" = hello-through-the-vip ]; }
ruleset_has() { in_ns nft list table ip nlproxy 2>/dev/null | grep -qF -- "$1"; }

if wait_for 15 serves 10.96.0.10:80; then ok "traffic through the ClusterIP learnt from the API"; else
        bad "ClusterIP" "$(tail -5 "$TMP/log")"; fi

# --- outage: connections reset ---
ctl down '{"down":true}'
sleep 3
serves 10.96.0.10:80 && ok "outage (resets): traffic keeps flowing" || bad "traffic during the outage"
ruleset_has "10.96.0.10 . tcp . 80" && ok "outage (resets): the rules stay" || bad "rules during the outage"
ctl down '{"down":false}'
svc api 10.96.0.11 8081
slice api-1 api
if wait_for 20 serves 10.96.0.11:8081; then ok "after the outage: a new service reaches the kernel"; else
        bad "after the outage" "$(tail -5 "$TMP/log")"; fi

# --- the server gone altogether ---
kill -TERM "$FKPID"
wait_for 5 eval '! kill -0 "$FKPID" 2>/dev/null' || bad "fakeapi did not stop"
sleep 3
kill -0 "$NLPID" 2>/dev/null && ok "API server gone: the daemon runs on" || bad "daemon died"
serves 10.96.0.10:80 && serves 10.96.0.11:8081 && ok "API server gone: traffic keeps flowing" ||
        bad "traffic with the API server gone"
grep -q "watching services: .*again in" "$TMP/log" && ok "the failures are logged with their retry delay" ||
        bad "failure log" "$(tail -3 "$TMP/log")"

kill -TERM "$NLPID"
rc=124
for _ in $(seq 50); do
        if ! kill -0 "$NLPID" 2>/dev/null; then
                wait "${IPPIDS[2]}"
                rc=$?
                break
        fi
        sleep 0.1
done
[ "$rc" = 0 ] && ok "SIGTERM: exit 0" || bad "SIGTERM" "exit $rc"
serves 10.96.0.10:80 && ok "the rules stay after exit" || bad "rules after exit"

[ "$FAIL" != 0 ] && tail -20 "$TMP/log"
echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
