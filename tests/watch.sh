#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The API watcher end to end: `nlproxy --dry-run` (the daemon without the
# kernel) against tests/fakeapi.py over TLS with a bearer token. Checks,
# through /debug/table and /metrics, that nothing is synced before the
# initial lists, that the table converges to the server's state after each
# fault (410 in a watch, expired continue token, 429 with Retry-After, 500,
# 504 too-large-resourceVersion, a reset inside an event, an empty 200, an
# event split at every byte, a quiet watch, token rotation, a restart with a
# new resourceVersion history, higher or, as after etcd is restored from a
# backup, lower), that failures back off instead of looping,
# and that an outage keeps the table. Needs python3, openssl and curl; no
# root, no network namespace (nothing touches the kernel).
set -u

cd "$(dirname "$0")/.."
BIN=${NLPROXY:-build/nlproxy}
PASS=0
FAIL=0
NLPID=
FKPID=
TMP=

ok() { PASS=$((PASS + 1)); echo "ok   $1"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL $1${2:+: $2}"; }

skip() {
        echo "SKIP watch.sh: $1"
        if [ "${CI:-}" = true ]; then
                echo "0 passed, 1 failed (skipped under CI=true)"
                exit 1
        fi
        exit 0
}

command -v python3 >/dev/null || skip "needs python3"
command -v openssl >/dev/null || skip "needs openssl"
command -v curl >/dev/null || skip "needs curl"
[ -x "$BIN" ] || skip "$BIN not built"

cleanup() {
        # Only the processes this script started, by PID.
        [ -n "$NLPID" ] && kill -KILL "$NLPID" 2>/dev/null
        [ -n "$FKPID" ] && kill -KILL "$FKPID" 2>/dev/null
        [ -n "$NLPID" ] && wait "$NLPID" 2>/dev/null
        [ -n "$FKPID" ] && wait "$FKPID" 2>/dev/null
        [ -n "$TMP" ] && rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

TMP=$(mktemp -d /tmp/nlproxy-watch-sh.XXXXXX)

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

# --- a throwaway CA and a server certificate for 127.0.0.1 ---
(
        cd "$TMP" &&
                openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 1 -subj /CN=nlproxy-test-ca &&
                openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=127.0.0.1 &&
                printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >ext &&
                openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out srv.crt -days 1 -extfile ext &&
                openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=system:kube-proxy &&
                printf 'extendedKeyUsage=clientAuth\n' >cext &&
                openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out client.crt -days 1 \
                        -extfile cext
) >"$TMP/openssl.log" 2>&1 || { bad "openssl" "$(tail -3 "$TMP/openssl.log")"; exit 1; }

python3 tests/fakeapi.py --cert "$TMP/srv.crt" --key "$TMP/srv.key" --token sekret-one-7f3a --ports-file "$TMP/ports" \
        --bookmark-interval 1 --page-size 2 --client-ca "$TMP/ca.crt" 2>"$TMP/fakeapi.log" &
FKPID=$!
wait_for 10 test -s "$TMP/ports" || { bad "fakeapi start" "$(tail -5 "$TMP/fakeapi.log")"; exit 1; }
read -r AP CP <"$TMP/ports"

ctl() { curl -s -m 5 -X POST "http://127.0.0.1:$CP/$1" -d "$2" >/dev/null; }
svc() { # name clusterIP [extra labels json]
        ctl put "{\"kind\":\"services\",\"object\":{\"apiVersion\":\"v1\",\"kind\":\"Service\",
                \"metadata\":{\"name\":\"$1\",\"namespace\":\"default\",\"labels\":{${3:-}}},
                \"spec\":{\"clusterIP\":\"$2\",\"ports\":[{\"port\":80}]}}}"
}
slice() { # name service endpoint-ip
        ctl put "{\"kind\":\"endpointslices\",\"object\":{\"apiVersion\":\"discovery.k8s.io/v1\",
                \"kind\":\"EndpointSlice\",\"metadata\":{\"name\":\"$1\",\"namespace\":\"default\",
                \"labels\":{\"kubernetes.io/service-name\":\"$2\"}},\"addressType\":\"IPv4\",
                \"endpoints\":[{\"addresses\":[\"$3\"],\"nodeName\":\"node1\"}],\"ports\":[{\"port\":8080,\"name\":\"\"}]}}"
}
del() { ctl delete "{\"kind\":\"$1\",\"namespace\":\"default\",\"name\":\"$2\"}"; }
fault() { ctl fault "$1"; }
kick() { ctl kick '{}'; }

# Two free ports for the daemon's servers.
read -r HP MP < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')

printf 'sekret-one-7f3a\n' >"$TMP/token"
cat >"$TMP/kubeconfig" <<EOF
apiVersion: v1
kind: Config
current-context: test
contexts: [{name: test, context: {cluster: fake, user: proxy}}]
clusters: [{name: fake, cluster: {server: "https://127.0.0.1:$AP", certificate-authority: ca.crt}}]
users: [{name: proxy, user: {tokenFile: token}}]
EOF

# What the proxy shows and what the server has, as sorted namespace/name lists.
table_json() { curl -s -m 3 "http://127.0.0.1:$MP/debug/table"; }
table_names() {
        table_json | python3 -c 'import json,sys
t=json.load(sys.stdin)
print(" ".join(sorted({s["namespace"]+"/"+s["name"] for s in (t or {}).get("services",[])})))' 2>/dev/null
}
server_names() { # without default/other, which belongs to another proxy
        curl -s -m 3 "http://127.0.0.1:$CP/state" | python3 -c 'import json,sys
print(" ".join(sorted(n for n in json.load(sys.stdin)["objects"]["services"] if n != "default/other")))'
}
table_eps() { # service -> its endpoint addresses
        table_json | python3 -c 'import json,sys
t=json.load(sys.stdin)
print(" ".join(sorted({e["address"] for s in (t or {}).get("services",[]) if s["name"]==sys.argv[1]
        for e in s.get("endpoints",[])})))' "$1" 2>/dev/null
}
eps_count() { # service -> how many endpoint entries it has
        table_json | python3 -c 'import json,sys
t=json.load(sys.stdin)
print(sum(len(s.get("endpoints",[])) for s in (t or {}).get("services",[]) if s["name"]==sys.argv[1]))' "$1" 2>/dev/null
}
eps_count_is() { [ "$(eps_count "$1")" = "$2" ]; }
eps_is() { [ "$(table_eps "$1")" = "$2" ]; }
same_names() { [ "$(table_names)" = "$(server_names)" ]; }
metric() { curl -s -m 3 "http://127.0.0.1:$MP/metrics" | awk -v m="$1" '$1==m {print $2}'; }
# Requests the server saw for a kind after a monotonic time (its clock).
requests_since() { # kind since-t [watch|list|any]
        curl -s -m 3 "http://127.0.0.1:$CP/stats" | python3 -c 'import json,sys
k,t,w=sys.argv[1],float(sys.argv[2]),sys.argv[3]
r=[x["t"] for x in json.load(sys.stdin)["requests"] if x["kind"]==k and x["t"]>t and
   (w=="any" or x["watch"]==(w=="watch"))]
print(len(r), " ".join("%.3f"%x for x in r))' "$1" "$2" "${3:-any}"
}
server_now() { python3 -c 'import time; print(time.monotonic())'; }

# --- the cluster before the proxy starts ---
svc web 10.96.0.10
slice web-1 web 10.244.0.5
svc other 10.96.0.20 '"service.kubernetes.io/service-proxy-name":"someone-else"'
svc s1 10.96.0.31
svc s2 10.96.0.32
ctl put '{"kind":"nodes","object":{"apiVersion":"v1","kind":"Node","metadata":{"name":"node1",
        "labels":{"topology.kubernetes.io/zone":"z1"}},"status":{"addresses":[{"type":"InternalIP","address":"192.0.2.1"}]}}}'
ctl hold '{"kind":"endpointslices","hold":true}'

# Each group of faults runs against a fresh daemon: client-go's backoff only
# resets after two quiet minutes, and one process through every fault would
# spend most of the run waiting.
N=0
LOG=
start_proxy() {
        N=$((N + 1))
        LOG="$TMP/log.$N"
        "$BIN" --dry-run --kubeconfig "$TMP/kubeconfig" --hostname-override node1 \
                --healthz-bind-address "127.0.0.1:$HP" --metrics-bind-address "127.0.0.1:$MP" \
                --sync-period 5s --min-sync-period 100ms -v 2 "$@" >"$TMP/out.$N" 2>"$LOG" &
        NLPID=$!
        wait_for 10 metrics_up || bad "daemon $N: start" "$(tail -5 "$LOG")"
}
stop_proxy() {
        local rc=124 cpu
        curl -s -m 3 "http://127.0.0.1:$MP/metrics" >>"$TMP/metrics.all"
        # An idle watcher costs next to nothing; a hot loop would not.
        cpu=$(metric process_cpu_seconds_total)
        python3 -c "import sys; sys.exit(0 if float('${cpu:-99}') < 3 else 1)" && ok "daemon $N: ${cpu} s of CPU" ||
                bad "daemon $N: CPU" "${cpu} s"
        kill -TERM "$NLPID"
        for _ in $(seq 50); do
                if ! kill -0 "$NLPID" 2>/dev/null; then
                        wait "$NLPID"
                        rc=$?
                        break
                fi
                sleep 0.1
        done
        [ "$rc" = 0 ] && ok "daemon $N: SIGTERM, exit 0" || bad "daemon $N: SIGTERM" "exit $rc"
        [ "$FAIL" != 0 ] && { echo "--- daemon $N log (tail) ---"; tail -15 "$LOG"; }
        NLPID=
}
metrics_up() { [ -n "$(metric kubeproxy_sync_proxy_rules_last_timestamp_seconds)" ]; }
converge() { # WHAT [SECONDS]
        if wait_for "${2:-20}" same_names; then ok "$1: converged"; else
                bad "$1: converged" "table [$(table_names)] server [$(server_names)]; $(tail -3 "$LOG")"; fi
}

# ======== daemon 1: start-up, events, relists ========
start_proxy

# --- nothing before the initial lists ---
services_listed() { grep -q "listed services at" "$LOG"; }
if wait_for 10 services_listed; then
        sleep 1
        t=$(table_json)
        ts=$(metric kubeproxy_sync_proxy_rules_last_timestamp_seconds)
        if [ "$t" = null ] && [ "$ts" = 0 ]; then ok "no sync while the EndpointSlice list is pending"; else
                bad "no sync before the initial lists" "table $(head -c 100 <<<"$t"), last sync $ts"; fi
else
        bad "start" "$(tail -5 "$LOG")"
fi
ctl hold '{"kind":"endpointslices","hold":false}'
converge "initial lists"
[ "$(table_eps web)" = 10.244.0.5 ] && ok "endpoints from the slice list" || bad "endpoints" "[$(table_eps web)]"
table_names | grep -q default/other && bad "a service of another proxy is in the table" ||
        ok "service-proxy-name label: not ours"
n=$(curl -s -m 3 "http://127.0.0.1:$CP/stats" | python3 -c 'import json,sys
print(sum(1 for r in json.load(sys.stdin)["requests"] if r["kind"]=="services" and r["continue"]))')
[ "$n" -ge 1 ] && ok "the services list came in pages ($n continue requests)" || bad "paging" "no continue request"
table_json | grep -q '"192.0.2.1"' && ok "the Node's address reached the table" || bad "node" "no 192.0.2.1"

# --- the requests as client-go's reflector makes them ---
queries_ok=$(curl -s -m 3 "http://127.0.0.1:$CP/stats" | python3 -c 'import json,sys,urllib.parse as u
rs=json.load(sys.stdin)["requests"]
bad=[]
for r in rs:
    q=dict(u.parse_qsl(r["query"]))
    if r["watch"]:
        if not (q.get("allowWatchBookmarks")=="true" and q.get("resourceVersion") and
                300 <= int(q.get("timeoutSeconds","0")) <= 600):
            bad.append(r["query"])
    elif q.get("limit")=="1":
        # The check before a re-watch: a consistent read, no resourceVersion.
        if q.get("resourceVersion") or q.get("continue"):
            bad.append(r["query"])
    elif q.get("limit")!="500":
        bad.append(r["query"])
    if r["kind"]=="nodes" and q.get("fieldSelector")!="metadata.name=node1":
        bad.append(r["query"])
    if r["kind"]!="nodes" and q.get("labelSelector")!="!service.kubernetes.io/service-proxy-name":
        bad.append(r["query"])
print("yes" if rs and not bad else "no: %s" % bad[:3])')
[ "$queries_ok" = yes ] && ok "LIST limit=500 (limit=1 checks), WATCH with bookmarks, resourceVersion, timeoutSeconds 300-600, selectors" ||
        bad "request parameters" "$queries_ok"

# --- plain watch events ---
svc a1 10.96.0.41
slice a1-1 a1 10.244.1.1
converge "ADDED"
wait_for 10 eps_is a1 10.244.1.1 && ok "slice ADDED" || bad "slice ADDED" "[$(table_eps a1)]"
slice a1-1 a1 10.244.1.2
wait_for 10 eps_is a1 10.244.1.2 && ok "slice MODIFIED" || bad "slice MODIFIED" "[$(table_eps a1)]"
del services s2
converge "DELETED"
grep -q "would add service default/web (1 endpoints)" "$TMP/out.$N" &&
        grep -q "would remove service default/s2" "$TMP/out.$N" &&
        grep -q "would change service default/a1 (endpoints)" "$TMP/out.$N" &&
        ok "the dry run prints what each sync would change" || bad "dry-run changes" "$(head -5 "$TMP/out.$N")"

# --- what changes nothing the table reads recomputes nothing (issue 11) ---
unchanged_count() { grep -c "the service table is unchanged" "$LOG"; }
unchanged_after() { [ "$(unchanged_count)" -gt "$1" ]; }
u0=$(unchanged_count)
ctl put '{"kind":"nodes","object":{"apiVersion":"v1","kind":"Node","metadata":{"name":"node1",
        "labels":{"topology.kubernetes.io/zone":"z1"}},"status":{"addresses":[{"type":"InternalIP","address":"192.0.2.1"}],
        "conditions":[{"type":"Ready","status":"True","lastHeartbeatTime":"2024-01-01T00:00:10Z"}]}}}'
wait_for 10 unchanged_after "$u0" && ok "a Node status update (kubelet heartbeat): the table is kept, nothing recomputed" ||
        bad "Node status update" "$(grep -E "sync|table" "$LOG" | tail -3)"
u0=$(unchanged_count)
r0=$(metric nlproxy_watch_relists_total)
fault '{"fault":"watch_410","kind":"endpointslices"}'
kick
relisted() { [ "$(metric nlproxy_watch_relists_total)" != "$r0" ]; }
wait_for 15 relisted && wait_for 10 unchanged_after "$u0" &&
        ok "a relist of unchanged objects: the table is kept, nothing recomputed" ||
        bad "relist of unchanged objects" "relists $r0 -> $(metric nlproxy_watch_relists_total); $(tail -3 "$LOG")"
converge "relist of unchanged objects"

# --- 410 Expired in a watch: relist (and the continue token expires in it) ---
fault '{"fault":"watch_410","kind":"services"}'
fault '{"fault":"continue_410","kind":"services"}'
sleep 1.2
kick
svc b1 10.96.0.51
wait_for 10 grep -q "continue token expired" "$LOG" && ok "expired continue token: list restarted" ||
        bad "continue 410" "$(grep services "$LOG" | tail -3)"
converge "watch 410 Expired"

# --- 410 Gone after the backlog ---
fault '{"fault":"watch_gone","kind":"endpointslices"}'
kick
slice a1-1 a1 10.244.1.3
wait_for 15 eps_is a1 10.244.1.3 && ok "watch 410 Gone: converged" || bad "410 Gone" "[$(table_eps a1)]"

# --- every byte of an event in its own chunk ---
fault '{"fault":"split_bytes","kind":"services"}'
sleep 1.2
kick
sleep 1.5
svc b6 10.96.0.56
converge "event split at every byte"

# --- a quiet watch is legal: no reconnect while it says nothing ---
fault '{"fault":"quiet","kind":"endpointslices","seconds":4}'
sleep 1.2
kick
sleep 1
t0=$(server_now)
sleep 2.5
read -r n _ < <(requests_since endpointslices "$t0" any)
[ "$n" = 0 ] && ok "quiet watch kept open" || bad "quiet watch" "$n requests during the quiet"
slice a1-1 a1 10.244.1.4
wait_for 15 eps_is a1 10.244.1.4 && ok "after the quiet watch: converged" ||
        bad "after the quiet watch" "[$(table_eps a1)]"

# --- duplicate and overlapping EndpointSlices ---
slice a1-2 a1 10.244.1.4
slice a1-3 a1 10.244.1.9
wait_for 10 eps_is a1 "10.244.1.4 10.244.1.9" && eps_count_is a1 2 &&
        ok "overlapping slices: one endpoint per address" || bad "overlapping slices" "$(eps_count a1) [$(table_eps a1)]"
del endpointslices a1-2
del endpointslices a1-3
wait_for 10 eps_is a1 10.244.1.4 && eps_count_is a1 1 && ok "overlapping slices deleted" ||
        bad "overlapping slices deleted" "[$(table_eps a1)]"

# --- a malformed object is skipped with one line, nothing else lost ---
ctl put '{"kind":"services","object":{"apiVersion":"v1","kind":"Service","metadata":{"name":"bad","namespace":"default"},
        "spec":{"clusterIP":"10.96.0.99","ports":[{"port":0}]}}}'
svc b8 10.96.0.58
wait_for 10 grep -q "Service default/bad: spec.ports\[0\].port" "$LOG" && ok "malformed Service named in the log" ||
        bad "malformed object" "$(tail -3 "$LOG")"
converge_except_bad() { [ "$(table_names)" = "$(server_names | tr ' ' '\n' | grep -vx default/bad | xargs)" ]; }
wait_for 10 converge_except_bad && ok "the rest converged past a malformed object" || bad "past a malformed object"
del services bad
ctl put '{"kind":"endpointslices","object":{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
        "metadata":{"name":"a1-bad","namespace":"default","labels":{"kubernetes.io/service-name":"a1"}},
        "addressType":"IPv4","endpoints":[{"addresses":["not-an-ip"]}],"ports":[{"port":8080,"name":""}]}}'
wait_for 10 grep -q "EndpointSlice default/a1-bad: endpoints\[0\].addresses\[0\]" "$LOG" &&
        eps_is a1 10.244.1.4 && ok "malformed EndpointSlice named in the log, the others kept" ||
        bad "malformed EndpointSlice" "$(grep a1-bad "$LOG" | tail -1)"
del endpointslices a1-bad
ctl put '{"kind":"nodes","object":{"apiVersion":"v1","kind":"Node","metadata":{"name":"node1",
        "labels":{"topology.kubernetes.io/zone":"z1"}},"status":{"addresses":[{"type":"InternalIP","address":"300.1.1.1"}]}}}'
wait_for 10 grep -q "Node node1: status.addresses" "$LOG" && table_json | grep -q '"192.0.2.1"' &&
        ok "malformed Node named in the log, its last good version kept" ||
        bad "malformed Node" "$(grep "Node node1" "$LOG" | tail -1)"

# --- bookmarks move the resourceVersion on: a re-watch starts from the newest ---
sleep 2.5
kick
last_watch_rv() {
        curl -s -m 3 "http://127.0.0.1:$CP/stats" | python3 -c 'import json,sys,urllib.parse as u
w=[r for r in json.load(sys.stdin)["requests"] if r["kind"]=="nodes" and r["watch"]]
print(dict(u.parse_qsl(w[-1]["query"])).get("resourceVersion") if w else "")'
}
server_rv() { curl -s -m 3 "http://127.0.0.1:$CP/state" | python3 -c 'import json,sys; print(json.load(sys.stdin)["rv"])'; }
rv_is_server() { [ "$(last_watch_rv)" = "$(server_rv)" ]; }
wait_for 5 rv_is_server && ok "bookmarks: the node re-watch starts at the server's resourceVersion" ||
        bad "bookmarks" "re-watch from $(last_watch_rv), server at $(server_rv)"

# --- SIGHUP re-reads the configuration ---
kill -HUP "$NLPID"
wait_for 5 grep -q "re-read the configuration" "$LOG" && kill -0 "$NLPID" && ok "SIGHUP re-reads the configuration" ||
        bad "SIGHUP" "$(tail -3 "$LOG")"
converge "after SIGHUP"
stop_proxy

# ======== daemon 2: 504 and 429 ========
start_proxy
converge "daemon 2 start"
fault '{"fault":"http_504_rv","kind":"services"}'
sleep 1.2
kick
svc b2 10.96.0.52
converge "504 too large resourceVersion"
t0=$(server_now)
fault '{"fault":"http_429","kind":"endpointslices","retry_after":2}'
sleep 1.2
kick
slice a1-1 a1 10.244.1.5
wait_for 15 eps_is a1 10.244.1.5 && ok "429: converged" || bad "429" "[$(table_eps a1)]"
# The 429 goes to the first request after the kick (the check before the
# re-watch); the next one waits for Retry-After.
read -r n times < <(requests_since endpointslices "$t0" any)
gap=$(python3 -c 'import sys; t=[float(x) for x in sys.argv[1:]]; print("%.2f" % (t[1]-t[0]) if len(t)>1 else -1)' $times)
python3 -c "import sys; sys.exit(0 if $gap >= 1.9 else 1)" && ok "Retry-After honoured (${gap} s)" ||
        bad "Retry-After" "gap $gap s between requests ($times)"
stop_proxy

# ======== daemon 3: 500 and empty 200 ========
start_proxy
converge "daemon 3 start"
t0=$(server_now)
fault '{"fault":"http_500","kind":"services","count":3}'
sleep 1.2
kick
svc b4 10.96.0.54
converge "500 x3"
read -r n times < <(requests_since services "$t0" any)
ok_gaps=$(python3 -c 'import sys
t=[float(x) for x in sys.argv[1:]]
print(int(len(t) >= 4 and all(t[i+1]-t[i] >= 0.79 for i in range(1, 3))))' $times)
[ "$ok_gaps" = 1 ] && ok "500: retries back off ($n requests)" || bad "500 backoff" "$times"
t0=$(server_now)
fault '{"fault":"empty","kind":"endpointslices","count":3}'
sleep 1.2
kick
sleep 3
read -r n times < <(requests_since endpointslices "$t0" watch)
[ "$n" -le 3 ] && ok "empty 200 watches back off ($n watches in 3 s)" || bad "empty watch hot loop" "$n in 3 s"
slice a1-1 a1 10.244.1.6
wait_for 20 eps_is a1 10.244.1.6 && ok "empty 200: converged" || bad "empty 200" "[$(table_eps a1)]"
stop_proxy

# ======== daemon 4: a reset mid-event, token rotation ========
start_proxy
converge "daemon 4 start"
fault '{"fault":"reset","kind":"services"}'
sleep 1.2
kick
svc b5 10.96.0.55
converge "reset mid-event"
# 401s since a time, per kind: "kind:count:gap" with gap the seconds from
# the first 401 to the next request of that kind.
unauthorized_since() {
        curl -s -m 3 "http://127.0.0.1:$CP/stats" | python3 -c 'import json,sys
rs=[r for r in json.load(sys.stdin)["requests"] if r["t"] > float(sys.argv[1])]
out=[]
for k in ("services", "endpointslices", "nodes"):
    ts=[(r["t"], r.get("unauthorized", False)) for r in rs if r["kind"]==k]
    bad=[i for i, (_, u) in enumerate(ts) if u]
    gap=ts[bad[0]+1][0]-ts[bad[0]][0] if bad and bad[0]+1 < len(ts) else -1
    out.append("%s:%d:%.2f" % (k, len(bad), gap))
print(" ".join(out))' "$1"
}
# The kubelet rotated the token file, then the old token stopped working: the
# first request with the old one (read under a minute ago) gets a 401; the
# file, read again, has a new token: retried at once, no backoff.
t0=$(server_now)
printf 'sekret-two-9c4d\n' >"$TMP/token"
ctl tokens '{"tokens":["sekret-two-9c4d"]}'
kick
svc b9 10.96.0.59
converge "token rotation"
u=$(unauthorized_since "$t0")
python3 -c 'import sys
sys.exit(0 if all(int(c) == 1 and 0 <= float(g) < 0.5 for _, c, g in (x.split(":") for x in sys.argv[1:])) else 1)' $u &&
        grep -q "bearer token in .* changed" "$LOG" && ok "401, the new token from the file, retried at once ($u)" ||
        bad "token rotation" "401s per kind:count:gap $u"
# The other order: the old token refused before the file holds the new one.
# The 401 re-reads the file (no change: backoff); the next request reads it
# again and carries the new token: one 401 per kind, not two.
t0=$(server_now)
ctl tokens '{"tokens":["sekret-three-51e0"]}'
kick
sleep 0.5
printf 'sekret-three-51e0\n' >"$TMP/token"
svc b10 10.96.0.60
converge "token refused before the file changed"
u=$(unauthorized_since "$t0")
python3 -c 'import sys
sys.exit(0 if all(int(c) == 1 for _, c, g in (x.split(":") for x in sys.argv[1:])) else 1)' $u &&
        ok "after a 401 the file is read before each request: one 401 per kind ($u)" ||
        bad "token read after a 401" "401s per kind:count:gap $u"
grep -q sekret "$TMP"/log.* && bad "a token is logged" || ok "no token in the logs"
stop_proxy

# ======== daemon 5: outage, restart with a new history ========
start_proxy
converge "daemon 5 start"
before=$(table_names)
ctl down '{"down":true}'
sleep 3
kill -0 "$NLPID" 2>/dev/null && [ "$(table_names)" = "$before" ] && ok "outage: the table is kept" ||
        bad "outage" "table [$(table_names)]"
del services b1
svc c1 10.96.0.61
ctl down '{"down":false}'
converge "after the outage"
ctl restart '{"drop":[["services","default","b2"]]}'
# A relist after the 410 at once waits a backoff step grown by the outage
# just before: up to 25.6 s with client-go's jitter.
converge "restart with a new history (an object gone without an event)" 40
[ "$(curl -s -m 3 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HP/healthz")" = 200 ] && ok "/healthz 200" ||
        bad "/healthz"
v=$(metric kubeproxy_sync_proxy_rules_service_changes_total)
[ -n "$v" ] && [ "${v%.*}" -ge 5 ] && ok "service changes counted ($v)" || bad "service changes" "$v"
stop_proxy

# ======== daemon 6: the history goes back ========
# etcd restored from a backup: the new history is behind the old one. The
# watches from the old resourceVersion would hang with nothing to say; the
# check before each re-watch sees the server behind and relists.
start_proxy
svc d1 10.96.0.71
converge "daemon 6 start"
ctl down '{"down":true}'
sleep 1
ctl restart '{"back":500,"drop":[["services","default","d1"]]}'
ctl down '{"down":false}'
if wait_for 20 same_names; then ok "history went back: relisted, converged"; else
        bad "history went back" "table [$(table_names)] server [$(server_names)]; $(tail -3 "$LOG")"; fi
# Each reflector on its own backoff: the Node's may come later than the rest.
for k in services endpointslices node; do
        wait_for 20 grep -q "$k: the server is at resourceVersion [0-9]*, behind the [0-9]* last seen" "$LOG" ||
                bad "history went back: $k" "no relist in the log"
done
svc d2 10.96.0.72
converge "watching the new history"
resets_are() { v=$(metric nlproxy_watch_history_resets_total); [ "${v%.*}" = "$1" ]; }
wait_for 10 resets_are 3 && ok "history resets counted, one per reflector ($v)" || bad "history resets metric" "$v"
stop_proxy

# ======== TLS verifies the server: wrong name, unknown CA ========
sed 's#https://127.0.0.1:#https://localhost:#' "$TMP/kubeconfig" >"$TMP/kubeconfig.host"
sed 's#, certificate-authority: ca.crt##' "$TMP/kubeconfig" >"$TMP/kubeconfig.ca"
for kc in host ca; do
        timeout 5 "$BIN" --dry-run --kubeconfig "$TMP/kubeconfig.$kc" --hostname-override node1 \
                --healthz-bind-address "" --metrics-bind-address "" >"$TMP/tls.$kc.out" 2>"$TMP/tls.$kc.log"
        if grep -qi "ssl\|certificate" "$TMP/tls.$kc.log" && ! grep -q "initial lists synced" "$TMP/tls.$kc.log"; then
                ok "TLS: refused with $( [ $kc = host ] && echo 'a wrong host name' || echo 'an unknown CA')"
        else
                bad "TLS $kc" "$(head -3 "$TMP/tls.$kc.log")"
        fi
done

# ======== in-cluster configuration; --dry-run --once ========
mkdir "$TMP/sa"
cp "$TMP/ca.crt" "$TMP/sa/ca.crt"
printf 'sekret-three-51e0\n' >"$TMP/sa/token"
if KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT=$AP NLPROXY_SERVICEACCOUNT_DIR="$TMP/sa" \
        timeout 30 "$BIN" --dry-run --once --output json --hostname-override node1 >"$TMP/once.json" 2>"$TMP/once.log" &&
        python3 -c 'import json,sys
names={s["namespace"]+"/"+s["name"] for s in json.load(open(sys.argv[1]))["services"]}
sys.exit(0 if "default/c1" in names and "default/other" not in names else 1)' "$TMP/once.json"; then
        ok "in-cluster config: --dry-run --once prints the listed table"
else
        bad "in-cluster --dry-run --once" "$(tail -3 "$TMP/once.log")"
fi
# --- a client certificate and inline *-data, no token ---
b64() { base64 -w0 "$1"; }
client_certs() { curl -s -m 3 "http://127.0.0.1:$CP/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("client_cert",0))'; }
cat >"$TMP/kubeconfig.cert" <<EOF
apiVersion: v1
kind: Config
current-context: test
contexts: [{name: test, context: {cluster: fake, user: proxy}}]
clusters: [{name: fake, cluster: {server: "https://127.0.0.1:$AP", certificate-authority-data: $(b64 "$TMP/ca.crt")}}]
users: [{name: proxy, user: {client-certificate-data: $(b64 "$TMP/client.crt"), client-key-data: $(b64 "$TMP/client.key")}}]
EOF
before=$(client_certs)
if timeout 30 "$BIN" --dry-run --once --output json --kubeconfig "$TMP/kubeconfig.cert" --hostname-override node1 \
        >"$TMP/cert.json" 2>"$TMP/cert.log" && grep -q '"default/c1/tcp/80"' "$TMP/cert.json" &&
        [ "$(client_certs)" -gt "$before" ]; then
        ok "client certificate and key from *-data, CA from certificate-authority-data"
else
        bad "client certificate" "$(tail -3 "$TMP/cert.log")"
fi
"$BIN" --dry-run --kubeconfig "$TMP/missing" >/dev/null 2>"$TMP/err.log"
rc=$?
[ $rc = 1 ] && grep -q "$TMP/missing" "$TMP/err.log" && ok "a missing kubeconfig: exit 1, named" ||
        bad "missing kubeconfig" "exit $rc: $(cat "$TMP/err.log")"

# --- metrics over all daemons ---
missing=
for c in 200 401 410 429 500 504 '<error>'; do
        grep -qF "rest_client_requests_total{code=\"$c\"}" "$TMP/metrics.all" || missing="$missing $c"
done
[ -z "$missing" ] && ok "rest_client_requests_total by code" || bad "request metrics" "missing codes$missing"

# --- the requests stay bounded overall: no hot loop anywhere ---
total=$(curl -s -m 3 "http://127.0.0.1:$CP/stats" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["requests"]))')
[ "$total" -lt 300 ] && ok "$total requests in the whole run" || bad "too many requests" "$total"

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
