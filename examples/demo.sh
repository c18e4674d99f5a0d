#!/usr/bin/env bash
# The nlproxy demo, run by `make demo` after the build.
#
# Part 1 (today): nlproxy reads the manifests in examples/redis and, without
# root and without touching the host's network, prints the rules it would
# program in every output format, traces a few packets through them and
# writes the headless services' DNS records as a hosts file.
#
# Part 2 (planned): a root-only demo in network namespaces with redis-server,
# the rules programmed for real; it goes in netns_demo below.
#
# Environment: NLPROXY (default build/nlproxy) is the binary to run.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

NLPROXY=${NLPROXY:-build/nlproxy}
MANIFESTS=examples/redis
# This node is node-a; pods come from 10.244.0.0/16, ClusterIPs from 10.96.0.0/12.
NODE_FLAGS=(--hostname-override node-a --cluster-cidr 10.244.0.0/16 --service-cluster-ip-range 10.96.0.0/12)
POD=10.244.1.5 # a client pod on node-a

# tests/demo.sh finds each part of the output by its "### " header.
section() { printf '\n### %s\n' "$*"; }
# Shows the command, then runs it; under set -e a failure ends the demo.
run() {
        printf '$ %s\n' "$*"
        "$@"
}
# The same with the command's standard output discarded.
run_quiet() {
        printf '$ %s >/dev/null\n' "$*"
        "$@" >/dev/null
}

banner() {
        cat <<'BANNER'
nlproxy demo: a kube-proxy replacement that programs nftables and IPVS over netlink.
Input: examples/redis, a ClusterIP Service `redis` (10.96.0.10:6379, two ready pods)
and a headless Service `redis-sfs` of a StatefulSet, on node node-a.
Everything below is a dry run: nothing on this host is changed.
BANNER
}

dry_run_demo() {
        local fmt
        for fmt in table nft ipvsadm json; do
                section "dry-run --output $fmt"
                run "$NLPROXY" --manifests "$MANIFESTS" --dry-run --output "$fmt" "${NODE_FLAGS[@]}"
        done
}

trace_demo() {
        section "trace: pod -> redis ClusterIP"
        run "$NLPROXY" trace "$POD" 10.96.0.10:6379/tcp --manifests "$MANIFESTS" "${NODE_FLAGS[@]}"
        section "trace: pod -> redis ClusterIP, wrong port"
        run "$NLPROXY" trace "$POD" 10.96.0.10:80/tcp --manifests "$MANIFESTS" "${NODE_FLAGS[@]}"
        section "trace: pod -> unallocated address in the service CIDR"
        run "$NLPROXY" trace "$POD" 10.96.0.99:6379/tcp --manifests "$MANIFESTS" "${NODE_FLAGS[@]}"
}

hosts_demo() {
        local hosts
        hosts=$(mktemp "${TMPDIR:-/tmp}/nlproxy-hosts.XXXXXX")
        # The trap outlives this function: remove the file whichever way the demo ends.
        trap 'rm -f "'"$hosts"'"' EXIT
        section "headless hosts file"
        run_quiet "$NLPROXY" --manifests "$MANIFESTS" --dry-run --output json "${NODE_FLAGS[@]}" \
                --headless-hosts-file "$hosts"
        run cat "$hosts"
        if [[ ! -s $hosts ]]; then
                echo "demo: $hosts is empty: no headless DNS records written" >&2
                return 1
        fi
}

# Planned (needs root): network namespaces for the node, pods and a client,
# redis-server as the endpoints, nlproxy --once programming the node, and
# redis-cli through the ClusterIP. Must clean up after itself on any exit.
# netns_demo() { ...; }

main() {
        if [[ ! -x $NLPROXY ]]; then
                echo "demo: $NLPROXY not found; build it first (make build/nlproxy, or make demo)" >&2
                exit 1
        fi
        banner
        dry_run_demo
        trace_demo
        hosts_demo
        printf '\ndemo: done\n'
}

main "$@"
