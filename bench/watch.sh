#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The API watcher under load (issue 5): tests/fakeapi.py serves SERVICES
# Services with a 2-endpoint EndpointSlice each (default 10000), the daemon
# (--dry-run: no kernel) lists them, then UPDATES EndpointSlice updates
# (default 50000) arrive in one burst. Prints: time to the first sync,
# events/s (wall, which includes the Python server's serialisation, and per
# CPU second of nlproxy, which is nlproxy's own cost), time until a sync
# reflects the last event, and RSS in steady state; then checks that no event
# was lost (the events counter and every service's endpoints in /debug/table;
# exits 1 if not). PERF_OUT=file records nlproxy with perf during the burst
# (PERF_ARGS, default -g). Run after `make all`.
set -u

cd "$(dirname "$0")/.."
BIN=${NLPROXY:-build/nlproxy}
SERVICES=${SERVICES:-10000}
UPDATES=${UPDATES:-50000}
TMP=$(mktemp -d /tmp/nlproxy-bench-watch.XXXXXX)
FKPID=
NLPID=
cleanup() {
        [ -n "$NLPID" ] && kill -KILL "$NLPID" 2>/dev/null
        [ -n "$FKPID" ] && kill -KILL "$FKPID" 2>/dev/null
        wait 2>/dev/null
        rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

wait_for() {
        local end=$((SECONDS + $1))
        shift
        while [ $SECONDS -le $end ]; do
                "$@" && return 0
                sleep 0.05
        done
        return 1
}
now() { date +%s.%N; }

(cd "$TMP" && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 1 -subj /CN=ca &&
        openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=127.0.0.1 &&
        printf 'subjectAltName=IP:127.0.0.1\n' >ext &&
        openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out srv.crt -days 1 -extfile ext) \
        >/dev/null 2>&1 || { echo "openssl failed"; exit 1; }
python3 tests/fakeapi.py --cert "$TMP/srv.crt" --key "$TMP/srv.key" --token bench --ports-file "$TMP/ports" \
        --bookmark-interval 3600 2>"$TMP/fakeapi.log" &
FKPID=$!
wait_for 10 test -s "$TMP/ports" || { echo "fakeapi did not start"; exit 1; }
read -r AP CP <"$TMP/ports"
printf 'bench\n' >"$TMP/token"
cat >"$TMP/kubeconfig" <<EOF2
apiVersion: v1
kind: Config
current-context: b
contexts: [{name: b, context: {cluster: c, user: u}}]
clusters: [{name: c, cluster: {server: "https://127.0.0.1:$AP", certificate-authority: ca.crt}}]
users: [{name: u, user: {tokenFile: token}}]
EOF2
curl -s -m 600 -X POST "http://127.0.0.1:$CP/bulk" -d "{\"services\":$SERVICES,\"endpoints\":2}" >/dev/null
read -r MP < <(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
metric() { curl -s -m 10 "http://127.0.0.1:$MP/metrics" | awk -v m="$1" '$1==m {print $2}'; }

t0=$(now)
"$BIN" --dry-run --kubeconfig "$TMP/kubeconfig" --hostname-override node1 --healthz-bind-address "" \
        --metrics-bind-address "127.0.0.1:$MP" --min-sync-period 1s --sync-period 30s >/dev/null 2>"$TMP/log" &
NLPID=$!
synced() { v=$(metric kubeproxy_sync_proxy_rules_last_timestamp_seconds); [ -n "$v" ] && [ "$v" != 0 ]; }
wait_for 300 synced || { echo "no first sync"; tail "$TMP/log"; exit 1; }
t1=$(now)
sleep 2
rss0=$(metric process_resident_memory_bytes)
ev0=$(metric nlproxy_watch_events_total)
cpu0=$(metric process_cpu_seconds_total)
sn0=$(metric kubeproxy_sync_proxy_rules_duration_seconds_count)
ss0=$(metric kubeproxy_sync_proxy_rules_duration_seconds_sum)

PERFPID=
if [ -n "${PERF_OUT:-}" ]; then
        perf record ${PERF_ARGS:--g} -o "$PERF_OUT" -p "$NLPID" >/dev/null 2>&1 &
        PERFPID=$!
fi
curl -s -m 600 -X POST "http://127.0.0.1:$CP/burst" -d "{\"updates\":$UPDATES}" >/dev/null
t2=$(now)
target=$(python3 -c "print(int(float('$ev0')) + $UPDATES)")
got_all() { v=$(metric nlproxy_watch_events_total); [ -n "$v" ] && python3 -c "import sys; sys.exit(0 if float('$v') >= $target else 1)"; }
wait_for 300 got_all || { echo "not all events arrived"; tail "$TMP/log"; exit 1; }
t3=$(now)
cpu1=$(metric process_cpu_seconds_total)
sn1=$(metric kubeproxy_sync_proxy_rules_duration_seconds_count)
ss1=$(metric kubeproxy_sync_proxy_rules_duration_seconds_sum)
if [ -n "$PERFPID" ]; then
        kill -INT "$PERFPID"
        wait "$PERFPID"
fi
sleep 3 # past min-sync-period: the sync of the last event has run
rss1=$(metric process_resident_memory_bytes)
ev1=$(metric nlproxy_watch_events_total)
# No event lost or doubled: the counter grew by exactly the burst (bookmarks
# are counted too, hence the fake server's hour between them), and the table
# holds each slice's last posted endpoints.
curl -s -m 300 -o "$TMP/table.json" "http://127.0.0.1:$MP/debug/table" || { echo "no /debug/table"; exit 1; }
noloss=$(python3 - "$SERVICES" "$UPDATES" "$ev0" "$ev1" "$TMP/table.json" <<'EOF2'

import json, sys
svc, upd = int(sys.argv[1]), int(sys.argv[2])
got = int(float(sys.argv[4])) - int(float(sys.argv[3]))
if got != upd:
    sys.exit("lost events: %d posted, nlproxy_watch_events_total grew by %d" % (upd, got))
# tests/fakeapi.py's /burst: update u goes to the (u mod N)-th slice in
# (namespace, name) order, generation u // N + 1; bench_slice's addresses.
names = sorted("svc-%d-abcde" % i for i in range(svc))
want = {}
for k, name in enumerate(names):
    i = int(name.split("-")[1])
    gen = 0 if k >= upd else (k + svc * ((upd - 1 - k) // svc)) // svc + 1
    want["svc-%d" % i] = sorted("10.%d.%d.%d" % (128 + (gen * 7 + e) % 64, (i // 256) % 256, i % 256)
                                for e in range(2))
have = {}
for s in json.load(open(sys.argv[5]))["services"]:
    if s["namespace"] == "bench":
        have[s["name"]] = sorted(e["address"] for e in s["endpoints"])
bad = [n for n in want if have.get(n) != want[n]]
if bad:
    sys.exit("%d of %d services do not hold their last posted endpoints, e.g. %s: %s, want %s"
             % (len(bad), svc, bad[0], have.get(bad[0]), want[bad[0]]))
print("%d events counted, all %d services hold their last posted endpoints" % (got, svc))
EOF2
) || exit 1
# The last sync that changed endpoints, from its klog time stamp.
t4=$(python3 - "$TMP/log" "$t2" <<'EOF2'
import datetime, re, sys
t2 = float(sys.argv[2])
day = datetime.datetime.fromtimestamp(t2).date()
last = t2
for line in open(sys.argv[1]):
    m = re.match(r"I\d{4} (\d\d):(\d\d):(\d\d\.\d+) .*sync of .*endpoints changed for [1-9]", line)
    if m:
        t = datetime.datetime.combine(day, datetime.time(int(m[1]), int(m[2]))).timestamp() + float(m[3])
        last = max(last, t)
print(last)
EOF2
)
ports=$(grep -o "sync of [0-9]* service ports" "$TMP/log" | tail -1)

python3 - "$SERVICES" "$UPDATES" "$t0" "$t1" "$t2" "$t3" "$t4" "$cpu0" "$cpu1" "$rss0" "$rss1" "$ports" "$noloss" \
        "$sn0" "$sn1" "$ss0" "$ss1" <<'EOF2'
import sys
svc, upd = int(sys.argv[1]), int(sys.argv[2])
t0, t1, t2, t3, t4, cpu0, cpu1, rss0, rss1 = map(float, sys.argv[3:12])
print("| measure | value |")
print("|---|---|")
print("| cluster | %d Services x 2 endpoints (%s) |" % (svc, sys.argv[12]))
print("| start to first sync (lists of %d objects + table + dry-run sync) | %.2f s |" % (2 * svc, t1 - t0))
print("| %d EndpointSlice updates: burst posted to the sync of its last event (min-sync-period 1 s) | %.2f s |" % (upd, t4 - t2))
print("| nlproxy CPU for them (parse + decode + model + syncs) | %.2f s (%.0f events per CPU second) |" % (cpu1 - cpu0, upd / max(cpu1 - cpu0, 1e-9)))
sn0, sn1, ss0, ss1 = map(float, sys.argv[14:18])
# A slow fake server (or a loaded machine) spreads the burst over more
# min-sync-periods, hence more syncs, each O(table) today: their count and
# wall time tell that part apart from the per-event cost.
print("| syncs while the events arrived (wall time, summed) | %d (%.3f s) |" % (sn1 - sn0, ss1 - ss0))
print("| RSS after the initial sync / after the burst | %.1f / %.1f MiB |" % (rss0 / 2**20, rss1 / 2**20))
print("| no-loss checks (nlproxy_watch_events_total, /debug/table) | %s |" % sys.argv[13])
# One machine-readable line for bench/targets.py (bench/run.sh keeps it in
# bench/out/watch.txt); the no-loss checks above exit 1 before this on a loss.
import json
print("WATCHRESULT " + json.dumps({
    "services": svc, "updates": upd, "cpu_s": round(cpu1 - cpu0, 4),
    "events_per_cpu_s": round(upd / max(cpu1 - cpu0, 1e-9)), "first_sync_s": round(t1 - t0, 3),
    "burst_to_synced_s": round(t4 - t2, 3), "syncs": int(sn1 - sn0), "rss_mib": round(rss1 / 2**20, 1),
    "noloss": True}, sort_keys=True))
EOF2
