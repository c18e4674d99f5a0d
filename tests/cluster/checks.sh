# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# What the check scripts of the real cluster (disruption.sh, crossnode.sh)
# share: their log lines, one PASS/FAIL line per check (also written to
# $CHECKS_OUT/results.txt for tests/cluster/results.py), and a teardown
# that keeps the logs of a failed run and fails the run when the cluster
# left something behind. Sourced after cluster.sh, deploy.sh and
# workload.sh, with CHECKS_NAME (the lines' prefix) and CHECKS_OUT set:
#
#   checks_start        results.txt begun (date, commit), the teardown armed
#   result NAME OK TEXT the check's line: PASS when OK is 0
#   checks_end          the "N passed, N failed" line; false when one failed
#
# A script may define checks_logs_extra DIR (more logs of a failed run),
# checks_down_extra (its own teardown, before the cluster's) and
# checks_leftovers_extra (what its teardown left, one line each).

TMP=
FAILED=0
PASSED=0

log() { echo "$CHECKS_NAME: $*" >&2; }
die() {
        log "$*"
        echo "$CHECKS_NAME: FAIL setup: $*"
        [ -f "$CHECKS_OUT/results.txt" ] && echo "FAIL setup: $*" >>"$CHECKS_OUT/results.txt"
        exit 1
}

_checks_has() { declare -F "$1" >/dev/null; }

_checks_cleanup() {
        local rc=$? left
        trap - EXIT INT TERM
        client_loops_kill
        if [ "$FAILED" != 0 ] || [ "$rc" != 0 ] || [ -n "${E2E_KEEP_LOGS:-}" ]; then
                if [ -n "$CLUSTER_DIR" ]; then
                        rm -rf "$CHECKS_OUT/logs"
                        mkdir -p "$CHECKS_OUT"
                        nlproxy_logs "$CHECKS_OUT/logs/nlproxy"
                        cluster_logs "$CHECKS_OUT/logs"
                        cp "$CLUSTER_DIR"/client-*.log "$CHECKS_OUT/logs/" 2>/dev/null
                        _checks_has checks_logs_extra && checks_logs_extra "$CHECKS_OUT/logs"
                        log "logs kept in $CHECKS_OUT/logs"
                fi
        fi
        _checks_has checks_down_extra && checks_down_extra
        cluster_down
        left=$(cluster_leftovers; _checks_has checks_leftovers_extra && checks_leftovers_extra)
        if [ -n "$left" ]; then
                log "left behind after the teardown:"
                sed 's/^/  /' <<<"$left" >&2
                echo "$CHECKS_NAME: FAIL teardown"
                echo "FAIL teardown: left behind: $(tr '\n' ';' <<<"$left")" >>"$CHECKS_OUT/results.txt"
                rc=1
        elif [ -n "$CLUSTER_RUN_ID" ]; then
                log "teardown: nothing left behind (run $CLUSTER_RUN_ID)"
        fi
        [ -n "$TMP" ] && rm -rf --one-file-system "$TMP"
        exit "$rc"
}

checks_start() {
        rm -rf "$CHECKS_OUT"
        mkdir -p "$CHECKS_OUT" || die "cannot write $CHECKS_OUT"
        printf 'date %s\ncommit %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(git rev-parse HEAD 2>/dev/null)" \
                >"$CHECKS_OUT/results.txt"
        trap _checks_cleanup EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
}

result() {
        local line
        if [ "$2" = 0 ]; then
                line="PASS $1: $3"
                PASSED=$((PASSED + 1))
        else
                line="FAIL $1: $3"
                FAILED=$((FAILED + 1))
        fi
        echo "$CHECKS_NAME: $line"
        echo "$line" >>"$CHECKS_OUT/results.txt"
}

checks_end() {
        echo "$CHECKS_NAME: $PASSED passed, $FAILED failed"
        [ "$FAILED" = 0 ]
}
