#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The node settings kube-proxy applies at start, on the real kernel:
#  - host mode (make check): the per-network-namespace conntrack sysctls
#    (timeouts, be_liberal) in scratch namespaces, written only when they
#    differ; a read-only /proc/sys (a mount namespace with /proc/sys
#    remounted read-only, as a container without privilege has it) refused
#    with one line naming each setting; nf_conntrack_max, global, left alone
#    from a child namespace; the daemon applying them at start, and its
#    oom_score_adj, with and without CAP_SYS_RESOURCE. The host's own values,
#    global and of its namespace, are compared before and after: never changed.
#  - --vm (inside tests/vm/run, its own kernel; tests/conntrack_vm.sh): the
#    global nf_conntrack_max and the hash size from the guest's initial
#    namespace, raised only, /sys read-only a warning; IPVS mode's sysctls
#    from --init-only.
# Needs root; skips otherwise (fails under CI=true).
set -u

cd "$(dirname "$0")/.."
BIN=${NLPROXY:-build/nlproxy}
MODE=host
[ "${1:-}" = --vm ] && MODE=vm
NS="nlp-ct-$$"
NS2="nlp-ct2-$$"
PASS=0
FAIL=0
TMP=
PIDS=()   # daemons this script started, by PID
IPPIDS=() # the `ip netns exec` processes that fork them

ok() { PASS=$((PASS + 1)); echo "ok   $1"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL $1${2:+: $2}"; }

skip() {
        echo "SKIP conntrack.sh: $1"
        if [ "${CI:-}" = true ]; then
                echo "0 passed, 1 failed (skipped under CI=true)"
                exit 1
        fi
        exit 0
}

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces, sysctls)"
for t in ip unshare mount curl setpriv choom; do command -v $t >/dev/null || skip "needs $t"; done
[ -x "$BIN" ] || skip "$BIN not built"
if [ $MODE = vm ] && [ "${NLVM_GUEST:-}" != 1 ]; then
        echo "conntrack.sh --vm changes global kernel settings: it runs only inside tests/vm/run"
        echo "0 passed, 1 failed"
        exit 1
fi

cleanup() {
        local p
        for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
        for p in "${IPPIDS[@]}"; do wait "$p" 2>/dev/null; done
        ip netns del "$NS" 2>/dev/null
        ip netns del "$NS2" 2>/dev/null
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

TMP=$(mktemp -d /tmp/nlproxy-conntrack.XXXXXX)
NF=/proc/sys/net/netfilter
HASH=/sys/module/nf_conntrack/parameters/hashsize
CT_SYSCTLS="nf_conntrack_max nf_conntrack_tcp_timeout_established nf_conntrack_tcp_timeout_close_wait
        nf_conntrack_tcp_be_liberal nf_conntrack_udp_timeout nf_conntrack_udp_timeout_stream"

# snapshot [NS]: every conntrack sysctl and the hash size, one line.
snapshot() {
        local f out=
        for f in $CT_SYSCTLS; do
                if [ -n "${1:-}" ]; then out="$out $f=$(ip netns exec "$1" cat $NF/$f)"
                else out="$out $f=$(cat $NF/$f)"; fi
        done
        echo "$out hashsize=$(cat $HASH)"
}
val() { ip netns exec "$1" cat "$NF/$2"; }

# nlp_ns NS ARGS...: nlproxy in NS; stderr in $TMP/err, exit status in $rc.
nlp_ns() {
        local ns=$1
        shift
        ip netns exec "$ns" "$BIN" "$@" >"$TMP/out" 2>"$TMP/err"
        rc=$?
}
# nlp_ro NS ARGS...: the same with /proc/sys read-only (a private mount
# namespace, the mount flag only: nothing else sees it).
nlp_ro() {
        local ns=$1
        shift
        ip netns exec "$ns" unshare -m --propagation private sh -c \
                'mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && exec "$@"' sh \
                "$BIN" "$@" >"$TMP/out" 2>"$TMP/err"
        rc=$?
}
errlines() { grep -c '^E' "$TMP/err"; }

[ -e $NF/nf_conntrack_max ] || skip "nf_conntrack is not loaded on this host"

if [ $MODE = host ]; then
        before=$(snapshot)
        ip netns add "$NS" || skip "cannot create a network namespace"
        ip netns add "$NS2" || skip "cannot create a network namespace"
        ip -n "$NS" link set lo up
        ip -n "$NS2" link set lo up

        # --- --init-only with kube-proxy's defaults, in a fresh namespace ---
        est0=$(val "$NS" nf_conntrack_tcp_timeout_established)
        udp0=$(val "$NS" nf_conntrack_udp_timeout)
        nlp_ns "$NS" --init-only --mode nftables
        if [ $rc = 0 ] && [ "$(val "$NS" nf_conntrack_tcp_timeout_established)" = 86400 ] &&
                [ "$(val "$NS" nf_conntrack_tcp_timeout_close_wait)" = 3600 ]; then
                ok "--init-only: established 24h (was $est0) and CLOSE_WAIT 1h in the namespace"
        else
                bad "--init-only defaults" "exit $rc; $(snapshot "$NS"); $(tail -3 "$TMP/err")"
        fi
        [ "$(val "$NS" nf_conntrack_udp_timeout)" = "$udp0" ] && [ "$(val "$NS" nf_conntrack_tcp_be_liberal)" = 0 ] &&
                ok "unset settings are left (udp $udp0, be_liberal 0)" || bad "unset settings" "$(snapshot "$NS")"
        grep -q "set net.netfilter.nf_conntrack_tcp_timeout_close_wait=3600 (was" "$TMP/err" &&
                ok "the change is logged" || bad "log of the change" "$(cat "$TMP/err")"

        # --- every setting, then the same again with /proc/sys read-only ---
        args=(--init-only --mode nftables --conntrack-tcp-be-liberal --conntrack-udp-timeout 45s
                --conntrack-udp-timeout-stream 150s --conntrack-tcp-timeout-close-wait 2h
                --conntrack-tcp-timeout-established 3h)
        nlp_ns "$NS" "${args[@]}"
        got="$(val "$NS" nf_conntrack_tcp_be_liberal) $(val "$NS" nf_conntrack_udp_timeout)"
        got="$got $(val "$NS" nf_conntrack_udp_timeout_stream) $(val "$NS" nf_conntrack_tcp_timeout_close_wait)"
        got="$got $(val "$NS" nf_conntrack_tcp_timeout_established)"
        [ $rc = 0 ] && [ "$got" = "1 45 150 7200 10800" ] &&
                ok "be_liberal, UDP timeouts, TCP timeouts set: $got" || bad "all settings" "exit $rc; $got"
        nlp_ro "$NS" "${args[@]}"
        [ $rc = 0 ] && [ "$(errlines)" = 0 ] &&
                ok "read-only /proc/sys, every value already set: nothing to write, exit 0" ||
                bad "read-only /proc/sys, values equal" "exit $rc; $(cat "$TMP/err")"
        nlp_ro "$NS" --init-only --mode nftables --conntrack-tcp-timeout-close-wait 3h --conntrack-udp-timeout 50s \
                --conntrack-tcp-timeout-established 3h
        line=$(grep '^E' "$TMP/err")
        if [ $rc = 1 ] && [ "$(errlines)" = 1 ] && grep -q "/proc/sys is read-only" <<<"$line" &&
                grep -q "nf_conntrack_tcp_timeout_close_wait=10800 (is 7200)" <<<"$line" &&
                grep -q "nf_conntrack_udp_timeout=50 (is 45)" <<<"$line" &&
                ! grep -q "established" <<<"$line" && grep -q -- "--init-only" <<<"$line"; then
                ok "read-only /proc/sys and values to change: exit 1, one line naming each setting"
        else
                bad "read-only /proc/sys refusal" "exit $rc; $(cat "$TMP/err")"
        fi
        [ "$(val "$NS" nf_conntrack_tcp_timeout_close_wait)" = 7200 ] && ok "... and nothing changed" ||
                bad "read-only: value changed"

        # --- nf_conntrack_max is global: a child namespace leaves it ---
        max0=$(cat $NF/nf_conntrack_max)
        nlp_ns "$NS" --init-only --mode nftables --conntrack-min 2000000000
        if [ $rc = 0 ] && [ "$(cat $NF/nf_conntrack_max)" = "$max0" ] &&
                grep -q "can be set only from the host's network namespace; left as is" "$TMP/err"; then
                ok "a child namespace leaves nf_conntrack_max ($max0, 2000000000 asked for) and says why"
        else
                bad "nf_conntrack_max from a child namespace" "exit $rc; $(cat "$TMP/err")"
        fi
        nlp_ns "$NS" --init-only --mode nftables --conntrack-max-per-core 0 --conntrack-tcp-timeout-close-wait 0 \
                --conntrack-tcp-timeout-established 0 --conntrack-min 2000000000
        [ $rc = 0 ] && ! grep -q "conntrack" "$TMP/err" &&
                ok "every setting 0: nothing looked at" || bad "settings 0" "$(cat "$TMP/err")"

        # --- the daemon applies them at start, and its oom_score_adj ---
        EXTRA=()
        start_daemon() { # NS LOG PREFIX...: nlproxy daemon on examples/redis (+ EXTRA), PID in $dpid
                local ns=$1 log=$2
                shift 2
                rm -f "$TMP/pid"
                ip netns exec "$ns" "$@" sh -c 'echo $$ >"$0"; exec "$@"' "$TMP/pid" "$BIN" \
                        --manifests examples/redis --mode nftables --hostname-override node-a \
                        --healthz-bind-address 127.0.0.1:10256 --metrics-bind-address 127.0.0.1:10249 \
                        --sync-period 5s "${EXTRA[@]}" 2>"$log" &
                IPPIDS+=($!)
                wait_for 5 test -s "$TMP/pid" || return 1
                dpid=$(cat "$TMP/pid")
                PIDS+=("$dpid")
        }
        healthz() { ip netns exec "$1" curl -s -m 2 -o /dev/null -w '%{http_code}' http://127.0.0.1:10256/healthz |
                        grep -qx 200; }
        stop_daemon() {
                kill -TERM "$dpid" 2>/dev/null
                wait_for 5 sh -c "! kill -0 $dpid 2>/dev/null"
        }
        # Raising needs no privilege.
        EXTRA=(--oom-score-adj 500)
        if start_daemon "$NS2" "$TMP/d1.log" choom -n 0 -- && wait_for 10 healthz "$NS2"; then
                if [ "$(val "$NS2" nf_conntrack_tcp_timeout_close_wait)" = 3600 ] &&
                        [ "$(val "$NS2" nf_conntrack_tcp_timeout_established)" = 86400 ]; then
                        ok "the daemon sets the conntrack timeouts of its namespace at start"
                else
                        bad "daemon conntrack" "$(snapshot "$NS2")"
                fi
                adj=$(cat /proc/$dpid/oom_score_adj)
                [ "$adj" = 500 ] && ok "--oom-score-adj 500: the daemon's oom_score_adj is 500" ||
                        bad "--oom-score-adj 500" "$adj"
        else
                bad "daemon start" "$(tail -5 "$TMP/d1.log")"
        fi
        stop_daemon
        EXTRA=()
        # Lowering it to kube-proxy's -999 needs CAP_SYS_RESOURCE (bit 24).
        if (( 0x$(awk '/^CapEff/ { print $2 }' /proc/self/status) >> 24 & 1 )); then
                if start_daemon "$NS2" "$TMP/d3.log" choom -n 0 -- && wait_for 10 healthz "$NS2"; then
                        adj=$(cat /proc/$dpid/oom_score_adj)
                        [ "$adj" = -999 ] && ok "the daemon's oom_score_adj is -999 by default" ||
                                bad "default oom_score_adj" "$adj; $(grep oom "$TMP/d3.log")"
                else
                        bad "daemon start" "$(tail -5 "$TMP/d3.log")"
                fi
                stop_daemon
        else
                echo "note this shell lacks CAP_SYS_RESOURCE: -999 itself is checked where the test has it (CI)"
        fi
        # Without CAP_SYS_RESOURCE (as in the real cluster's pods): one line, and it runs on.
        if start_daemon "$NS2" "$TMP/d2.log" choom -n 0 -- setpriv --inh-caps=-sys_resource \
                --bounding-set=-sys_resource -- && wait_for 10 healthz "$NS2"; then
                adj=$(cat /proc/$dpid/oom_score_adj)
                n=$(grep -c "oom_score_adj: cannot set -999, it stays 0: Permission denied (lowering it needs CAP_SYS_RESOURCE); going on" "$TMP/d2.log")
                [ "$adj" = 0 ] && [ "$n" = 1 ] && kill -0 "$dpid" &&
                        ok "without CAP_SYS_RESOURCE: one clear line, oom_score_adj stays 0, the daemon serves" ||
                        bad "oom refusal" "adj $adj; $(grep -i oom "$TMP/d2.log")"
        else
                bad "daemon start without CAP_SYS_RESOURCE" "$(tail -5 "$TMP/d2.log")"
        fi
        stop_daemon

        after=$(snapshot)
        [ "$before" = "$after" ] && ok "the host's values are unchanged:$after" ||
                bad "host values changed" "before:$before after:$after"
else
        # ======== inside the VM: global settings from the initial namespace ========
        ncpu=$(getconf _NPROCESSORS_ONLN)
        want=$((32768 * ncpu))
        [ $want -lt 131072 ] && want=131072
        echo 65536 >$NF/nf_conntrack_max
        echo 8192 >$HASH
        "$BIN" --init-only --mode nftables >"$TMP/out" 2>"$TMP/err"
        rc=$?
        [ $rc = 0 ] && [ "$(cat $NF/nf_conntrack_max)" = $want ] && [ "$(cat $HASH)" = $((want / 4)) ] &&
                ok "nf_conntrack_max 65536 -> $want (max(32768 x $ncpu CPUs, 131072)), hash size 8192 -> $((want / 4))" ||
                bad "global settings" "exit $rc; max $(cat $NF/nf_conntrack_max) hash $(cat $HASH); $(cat "$TMP/err")"
        grep -q "set net.netfilter.nf_conntrack_max=$want (was 65536)" "$TMP/err" &&
                grep -q "set the hash size to $((want / 4)) (was 8192)" "$TMP/err" && ok "both logged" ||
                bad "logs" "$(cat "$TMP/err")"
        "$BIN" --init-only --mode nftables --conntrack-min 262144 >"$TMP/out" 2>"$TMP/err"
        [ "$(cat $NF/nf_conntrack_max)" = 262144 ] && [ "$(cat $HASH)" = 65536 ] &&
                ok "--conntrack-min 262144: nf_conntrack_max 262144, hash size 65536" ||
                bad "--conntrack-min" "max $(cat $NF/nf_conntrack_max) hash $(cat $HASH)"
        # Only ever raised.
        echo 1048576 >$NF/nf_conntrack_max
        "$BIN" --init-only --mode nftables >"$TMP/out" 2>"$TMP/err"
        [ "$(cat $NF/nf_conntrack_max)" = 1048576 ] && [ "$(cat $HASH)" = 65536 ] &&
                ok "a higher nf_conntrack_max (1048576) is kept, and a large enough hash size" ||
                bad "raise only" "max $(cat $NF/nf_conntrack_max) hash $(cat $HASH)"
        # /sys read-only: kube-proxy's warning, not a failure.
        echo 65536 >$NF/nf_conntrack_max
        echo 8192 >$HASH
        unshare -m --propagation private sh -c 'mount -o remount,bind,ro /sys && exec "$@"' sh \
                "$BIN" --init-only --mode nftables >"$TMP/out" 2>"$TMP/err"
        rc=$?
        [ $rc = 0 ] && [ "$(cat $NF/nf_conntrack_max)" = $want ] && [ "$(cat $HASH)" = 8192 ] &&
                grep -q "^W.*/sys is read-only: cannot raise the conntrack hash size from 8192 to $((want / 4))" \
                        "$TMP/err" &&
                ok "read-only /sys: nf_conntrack_max set, the hash size left with a warning, exit 0" ||
                bad "read-only /sys" "exit $rc; max $(cat $NF/nf_conntrack_max) hash $(cat $HASH); $(cat "$TMP/err")"
        # /proc/sys read-only: refused, naming the setting.
        echo 65536 >$NF/nf_conntrack_max
        unshare -m --propagation private sh -c \
                'mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && exec "$@"' sh \
                "$BIN" --init-only --mode nftables >"$TMP/out" 2>"$TMP/err"
        rc=$?
        [ $rc = 1 ] && grep -q "^E.*/proc/sys is read-only: cannot set net.netfilter.nf_conntrack_max=$want (is 65536)" \
                "$TMP/err" && [ "$(cat $NF/nf_conntrack_max)" = 65536 ] &&
                ok "read-only /proc/sys: exit 1, the line names nf_conntrack_max" ||
                bad "read-only /proc/sys" "exit $rc; $(cat "$TMP/err")"

        # --- IPVS mode: --init-only sets its sysctls too (in a namespace) ---
        ip netns add "$NS" || skip "cannot create a network namespace"
        ip -n "$NS" link set lo up
        ip netns exec "$NS" sh -c 'echo 0 >/proc/sys/net/ipv4/vs/conntrack; echo 0 >/proc/sys/net/ipv4/conf/all/arp_ignore'
        ip netns exec "$NS" "$BIN" --init-only --mode ipvs --ipvs-strict-arp >"$TMP/out" 2>"$TMP/err"
        rc=$?
        got=$(ip netns exec "$NS" sh -c 'echo $(cat /proc/sys/net/ipv4/vs/conntrack /proc/sys/net/ipv4/vs/expire_nodest_conn \
                /proc/sys/net/ipv4/conf/all/arp_ignore /proc/sys/net/ipv4/conf/all/arp_announce \
                /proc/sys/net/netfilter/nf_conntrack_tcp_timeout_close_wait)')
        [ $rc = 0 ] && [ "$got" = "1 1 1 2 3600" ] &&
                ok "--init-only --mode ipvs: vs.conntrack, expire_nodest_conn, strict ARP and conntrack set" ||
                bad "--init-only --mode ipvs" "exit $rc; $got; $(cat "$TMP/err")"
fi

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
