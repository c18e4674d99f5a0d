#!/usr/bin/env bash
# The nlproxy demo, run by `make demo` after the build.
#
# Part 1: nlproxy reads the manifests in examples/redis and, without root and
# without touching the host's network, prints the rules it would program in
# every output format, traces a few packets through them and writes the
# headless services' DNS records as a hosts file.
#
# Part 2 (root only): the same story for real, on this machine, in network
# namespaces it creates: two nodes, pods running Debian's redis-server, and
# the nlproxy daemon programming node-a's nftables from the manifests. A
# client pod talks to the redis ClusterIP, redis-sfs-1 replicates from
# redis-sfs-0 by its headless DNS name, then an endpoint goes away and the
# traffic moves to the other pod. Everything it creates (namespaces,
# processes, /etc/netns/<name>) is removed on any exit, Ctrl-C included.
#
#   node-a (192.168.50.2, runs nlproxy)        node-b (192.168.50.3)
#     client       10.244.1.5                    redis-b      10.244.2.11
#     redis-a      10.244.1.10                   redis-sfs-1  10.244.2.21
#     redis-sfs-0  10.244.1.20
#   Pods hang off their node by a veth pair (the node end carries the pod
#   network's gateway, 10.244.<n>.1); the nodes share a veth "LAN" and route
#   each other's pod CIDR, as a host-gateway CNI would.
#
# Environment: NLPROXY (default build/nlproxy) is the binary to run;
# NLPROXY_DEMO_PART=1 stops after part 1.
# tests/demo.sh finds each part of the output by its "### " header, and the
# demo exits non-zero as soon as one step does not do what it shows.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

NLPROXY=${NLPROXY:-build/nlproxy}
MANIFESTS=examples/redis
# This node is node-a; pods come from 10.244.0.0/16, ClusterIPs from 10.96.0.0/12.
NODE_FLAGS=(--hostname-override node-a --cluster-cidr 10.244.0.0/16 --service-cluster-ip-range 10.96.0.0/12)
POD=10.244.1.5 # a client pod on node-a
CLUSTER_IP=10.96.0.10
SFS0_NAME=redis-sfs-0.redis-sfs.default.svc.cluster.local

section() { printf '\n### %s\n' "$*"; }
say() { printf '# %s\n' "$*"; }
die() {
        echo "demo: $*" >&2
        exit 1
}
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

# ---------------------------------------------------------------- cleanup
# One EXIT trap for both parts; each part registers what it creates.

TMPFILES=()   # files and directories to remove
PIDFILES=()   # processes we started, one PID per file (read when cleaning up)
NETNS=()      # network namespaces we created
ETCNETNS=()   # /etc/netns/<name> directories we created
ETCNETNS_ROOT_CREATED=

cleanup() {
        local f pid i n
        set +e
        for f in "${PIDFILES[@]}"; do
                pid=$(cat "$f" 2>/dev/null)
                [[ $pid =~ ^[0-9]+$ ]] && kill -TERM "$pid" 2>/dev/null
        done
        for f in "${PIDFILES[@]}"; do
                pid=$(cat "$f" 2>/dev/null)
                [[ $pid =~ ^[0-9]+$ ]] || continue
                for ((i = 0; i < 30; i++)); do
                        kill -0 "$pid" 2>/dev/null || break
                        sleep 0.1
                done
                kill -KILL "$pid" 2>/dev/null
        done
        for n in "${NETNS[@]}"; do
                ip netns del "$n" 2>/dev/null
        done
        for f in "${ETCNETNS[@]}"; do
                rm -rf -- "$f"
        done
        if [[ -n $ETCNETNS_ROOT_CREATED ]]; then
                rmdir /etc/netns 2>/dev/null
        fi
        for f in "${TMPFILES[@]}"; do
                rm -rf -- "$f"
        done
}
trap cleanup EXIT
trap 'echo "demo: interrupted, cleaning up" >&2; exit 130' INT TERM HUP

# ---------------------------------------------------------------- part 1

banner() {
        cat <<'BANNER'
nlproxy demo: a kube-proxy replacement that programs nftables and IPVS over netlink.
Input: examples/redis, a ClusterIP Service `redis` (10.96.0.10:6379, two ready pods)
and a headless Service `redis-sfs` of a StatefulSet, on node node-a.
Part 1 is a dry run: nothing on this host is changed.
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
        run "$NLPROXY" trace "$POD" "$CLUSTER_IP:6379/tcp" --manifests "$MANIFESTS" "${NODE_FLAGS[@]}"
        section "trace: pod -> redis ClusterIP, wrong port"
        run "$NLPROXY" trace "$POD" "$CLUSTER_IP:80/tcp" --manifests "$MANIFESTS" "${NODE_FLAGS[@]}"
        section "trace: pod -> unallocated address in the service CIDR"
        run "$NLPROXY" trace "$POD" 10.96.0.99:6379/tcp --manifests "$MANIFESTS" "${NODE_FLAGS[@]}"
}

hosts_demo() {
        local hosts
        hosts=$(mktemp "${TMPDIR:-/tmp}/nlproxy-hosts.XXXXXX")
        TMPFILES+=("$hosts")
        section "headless hosts file"
        run_quiet "$NLPROXY" --manifests "$MANIFESTS" --dry-run --output json "${NODE_FLAGS[@]}" \
                --headless-hosts-file "$hosts"
        run cat "$hosts"
        if [[ ! -s $hosts ]]; then
                die "$hosts is empty: no headless DNS records written"
        fi
}

# ---------------------------------------------------------------- part 2

# Unique per run, so that parallel runs never collide.
NS_PREFIX="nlpdemo$$-"
NS_NODE_A=${NS_PREFIX}node-a
NS_NODE_B=${NS_PREFIX}node-b
RUN=        # scratch directory of part 2
DAEMON_PIDFILE=

# Why part 2 cannot run here, or nothing.
netns_unavailable() {
        if [[ $(id -u) != 0 ]]; then
                echo "it needs root (network namespaces, nftables)"
        elif ! command -v ip >/dev/null; then
                echo "ip (iproute2) is not installed (make deps)"
        elif ! command -v nft >/dev/null; then
                echo "nft (nftables) is not installed (make deps)"
        elif ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
                echo "redis-server and redis-cli are not installed (make deps: redis-server, redis-tools)"
        elif ! command -v curl >/dev/null; then
                echo "curl is not installed (make deps)"
        fi
}

ns_add() {
        NETNS+=("$1")
        ip netns add "$1"
        ip -n "$1" link set lo up
}

# in_ns NS CMD...: runs CMD in NS, with NS's /etc/netns files (ip netns exec).
in_ns() {
        local ns=$1
        shift
        ip netns exec "$ns" "$@"
}

sysctls() { # NS KEY=VALUE...: written to /proc/sys (no procps needed)
        local ns=$1 kv script=
        shift
        for kv in "$@"; do
                script+="echo ${kv#*=} >/proc/sys/$(tr . / <<<"${kv%%=*}") && "
        done
        in_ns "$ns" sh -c "${script}true"
}

# The node's end of a pod's veth carries the pod network's gateway address
# (one /32 on every pod link of the node, as a point-to-point CNI plugin does)
# and a host route to the pod.
add_pod() { # NODE_NS POD_NAME POD_IP GATEWAY LINK
        local node=$1 pod=${NS_PREFIX}$2 ip=$3 gw=$4 link=$5
        ns_add "$pod"
        sysctls "$pod" net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
        ip -n "$node" link add "$link" type veth peer name eth0 netns "$pod"
        ip -n "$node" addr add "$gw/32" dev "$link"
        ip -n "$node" link set "$link" up
        ip -n "$node" route add "$ip/32" dev "$link"
        ip -n "$pod" addr add "$ip/32" dev eth0
        ip -n "$pod" link set eth0 up
        ip -n "$pod" route add "$gw/32" dev eth0
        ip -n "$pod" route add default via "$gw" dev eth0
}

build_topology() {
        local n
        for n in "$NS_NODE_A" "$NS_NODE_B"; do
                ns_add "$n"
                sysctls "$n" net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 \
                        net.ipv4.conf.default.rp_filter=0
        done
        # The node LAN: node-a's eth0 and node-b's eth0, one veth pair.
        ip -n "$NS_NODE_A" link add eth0 type veth peer name eth0 netns "$NS_NODE_B"
        ip -n "$NS_NODE_A" addr add 192.168.50.2/24 dev eth0
        ip -n "$NS_NODE_B" addr add 192.168.50.3/24 dev eth0
        ip -n "$NS_NODE_A" link set eth0 up
        ip -n "$NS_NODE_B" link set eth0 up
        ip -n "$NS_NODE_A" route add 10.244.2.0/24 via 192.168.50.3 dev eth0
        ip -n "$NS_NODE_B" route add 10.244.1.0/24 via 192.168.50.2 dev eth0

        add_pod "$NS_NODE_A" client 10.244.1.5 10.244.1.1 vclient
        add_pod "$NS_NODE_A" redis-a 10.244.1.10 10.244.1.1 vredis-a
        add_pod "$NS_NODE_A" redis-sfs-0 10.244.1.20 10.244.1.1 vsfs-0
        add_pod "$NS_NODE_B" redis-b 10.244.2.11 10.244.2.1 vredis-b
        add_pod "$NS_NODE_B" redis-sfs-1 10.244.2.21 10.244.2.1 vsfs-1
}

# wait_for SECONDS CMD...: polls every 0.2 s, bounded.
wait_for() {
        local end=$((SECONDS + $1))
        shift
        while ((SECONDS <= end)); do
                "$@" && return 0
                sleep 0.2
        done
        return 1
}

# start_bg PIDFILE NS CMD...: CMD in NS in the background; its PID (the same
# process: sh execs it) lands in PIDFILE and is killed on exit. Servers run
# under `timeout`, so that even a demo killed with SIGKILL leaves nothing
# running for long (timeout passes our SIGTERM on to them).
start_bg() {
        local pidfile=$1 ns=$2
        shift 2
        PIDFILES+=("$pidfile")
        in_ns "$ns" sh -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null &
        wait_for 5 test -s "$pidfile" || die "could not start $* in $ns"
}

rcli() { # NS HOST ARGS...: redis-cli with a bound on its run time
        local ns=$1 host=$2
        shift 2
        in_ns "$ns" timeout 5 redis-cli -h "$host" -p 6379 "$@"
}

start_redis() { # POD IP [ARGS...]
        local pod=$1 ip=$2
        shift 2
        mkdir -p "$RUN/$pod"
        start_bg "$RUN/$pod.pid" "${NS_PREFIX}$pod" timeout 600 redis-server --bind "$ip" --port 6379 \
                --protected-mode no --save '' --appendonly no --dir "$RUN/$pod" \
                --logfile "$RUN/$pod.log" "$@"
}

redis_up() { [[ $(rcli "${NS_PREFIX}$1" "$2" ping 2>/dev/null) == PONG ]]; }

# Not `nft list | grep -q`: under pipefail, grep quitting early fails nft with
# SIGPIPE. A listing that fails is neither "has" nor "lacks".
ruleset_grep() { # WANT(0 has, 1 lacks) STRING
        local rules
        rules=$(in_ns "$NS_NODE_A" nft list table ip nlproxy 2>/dev/null) || return 1
        if grep -qF -- "$2" <<<"$rules"; then
                (($1 == 0))
        else
                (($1 == 1))
        fi
}
ruleset_has() { ruleset_grep 0 "$1"; }
ruleset_lacks() { ruleset_grep 1 "$1"; }
healthz_up() { in_ns "$NS_NODE_A" curl -sf -m 2 -o /dev/null http://127.0.0.1:10256/healthz; }
replica_has_greeting() { [[ $(rcli "${NS_PREFIX}redis-sfs-1" 10.244.2.21 get greeting 2>/dev/null) == hello-from-redis-sfs-0 ]]; }
replica_up() {
        local info
        info=$(rcli "${NS_PREFIX}redis-sfs-1" 10.244.2.21 info replication 2>/dev/null) || return 1
        grep -q '^master_link_status:up' <<<"${info//$'\r'/}"
}

# GETs the key "pod" through the ClusterIP N times from the client; prints
# each answer, i.e. which pod served the connection.
whoami_through_service() {
        local i
        for ((i = 0; i < $1; i++)); do
                rcli "${NS_PREFIX}client" "$CLUSTER_IP" get pod
        done
}

netns_demo() {
        local why answers hosts_dir
        why=$(netns_unavailable)
        if [[ -n $why ]]; then
                section "netns: skipped"
                say "part 2 (network namespaces, real redis-server) is skipped: $why."
                say "Run \`make demo\` as root on Debian to see nlproxy program a node for real."
                return 0
        fi
        printf '\nPart 2: the same manifests programmed for real, in network namespaces named %s*.\n' "$NS_PREFIX"

        RUN=$(mktemp -d "${TMPDIR:-/tmp}/nlproxy-demo.XXXXXX")
        TMPFILES+=("$RUN")
        section "netns: topology"
        build_topology
        say "node-a: $(ip -n "$NS_NODE_A" -4 -br addr show dev eth0)"
        run ip -n "$NS_NODE_A" route show

        # The daemon watches a copy of the manifests, which part 2 edits later.
        mkdir -p "$RUN/manifests"
        cp "$MANIFESTS"/*.yaml "$RUN/manifests/"
        # `ip netns exec` shows /etc/netns/<ns>/hosts to that namespace as
        # /etc/hosts: nlproxy writes redis-sfs-1's, the client gets a copy.
        [[ -d /etc/netns ]] || ETCNETNS_ROOT_CREATED=yes
        for hosts_dir in "/etc/netns/${NS_PREFIX}redis-sfs-1" "/etc/netns/${NS_PREFIX}client"; do
                ETCNETNS+=("$hosts_dir")
                mkdir -p "$hosts_dir"
        done

        section "netns: nlproxy programs node-a"
        DAEMON_PIDFILE=$RUN/nlproxy.pid
        local daemon=("$NLPROXY" --manifests "$RUN/manifests" --mode nftables "${NODE_FLAGS[@]}"
                --min-sync-period 100ms --healthz-bind-address 127.0.0.1:10256
                --metrics-bind-address 127.0.0.1:10249
                --headless-hosts-file "/etc/netns/${NS_PREFIX}redis-sfs-1/hosts")
        printf '$ ip netns exec %s %s &\n' "$NS_NODE_A" "${daemon[*]}"
        # The daemon's lifetime is bounded even if this script is killed -9.
        start_bg "$DAEMON_PIDFILE" "$NS_NODE_A" timeout 600 "${daemon[@]}" 2>"$RUN/nlproxy.log"
        if ! wait_for 10 healthz_up || ! wait_for 5 ruleset_has "$CLUSTER_IP . tcp . 6379"; then
                cat "$RUN/nlproxy.log" >&2
                die "nlproxy did not program node-a within 15 s"
        fi
        say "nlproxy is up: /healthz answers 200 inside node-a"

        section "netns: nft list ruleset (node-a)"
        run ip netns exec "$NS_NODE_A" nft list ruleset

        section "netns: headless hosts file"
        wait_for 5 test -s "/etc/netns/${NS_PREFIX}redis-sfs-1/hosts" || die "nlproxy wrote no hosts file"
        cp "/etc/netns/${NS_PREFIX}redis-sfs-1/hosts" "/etc/netns/${NS_PREFIX}client/hosts"
        run cat "/etc/netns/${NS_PREFIX}redis-sfs-1/hosts"
        run ip netns exec "${NS_PREFIX}redis-sfs-1" getent hosts "$SFS0_NAME"

        section "netns: redis pods"
        start_redis redis-a 10.244.1.10
        start_redis redis-b 10.244.2.11
        start_redis redis-sfs-0 10.244.1.20
        start_redis redis-sfs-1 10.244.2.21 --replicaof "$SFS0_NAME" 6379
        local pod ip
        for pod in redis-a:10.244.1.10 redis-b:10.244.2.11 redis-sfs-0:10.244.1.20 redis-sfs-1:10.244.2.21; do
                ip=${pod#*:}
                pod=${pod%%:*}
                wait_for 10 redis_up "$pod" "$ip" || die "redis-server in $pod did not answer: $(tail -3 "$RUN/$pod.log")"
                say "$pod ($ip): redis-server $(rcli "${NS_PREFIX}$pod" "$ip" info server | tr -d '\r' |
                        sed -n 's/^run_id://p' | cut -c1-12)... is up"
        done
        # Each Deployment pod gets a key naming itself, to see who answers.
        run ip netns exec "${NS_PREFIX}redis-a" redis-cli -h 10.244.1.10 set pod redis-a
        run ip netns exec "${NS_PREFIX}redis-b" redis-cli -h 10.244.2.11 set pod redis-b

        section "netns: ping through the ClusterIP"
        answers=$(rcli "${NS_PREFIX}client" "$CLUSTER_IP" ping) || true
        printf '$ ip netns exec %s redis-cli -h %s ping\n%s\n' "${NS_PREFIX}client" "$CLUSTER_IP" "$answers"
        [[ $answers == PONG ]] || die "no PONG from $CLUSTER_IP:6379 through the proxy"

        section "netns: load balancing"
        say "20 connections from the client pod to $CLUSTER_IP:6379, each asking GET pod:"
        answers=$(whoami_through_service 20 | sort | uniq -c)
        printf '%s\n' "$answers"
        grep -qw redis-a <<<"$answers" && grep -qw redis-b <<<"$answers" ||
                die "both endpoints should have answered"

        section "netns: replication by headless name"
        say "redis-sfs-1 runs with --replicaof $SFS0_NAME 6379"
        wait_for 20 replica_up || die "redis-sfs-1 did not sync from redis-sfs-0 within 20 s: $(tail -3 "$RUN/redis-sfs-1.log")"
        rcli "${NS_PREFIX}redis-sfs-1" 10.244.2.21 info replication | tr -d '\r' |
                grep -E '^(role|master_host|master_port|master_link_status):'
        run ip netns exec "${NS_PREFIX}redis-sfs-0" redis-cli -h 10.244.1.20 set greeting hello-from-redis-sfs-0
        wait_for 5 replica_has_greeting ||
                die "the key did not reach the replica"
        run ip netns exec "${NS_PREFIX}redis-sfs-1" redis-cli -h 10.244.2.21 get greeting

        section "netns: endpoint removed"
        say "redis-a leaves the EndpointSlice (as when its pod is deleted); nlproxy sees the file change."
        # Everything from redis-a's "- addresses:" item to the next item goes.
        awk '/^  - addresses:/ { item = $0; getline; skip = ($0 ~ /10\.244\.1\.10$/);
                                  if (!skip) { print item; print } ; next }
             /^[^ ]/ { skip = 0 }
             !skip' "$MANIFESTS/10-redis.yaml" >"$RUN/10-redis.yaml.new"
        diff -u "$MANIFESTS/10-redis.yaml" "$RUN/10-redis.yaml.new" | sed -n '3,$p' || true
        mv "$RUN/10-redis.yaml.new" "$RUN/manifests/10-redis.yaml"
        wait_for 10 ruleset_lacks "10.244.1.10 . 6379" ||
                die "nlproxy did not remove the endpoint within 10 s: $(tail -3 "$RUN/nlproxy.log")"
        # One endpoint left: the service moved to the map of one-endpoint services.
        run ip netns exec "$NS_NODE_A" nft list map ip nlproxy epmap-1
        say "20 new connections to $CLUSTER_IP:6379:"
        answers=$(whoami_through_service 20 | sort | uniq -c)
        printf '%s\n' "$answers"
        grep -qw redis-b <<<"$answers" && ! grep -qw redis-a <<<"$answers" ||
                die "all connections should go to redis-b now"

        section "netns: clean-up"
        say "On exit the demo stops nlproxy and redis-server by PID, deletes its namespaces"
        say "(${NS_PREFIX}*) and /etc/netns entries; nothing outside them was touched."
}

main() {
        if [[ ! -x $NLPROXY ]]; then
                die "$NLPROXY not found; build it first (make build/nlproxy, or make demo)"
        fi
        banner
        dry_run_demo
        trace_demo
        hosts_demo
        if [[ ${NLPROXY_DEMO_PART:-2} != 1 ]]; then
                netns_demo
        fi
        printf '\ndemo: done\n'
}

main "$@"
