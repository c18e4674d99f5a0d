# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# A real Kubernetes cluster on this machine, for tests: the control plane of
# tests/cluster/apiserver.sh (etcd, kube-apiserver) plus kube-controller-manager
# and kube-scheduler on the host, and nodes, each a network namespace with its
# own containerd + runc and kubelet, a CNI bridge, no kube-proxy. Cluster DNS
# is Debian's dnsmasq fed from the API (tests/cluster/dnsfeed.py). Sourced,
# not run; root only:
#
#   . tests/cluster/cluster.sh
#   cluster_node_prereqs || skip "$CLUSTER_MISSING"
#   trap 'cluster_down' EXIT; trap 'exit 130' INT; trap 'exit 143' TERM
#   cluster_up DIR [NODES]      # everything, nodes Ready, DNS served
#   node_ctr 1 images import FILE   # containerd of node 1
#   node_exec 1 nft list ruleset    # a command in node 1's namespaces
#   kubectl_admin get nodes -o wide
#   kubelet_stop 1; kubelet_start 1 # a component restarted (its PID changes)
#   cluster_down                # everything stopped by PID and removed
#
# Layout. Each run takes a slot N (0-15) in a machine-wide registry
# (/run/nlproxy-cluster, under flock) so that two runs coexist; the slot
# gives its addresses and pod CIDRs, and CLUSTER_RUN_ID ("nl" + 5 random
# characters) names everything it creates:
#   host bridge  ${RUN_ID}br, address 198.51.100.(16N+1)/28 (the API server,
#                controller manager, scheduler, DNS listen there)
#   node i       network namespace ${RUN_ID}-n$i (= node name = host name =
#                cgroup root /${RUN_ID}-n$i), a veth ${RUN_ID}v$i on the
#                bridge, address 198.51.100.(16N+1+i) on its eth0
#   pod CIDRs    allocated by the controller manager from 10.244.(16N).0/20,
#                /24 per node: inside the packaged clusterCIDR 10.244.0.0/16;
#                routed on the host (and on the other nodes) via the node
#   services     10.96.0.0/16 (APISERVER_SERVICE_CIDR); DNS at 10.96.0.10,
#                the kube-dns Service whose EndpointSlice is the host's dnsmasq
# 198.51.100.0/24 is TEST-NET-2; this machine's own network is 192.0.2.0/24.
# Nothing of the host's own rules, links, addresses or routes changes: the
# harness adds its bridge, veths, one address on its bridge and routes over
# it, and removes them. The host does not forward: nodes reach the host's
# bridge address directly and the host reaches pods over its routes.
#
# A node's processes. containerd is started with nsenter into the node's
# network namespace plus a new mount and UTS namespace (unshare), where the
# host name is the node's name (e2e: hostNetwork pods of different nodes
# report different names) and these are node-private: a tmpfs on /run
# (containerd's shim sockets are fixed at /run/containerd/s, pod network
# namespaces at /run/netns, runc's state, the xtables lock), a tmpfs on
# /var/lib (the CNI cache, fixed at /var/lib/cni), and the node's own folder
# over /var/log (each kubelet deletes pod log folders it does not know).
# `ip netns exec` is not used: it remounts /sys, where /sys/fs/cgroup is
# then empty. The kubelet enters its containerd's namespaces (nsenter
# --target). Propagation is slave: the host's mounts are seen, the node's
# never leak out. Everything a node writes by default paths lands in its
# tmpfs and goes with its namespace.
#
# cgroups: this machine has cgroup v1 without systemd: cgroupfs drivers, and
# each kubelet has its own root (/NODE) made beforehand in every v1
# hierarchy (cpuset's with the root's cpus and mems), removed at the end.
# The capability bounding set lacks CAP_SYS_RESOURCE: runc cannot lower
# oom_score_adj, so containerd runs with restrict_oom_score_adj (the kubelet
# then logs harmless errors about OOM scores and rlimits).
#
# Host-global settings a cluster may change: the kubelet's sysctls
# (vm.overcommit_memory, vm.panic_on_oom, kernel.panic, kernel.panic_on_oops,
# kernel.keys.root_maxkeys and root_maxbytes), and the conntrack settings
# that kube-proxy (and nlproxy --init-only, the DaemonSet's privileged init
# container) raises: net.netfilter.nf_conntrack_max (writable only from the
# host's network namespace, so a node namespace's nlproxy leaves it) and the
# hash size /sys/module/nf_conntrack/parameters/hashsize (global, writable
# from any namespace by a privileged container). The first run in the
# registry saves them (sysctl.saved: names, sysfs.saved: paths), the last one
# out restores them, and cluster_leftovers reports any that differ.
#
# Teardown (cluster_down, for EXIT traps; safe at any point of cluster_up and
# twice): kubelets stopped, every container of a node's containerd killed
# and deleted through it, containerd stopped, then whatever still runs in the
# node's mount namespace or cgroup root (shims, containers: provably ours) is
# killed by PID; cgroups removed, namespaces, links and routes deleted,
# control plane stopped, sysctls restored, slot released. Processes are
# stopped by the PIDs recorded here, never by name. A run that died without
# its teardown (SIGKILL) leaves its state file in the registry; the next run
# that finds its owner gone cleans it up (_cluster_reap).
#
# A node in a VM (CLUSTER_VM_NODES, for IPVS, which this machine's kernel
# lacks): the node is the QEMU guest of tests/vm/run, booted with Debian's
# kernel, with a virtio card on a tap device ${RUN_ID}t$i on the bridge
# (same address plan), the cluster's folder shared read-write at its own
# path, and tests/cluster/vmnode.sh as its command: it configures eth0,
# starts containerd and the kubelet with the configurations made here,
# imports CLUSTER_VM_IMAGES and dumps the node's IPVS table and ruleset into
# the node's log folder. Everything the node writes lives in the guest's
# memory. Stopped by stopping the VM (tests/vm/run's PID, then QEMU's, both
# recorded); node_exec and node_ctr do not reach into it. The guest routes
# everything via the host, which does not forward: a cluster is all VM nodes
# or none (make e2e MODE=ipvs runs one).
#
# Variables (after cluster_up): CLUSTER_RUN_ID, CLUSTER_SLOT, CLUSTER_NODES,
# HOST_IP, NODE_NAME[i], NODE_IP[i], NODE_NETNS[i], NODE_DIR[i],
# NODE_POD_CIDR[i], CONTAINERD_PID[i], CONTAINERD_SOCK[i], KUBELET_PID[i],
# CM_PID, SCHED_PID, DNS_PID, DNS_IP (the kube-dns ClusterIP),
# CLUSTER_POD_CIDR (what the controller manager allocates from), and those
# of apiserver.sh (ADMIN_KUBECONFIG, APISERVER_URL, CLUSTER_CA, ...). Arrays
# are indexed from 1. Knobs, set before cluster_up: CLUSTER_DOMAIN
# (cluster.local), CLUSTER_PAUSE_IMAGE (registry.k8s.io/pause:3.9),
# CLUSTER_IMAGES_HOOK (a function called with the node index and its
# containerd address once containerd runs, before the kubelet starts: import
# images there), CLUSTER_NODE_TIMEOUT (180 s: a node Ready), CLUSTER_NICE (10),
# CLUSTER_CM_EXTRA_ARGS (an array: more kube-controller-manager arguments,
# e.g. a higher --kube-api-qps for a benchmark), CLUSTER_VM_NODES (the indexes
# of the nodes run in a VM, e.g. "1"), CLUSTER_VM_IMAGES (the image archives a
# VM node imports), CLUSTER_VM_MEM (MiB, 4096), CLUSTER_VM_SMP (2).
# shellcheck source=tests/cluster/apiserver.sh
. "$(dirname "${BASH_SOURCE[0]}")/apiserver.sh"

CLUSTER_REGISTRY=${CLUSTER_REGISTRY:-/run/nlproxy-cluster}
CLUSTER_DOMAIN=${CLUSTER_DOMAIN:-cluster.local}
CLUSTER_PAUSE_IMAGE=${CLUSTER_PAUSE_IMAGE:-registry.k8s.io/pause:3.9}
CLUSTER_IMAGES_HOOK=${CLUSTER_IMAGES_HOOK:-}
CLUSTER_NODE_TIMEOUT=${CLUSTER_NODE_TIMEOUT:-180}
CLUSTER_NICE=${CLUSTER_NICE:-10}
CLUSTER_VM_NODES=${CLUSTER_VM_NODES:-}
CLUSTER_VM_IMAGES=${CLUSTER_VM_IMAGES:-}
CLUSTER_VM_MEM=${CLUSTER_VM_MEM:-4096}
CLUSTER_VM_SMP=${CLUSTER_VM_SMP:-2}
CLUSTER_VM_TIMEOUT=${CLUSTER_VM_TIMEOUT:-900}
# A VM node's containerd socket, in the guest's own /run.
_VM_CONTAINERD_SOCK=/run/containerd/containerd.sock
[ -n "${CLUSTER_CM_EXTRA_ARGS+x}" ] || CLUSTER_CM_EXTRA_ARGS=()
CLUSTER_RUN_ID=
CLUSTER_SLOT=
CLUSTER_NODES=0
CLUSTER_POD_CIDR=
HOST_IP=
DNS_IP=
CM_PID=
SCHED_PID=
DNS_PID=
declare -a NODE_NAME NODE_IP NODE_NETNS NODE_DIR NODE_POD_CIDR CONTAINERD_PID CONTAINERD_SOCK KUBELET_PID
declare -a _NODE_MNTNS NODE_VM VM_PID QEMU_PID
_CLUSTER_BRIDGE=
_CLUSTER_UP=
_CLUSTER_SYSCTLS="vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys
kernel.keys.root_maxbytes net.netfilter.nf_conntrack_max"
_CLUSTER_SYSFS="/sys/module/nf_conntrack/parameters/hashsize"
_CLUSTER_SELF=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
_CLUSTER_PYTHON=

# Whether this machine can run nodes; CLUSTER_MISSING says what it lacks.
cluster_node_prereqs() {
        local t miss=
        cluster_prereqs || miss=" ${CLUSTER_MISSING#needs }"
        [ "$(id -u)" = 0 ] || miss="$miss root"
        for t in containerd containerd-shim-runc-v2 runc ctr dnsmasq nsenter unshare iptables flock ip; do
                command -v "$t" >/dev/null || miss="$miss $t"
        done
        for t in bridge host-local loopback portmap; do
                [ -x "/usr/lib/cni/$t" ] || miss="$miss /usr/lib/cni/$t"
        done
        [ -d /sys/fs/cgroup/memory ] || miss="$miss cgroup-v1-memory"
        CLUSTER_MISSING=${miss:+needs$miss (make deps installs the Debian packages)}
        [ -z "$miss" ]
}

# --- the machine-wide registry: slots, saved sysctls, dead runs' leftovers ---

# _registry_lock: FD 9 holds an flock on the registry's lock file, the one
# the path names (a run that removed the registry meanwhile invalidates
# the file another run was waiting on).
_registry_lock() {
        local i
        for ((i = 0; i < 20; i++)); do
                mkdir -p "$CLUSTER_REGISTRY" || return 1
                exec 9>>"$CLUSTER_REGISTRY/lock" || return 1
                flock -w 60 9 || { exec 9>&-; return 1; }
                [ "$(stat -L -c %i /proc/self/fd/9)" = "$(stat -c %i "$CLUSTER_REGISTRY/lock" 2>/dev/null)" ] && return 0
                exec 9>&-
        done
        return 1
}
_registry_unlock() { exec 9>&-; }

# The state file of a run: lines `key value` of what it created, so that a
# run whose harness died can be cleaned up by the next one.
_cluster_state() { echo "$1 $2" >>"$CLUSTER_REGISTRY/slot.$CLUSTER_SLOT/state"; }

# _cluster_reap DIR: the leftovers of a dead run (its owner is gone): its
# processes (by recorded PID, while still the recorded program), then the
# processes in its nodes' mount namespaces and cgroups, cgroups, links,
# namespaces.
_cluster_reap() {
        local dir=$1 key val pid exe
        _cluster_log "cleaning up after a dead run ($(cat "$dir/owner" 2>/dev/null))"
        while read -r key val; do
                case $key in
                pid)
                        pid=${val%% *} exe=${val#* }
                        _cluster_stop "$pid" "$exe" 5
                        ;;
                esac
        done <"$dir/state"
        while read -r key val; do
                case $key in
                mntns) _cluster_kill_ns "$val" ;;
                cgroup) _cluster_kill_cgroup "$val" ;;
                esac
        done <"$dir/state"
        while read -r key val; do
                case $key in
                cgroup) _cluster_rm_cgroup "$val" ;;
                netns) ip netns del "$val" 2>/dev/null ;;
                link) ip link del "$val" 2>/dev/null ;;
                esac
        done <"$dir/state"
        rm -rf "$dir"
}

# _slot_take: a free slot for this run (reaping dead runs' slots), the
# sysctls saved when it is the only run.
_slot_take() {
        local n d owner
        _registry_lock || { _cluster_log "cannot lock $CLUSTER_REGISTRY"; return 1; }
        for d in "$CLUSTER_REGISTRY"/slot.*; do
                [ -d "$d" ] || continue
                owner=$(cut -d' ' -f1 "$d/owner" 2>/dev/null)
                # The owner's start time as well: its PID may have been reused.
                if [ -z "$owner" ] || [ "$(cat "$d/owner" 2>/dev/null)" != "$owner $(_pid_start "$owner")" ]; then
                        _cluster_reap "$d"
                fi
        done
        CLUSTER_SLOT=
        for ((n = 0; n < 16; n++)); do
                if mkdir "$CLUSTER_REGISTRY/slot.$n" 2>/dev/null; then
                        CLUSTER_SLOT=$n
                        break
                fi
        done
        if [ -z "$CLUSTER_SLOT" ]; then
                _registry_unlock
                _cluster_log "all 16 slots of $CLUSTER_REGISTRY are taken"
                return 1
        fi
        _CLUSTER_SLOT_TAKEN=$CLUSTER_SLOT
        echo "$$ $(_pid_start $$)" >"$CLUSTER_REGISTRY/slot.$CLUSTER_SLOT/owner"
        : >"$CLUSTER_REGISTRY/slot.$CLUSTER_SLOT/state"
        # A setting that does not exist (nf_conntrack not loaded) is not
        # saved: there is nothing to put back.
        if [ ! -e "$CLUSTER_REGISTRY/sysctl.saved" ]; then
                for n in $_CLUSTER_SYSCTLS; do
                        d=$(sysctl -n "$n" 2>/dev/null) && echo "$n $d"
                done >"$CLUSTER_REGISTRY/sysctl.saved"
        fi
        if [ ! -e "$CLUSTER_REGISTRY/sysfs.saved" ]; then
                for n in $_CLUSTER_SYSFS; do
                        d=$(cat "$n" 2>/dev/null) && echo "$n $d"
                done >"$CLUSTER_REGISTRY/sysfs.saved"
        fi
        _CLUSTER_SYSCTL_SAVED=$(cat "$CLUSTER_REGISTRY/sysctl.saved")
        _CLUSTER_SYSFS_SAVED=$(cat "$CLUSTER_REGISTRY/sysfs.saved")
        _registry_unlock
}

# _host_settings_changed: "KEY = NOW, was SAVED" for each saved host-global
# setting that differs (sysctls by name, /sys files by path).
_host_settings_changed() {
        local k v now
        while read -r k v; do
                [ -n "$k" ] || continue
                now=$(sysctl -n "$k" 2>/dev/null)
                [ "$now" = "$v" ] || echo "sysctl $k = $now, was $v"
        done <<<"${_CLUSTER_SYSCTL_SAVED:-}"
        while read -r k v; do
                [ -n "$k" ] || continue
                now=$(cat "$k" 2>/dev/null)
                [ "$now" = "$v" ] || echo "sysfs $k = $now, was $v"
        done <<<"${_CLUSTER_SYSFS_SAVED:-}"
}

# _slot_release: the slot freed; the last run out restores the sysctls and
# removes the registry.
_slot_release() {
        local k v others
        [ -n "$CLUSTER_SLOT" ] || return 0
        _registry_lock || { _cluster_log "cannot lock $CLUSTER_REGISTRY: slot $CLUSTER_SLOT kept"; return 1; }
        rm -rf "$CLUSTER_REGISTRY/slot.$CLUSTER_SLOT"
        CLUSTER_SLOT=
        others=$(find "$CLUSTER_REGISTRY" -maxdepth 1 -name 'slot.*' | head -1)
        if [ -z "$others" ]; then
                if [ -r "$CLUSTER_REGISTRY/sysctl.saved" ]; then
                        while read -r k v; do
                                [ "$(sysctl -n "$k" 2>/dev/null)" = "$v" ] || sysctl -q -w "$k=$v" >/dev/null
                        done <"$CLUSTER_REGISTRY/sysctl.saved"
                fi
                if [ -r "$CLUSTER_REGISTRY/sysfs.saved" ]; then
                        while read -r k v; do
                                [ "$(cat "$k" 2>/dev/null)" = "$v" ] || echo "$v" >"$k" ||
                                        _cluster_log "could not restore $k to $v"
                        done <"$CLUSTER_REGISTRY/sysfs.saved"
                fi
                rm -rf "$CLUSTER_REGISTRY"
        fi
        _registry_unlock
}

_pid_start() { cut -d' ' -f22 "/proc/$1/stat" 2>/dev/null; }

# --- processes of a node, found by namespace and cgroup (provably ours) ---

# _cluster_kill_ns INODE: SIGKILL to every process in mount namespace INODE.
_cluster_kill_ns() {
        local p try
        [ -n "$1" ] || return 0
        for ((try = 0; try < 50; try++)); do
                local left=
                for p in /proc/[0-9]*; do
                        [ "$(stat -L -c %i "$p/ns/mnt" 2>/dev/null)" = "$1" ] || continue
                        kill -KILL "${p#/proc/}" 2>/dev/null && left=1
                done
                [ -n "$left" ] || return 0
                sleep 0.1
        done
}

# _cgroup_dirs [all]: the v1 hierarchies the kubelet needs its root in
# (every mounted one but the unified); with "all", the unified one too: in
# this hybrid layout runc makes each container's cgroup there as well, so
# the node's root appears in it and has to go at the end.
_cgroup_dirs() {
        local m
        for m in /sys/fs/cgroup/*; do
                [ "$m" = /sys/fs/cgroup/unified ] && [ "${1:-}" != all ] && continue
                mountpoint -q "$m" && echo "$m"
        done
}

# _cluster_kill_cgroup ROOT: SIGKILL to every process under cgroup ROOT.
_cluster_kill_cgroup() {
        local c p try left
        for ((try = 0; try < 50; try++)); do
                left=
                for c in $(_cgroup_dirs all); do
                        [ -d "$c/$1" ] || continue
                        for p in $(find "$c/$1" -name cgroup.procs -exec cat {} + 2>/dev/null); do
                                kill -KILL "$p" 2>/dev/null && left=1
                        done
                done
                [ -n "$left" ] || return 0
                sleep 0.1
        done
}

_cluster_rm_cgroup() {
        local c try
        for c in $(_cgroup_dirs all); do
                [ -d "$c/$1" ] || continue
                for ((try = 0; try < 50; try++)); do
                        find "$c/$1" -depth -type d -exec rmdir {} + 2>/dev/null
                        [ -d "$c/$1" ] || break
                        sleep 0.1
                done
                [ -d "$c/$1" ] && _cluster_log "cgroup $c/$1 could not be removed"
        done
}

# --- certificates and kubeconfigs ---

# cluster_cert NAME SUBJECT EXT...: pki/NAME.{key,crt} signed by the CA, the
# extension lines given.
cluster_cert() {
        local name=$1 subj=$2
        shift 2
        (
                cd "$CLUSTER_DIR/pki" || exit 1
                printf '%s\n' "$@" >"$name.ext"
                openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$name.key" \
                        -out "$name.csr" -subj "$subj" &&
                        openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
                                -extfile "$name.ext" -out "$name.crt"
        ) >>"$CLUSTER_DIR/logs/openssl.log" 2>&1 || { _cluster_log "openssl $name: $(tail -3 "$CLUSTER_DIR/logs/openssl.log")"; return 1; }
}

# cluster_kubeconfig FILE CERTNAME: a kubeconfig naming the API server with
# pki/CERTNAME's client certificate (absolute paths).
cluster_kubeconfig() {
        local pki=$CLUSTER_DIR/pki
        cat >"$1" <<EOF
apiVersion: v1
kind: Config
current-context: c
contexts: [{name: c, context: {cluster: c, user: u}}]
clusters: [{name: c, cluster: {server: "$APISERVER_URL", certificate-authority: $pki/ca.crt}}]
users: [{name: u, user: {client-certificate: $pki/$2.crt, client-key: $pki/$2.key}}]
EOF
}

# --- control plane ---

# _cluster_spawn LOG PIDVAR CMD...: CMD in the background, niced, its PID in
# PIDVAR and in the state file.
_cluster_spawn() {
        local log=$1 var=$2 pid
        shift 2
        nice -n "$CLUSTER_NICE" "$@" >"$log" 2>&1 &
        pid=$!
        disown "$pid"
        printf -v "$var" '%s' "$pid"
        _cluster_state pid "$pid $(readlink -f "$(command -v "$1")")"
}

# _cluster_spawn_wait PID SECONDS LOG CMD...: until CMD succeeds, while PID lives.
_cluster_spawn_wait() {
        local pid=$1 secs=$2 log=$3 i
        shift 3
        for ((i = 0; i < secs * 4; i++)); do
                if ! kill -0 "$pid" 2>/dev/null; then
                        _cluster_log "exited: $(grep -v '^[IW]' "$log" | tail -3)"
                        return 1
                fi
                "$@" >/dev/null 2>&1 && return 0
                sleep 0.25
        done
        _cluster_log "not ready in $secs s: $(tail -3 "$log")"
        return 1
}

controller_manager_start() {
        local log pki=$CLUSTER_DIR/pki port
        _CLUSTER_N=$((_CLUSTER_N + 1))
        log=$CLUSTER_DIR/logs/kube-controller-manager.$_CLUSTER_N.log
        port=$(cluster_free_port) || return 1
        # Node CIDR allocation from this run's /20; service account tokens
        # signed with the API server's key; every default controller
        # (EndpointSlice, namespaces, garbage collector, ...). No leader
        # election: one instance.
        _cluster_spawn "$log" CM_PID "$K8S_CM" --kubeconfig "$CLUSTER_DIR/cm.kubeconfig" \
                --authentication-kubeconfig "$CLUSTER_DIR/cm.kubeconfig" \
                --authorization-kubeconfig "$CLUSTER_DIR/cm.kubeconfig" \
                --bind-address 127.0.0.1 --secure-port "$port" --leader-elect=false \
                --allocate-node-cidrs --cluster-cidr "$CLUSTER_POD_CIDR" --node-cidr-mask-size 24 \
                --service-cluster-ip-range "$APISERVER_SERVICE_CIDR" \
                --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
                --use-service-account-credentials --controllers '*' --profiling=false \
                --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
                "${CLUSTER_CM_EXTRA_ARGS[@]}" || return 1
        _cluster_spawn_wait "$CM_PID" 60 "$log" curl -sfk -m 2 "https://127.0.0.1:$port/healthz"
}

controller_manager_stop() {
        _cluster_stop "$CM_PID" "$K8S_CM" 10
        CM_PID=
}

scheduler_start() {
        local log port
        _CLUSTER_N=$((_CLUSTER_N + 1))
        log=$CLUSTER_DIR/logs/kube-scheduler.$_CLUSTER_N.log
        port=$(cluster_free_port) || return 1
        _cluster_spawn "$log" SCHED_PID "$K8S_SCHED" --kubeconfig "$CLUSTER_DIR/sched.kubeconfig" \
                --authentication-kubeconfig "$CLUSTER_DIR/sched.kubeconfig" \
                --authorization-kubeconfig "$CLUSTER_DIR/sched.kubeconfig" \
                --bind-address 127.0.0.1 --secure-port "$port" --leader-elect=false --profiling=false || return 1
        _cluster_spawn_wait "$SCHED_PID" 60 "$log" curl -sfk -m 2 "https://127.0.0.1:$port/healthz"
}

scheduler_stop() {
        _cluster_stop "$SCHED_PID" "$K8S_SCHED" 10
        SCHED_PID=
}

# --- the node network ---

_cluster_network() {
        local base=$((16 * CLUSTER_SLOT))
        _CLUSTER_BRIDGE=${CLUSTER_RUN_ID}br
        HOST_IP=198.51.100.$((base + 1))
        CLUSTER_POD_CIDR=10.244.$base.0/20
        _cluster_state link "$_CLUSTER_BRIDGE"
        ip link add "$_CLUSTER_BRIDGE" type bridge || return 1
        ip addr add "$HOST_IP/28" dev "$_CLUSTER_BRIDGE" &&
                ip link set "$_CLUSTER_BRIDGE" up
}

# _node_network I: node I's namespace, its veth on the bridge, its address,
# a default route via the host; forwarding, and bridged pod traffic seen by
# netfilter (a reply from a pod to a pod on the same bridge after a DNAT),
# both per namespace.
_node_network() {
        local i=$1 ns veth
        ns=${NODE_NETNS[$i]} veth=${CLUSTER_RUN_ID}v$i
        _cluster_state netns "$ns"
        _cluster_state link "$veth"
        ip netns add "$ns" || return 1
        ip link add "$veth" type veth peer name eth0 netns "$ns" || return 1
        ip link set "$veth" master "$_CLUSTER_BRIDGE" up &&
                ip -n "$ns" link set lo up &&
                ip -n "$ns" addr add "${NODE_IP[$i]}/28" dev eth0 &&
                ip -n "$ns" link set eth0 up &&
                ip -n "$ns" route add default via "$HOST_IP" || return 1
        ip netns exec "$ns" sysctl -q -w net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 \
                net.bridge.bridge-nf-call-ip6tables=1 >/dev/null
}

# Node I's pod CIDR routed via the node, on the host and on the other nodes.
_node_routes() {
        local i=$1 j
        ip route replace "${NODE_POD_CIDR[$i]}" via "${NODE_IP[$i]}" dev "$_CLUSTER_BRIDGE" || return 1
        for ((j = 1; j <= CLUSTER_NODES; j++)); do
                [ "$j" = "$i" ] || [ -z "${CONTAINERD_PID[$j]:-}" ] || [ -n "${NODE_VM[$j]:-}" ] ||
                        ip -n "${NODE_NETNS[$j]}" route replace "${NODE_POD_CIDR[$i]}" via "${NODE_IP[$i]}" || return 1
        done
        [ -n "${NODE_VM[$i]:-}" ] && return 0
        for ((j = 1; j < i; j++)); do
                [ -n "${NODE_POD_CIDR[$j]:-}" ] && [ -z "${NODE_VM[$j]:-}" ] &&
                        { ip -n "${NODE_NETNS[$i]}" route replace "${NODE_POD_CIDR[$j]}" via "${NODE_IP[$j]}" || return 1; }
        done
        return 0
}

# --- containerd ---

_containerd_config() {
        local i=$1 d=${NODE_DIR[$1]} root state opt sock cni
        mkdir -p "$d/cni" "$d/log" || return 1
        if [ -n "${NODE_VM[$i]:-}" ]; then
                # The guest's own tmpfs (overlayfs cannot sit on 9p), and a
                # CNI folder of its own (vmnode.sh).
                root=/var/lib/containerd state=/run/containerd opt=/var/lib/containerd-opt
                sock=$_VM_CONTAINERD_SOCK cni=/run/vmnode/cni
        else
                root=$d/containerd/root state=$d/containerd/state opt=$d/containerd/opt
                sock=${CONTAINERD_SOCK[$i]} cni=$d/cni
                mkdir -p "$root" "$state" "$opt" || return 1
        fi
        cat >"$d/containerd.toml" <<EOF
version = 2
root = "$root"
state = "$state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$CLUSTER_PAUSE_IMAGE"
  # runc cannot lower a sandbox's oom_score_adj without CAP_SYS_RESOURCE,
  # which this machine's bounding set lacks.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$cni"
    max_conf_num = 1
EOF
}

# containerd_start I: node I's containerd in new mount and UTS namespaces
# inside the node's network namespace (see the top of this file).
containerd_start() {
        local i=$1 d=${NODE_DIR[$1]} log
        _CLUSTER_N=$((_CLUSTER_N + 1))
        log=$d/log/containerd.$_CLUSTER_N.log
        # The first start makes the namespaces; a restart (containerd_stop,
        # then this) enters the ones the kubelet still holds? No: both go
        # together; restarting containerd alone is not supported here.
        _cluster_spawn "$log" "CONTAINERD_PID[$i]" nsenter --net="/run/netns/${NODE_NETNS[$i]}" -- \
                unshare --mount --uts --propagation slave -- /bin/sh -c '
                        set -e
                        hostname "$1"
                        mount -t tmpfs -o mode=0755 nlproxy-node-run /run
                        mount -t tmpfs -o mode=0755 nlproxy-node-varlib /var/lib
                        mount --bind "$2/log" /var/log
                        mkdir -p /var/log/pods /var/log/containers
                        exec containerd --config "$2/containerd.toml"' sh "${NODE_NAME[$i]}" "$d" || return 1
        # The PID is containerd's once sh has exec'd it; its state line names
        # containerd, not nsenter.
        sed -i "s|^pid ${CONTAINERD_PID[$i]} .*|pid ${CONTAINERD_PID[$i]} $(readlink -f "$(command -v containerd)")|" \
                "$CLUSTER_REGISTRY/slot.$CLUSTER_SLOT/state"
        _cluster_spawn_wait "${CONTAINERD_PID[$i]}" 30 "$log" ctr --address "${CONTAINERD_SOCK[$i]}" version || return 1
        _NODE_MNTNS[$i]=$(stat -L -c %i "/proc/${CONTAINERD_PID[$i]}/ns/mnt") || return 1
        _cluster_state mntns "${_NODE_MNTNS[$i]}"
}

# node_ctr I ARGS...: ctr against node I's containerd, in the k8s.io namespace.
node_ctr() {
        local i=$1
        shift
        ctr --address "${CONTAINERD_SOCK[$i]}" -n k8s.io "$@"
}

# node_exec I CMD...: CMD in node I's network, mount and UTS namespaces.
node_exec() {
        local i=$1
        shift
        nsenter --target "${CONTAINERD_PID[$i]}" --mount --uts --net -- "$@"
}

# _containerd_drain I: every container of node I killed and deleted through
# its containerd (the shims exit with them).
_containerd_drain() {
        local i=$1 c
        [ -n "${CONTAINERD_PID[$i]:-}" ] && kill -0 "${CONTAINERD_PID[$i]}" 2>/dev/null || return 0
        for c in $(timeout 20 ctr --address "${CONTAINERD_SOCK[$i]}" -n k8s.io tasks ls -q 2>/dev/null); do
                timeout 10 ctr --address "${CONTAINERD_SOCK[$i]}" -n k8s.io tasks kill -s SIGKILL "$c" >/dev/null 2>&1
        done
        for c in $(timeout 20 ctr --address "${CONTAINERD_SOCK[$i]}" -n k8s.io containers ls -q 2>/dev/null); do
                timeout 10 ctr --address "${CONTAINERD_SOCK[$i]}" -n k8s.io tasks delete -f "$c" >/dev/null 2>&1
                timeout 10 ctr --address "${CONTAINERD_SOCK[$i]}" -n k8s.io containers delete "$c" >/dev/null 2>&1
        done
}

containerd_stop() {
        local i=$1
        _cluster_stop "${CONTAINERD_PID[$i]:-}" "$(command -v containerd)" 10
        CONTAINERD_PID[$i]=
}

# --- kubelet ---

_kubelet_config() {
        local i=$1 d=${NODE_DIR[$1]} name=${NODE_NAME[$1]}
        mkdir -p "$d/kubelet" "$d/kubelet-pki" || return 1
        cluster_cert "kubelet-$i" "/O=system:nodes/CN=system:node:$name" 'extendedKeyUsage=clientAuth' &&
                cluster_cert "kubelet-serving-$i" "/CN=$name" "subjectAltName=DNS:$name,IP:${NODE_IP[$i]}" \
                        'extendedKeyUsage=serverAuth' || return 1
        cluster_kubeconfig "$d/kubelet.kubeconfig" "kubelet-$i"
        # Pods with dnsPolicy Default (and the node) resolve through this:
        # the cluster's DNS, not the host's resolver (outside of the test).
        echo "nameserver $HOST_IP" >"$d/resolv.conf"
        cat >"$d/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: ${NODE_IP[$i]}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $CLUSTER_DIR/pki/kubelet-serving-$i.crt
tlsPrivateKeyFile: $CLUSTER_DIR/pki/kubelet-serving-$i.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $CLUSTER_CA}
authorization:
  mode: Webhook
# cgroup v1 without systemd; one root per node, made beforehand.
cgroupDriver: cgroupfs
cgroupRoot: /$name
cgroupsPerQOS: true
failSwapOn: false
clusterDNS: [$DNS_IP]
clusterDomain: $CLUSTER_DOMAIN
resolvConf: $d/resolv.conf
# The imported images have no registry to come back from: never collected.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# A shared, busy disk: no eviction for disk space.
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
serializeImagePulls: false
EOF
}

# kubelet_start I: node I's kubelet in its containerd's namespaces.
# _kubelet_args I SOCKET ROOTDIR: node I's kubelet command line in
# _KUBELET_ARGS, for kubelet_start and for a VM node's vmnode.sh alike.
_kubelet_args() {
        local i=$1 d=${NODE_DIR[$1]}
        _KUBELET_ARGS=("$K8S_KUBELET" --config "$d/kubelet.yaml" --kubeconfig "$d/kubelet.kubeconfig"
                --container-runtime-endpoint "unix://$2" --root-dir "$3" --cert-dir "$d/kubelet-pki"
                --hostname-override "${NODE_NAME[$i]}" --node-ip "${NODE_IP[$i]}"
                --pod-infra-container-image "$CLUSTER_PAUSE_IMAGE" --v 2)
}

kubelet_start() {
        local i=$1 d=${NODE_DIR[$1]} log
        _CLUSTER_N=$((_CLUSTER_N + 1))
        log=$d/log/kubelet.$_CLUSTER_N.log
        _kubelet_args "$i" "${CONTAINERD_SOCK[$i]}" "$d/kubelet"
        _cluster_spawn "$log" "KUBELET_PID[$i]" nsenter --target "${CONTAINERD_PID[$i]}" --mount --uts --net -- \
                "${_KUBELET_ARGS[@]}" || return 1
        sed -i "s|^pid ${KUBELET_PID[$i]} .*|pid ${KUBELET_PID[$i]} $(readlink -f "$K8S_KUBELET")|" \
                "$CLUSTER_REGISTRY/slot.$CLUSTER_SLOT/state"
        _cluster_spawn_wait "${KUBELET_PID[$i]}" 60 "$log" node_exec "$i" curl -sf -m 2 http://127.0.0.1:10248/healthz
}

kubelet_stop() {
        local i=$1
        _cluster_stop "${KUBELET_PID[$i]:-}" "$K8S_KUBELET" 10
        KUBELET_PID[$i]=
}

# _node_cni I: node I's CNI configuration from its Node's spec.podCIDR.
_node_cni() {
        local i=$1 d=${NODE_DIR[$1]} cidr
        cidr=$(kubectl_admin get node "${NODE_NAME[$i]}" -o jsonpath='{.spec.podCIDR}' 2>/dev/null)
        [ -n "$cidr" ] || return 1
        NODE_POD_CIDR[$i]=$cidr
        # A Linux bridge with host-local addresses from the Node's range
        # (hairpin: a pod reaching itself through a Service), portmap for
        # hostPort; no masquerade by the CNI: the service proxy decides.
        cat >"$d/cni/.10-bridge.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "nlproxy-e2e",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$cidr"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$d/cni-ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
        mv "$d/cni/.10-bridge.conflist" "$d/cni/10-bridge.conflist"
}

# --- the node ---

# node_add: one more node, Ready when it returns.
node_add() {
        local i=$((CLUSTER_NODES + 1)) c t
        CLUSTER_NODES=$i
        NODE_NAME[$i]=${CLUSTER_RUN_ID}-n$i
        NODE_NETNS[$i]=${NODE_NAME[$i]}
        NODE_IP[$i]=198.51.100.$((16 * CLUSTER_SLOT + 1 + i))
        NODE_DIR[$i]=$CLUSTER_DIR/n$i
        CONTAINERD_SOCK[$i]=${NODE_DIR[$i]}/containerd.sock
        [ "$i" -le 13 ] || { _cluster_log "at most 13 nodes"; return 1; }
        case " $CLUSTER_VM_NODES " in *" $i "*)
                NODE_VM[$i]=1
                _vm_node_add "$i"
                return
                ;;
        esac
        _node_network "$i" || { _cluster_log "node $i: network"; return 1; }
        # The kubelet's cgroup root in every v1 hierarchy; cpuset's needs
        # cpus and mems before anything can join it.
        _cluster_state cgroup "${NODE_NAME[$i]}"
        for c in $(_cgroup_dirs); do
                mkdir -p "$c/${NODE_NAME[$i]}" || return 1
                if [ -e "$c/cpuset.cpus" ]; then
                        cat "$c/cpuset.cpus" >"$c/${NODE_NAME[$i]}/cpuset.cpus" &&
                                cat "$c/cpuset.mems" >"$c/${NODE_NAME[$i]}/cpuset.mems" || return 1
                fi
        done
        _containerd_config "$i" && containerd_start "$i" || { _cluster_log "node $i: containerd"; return 1; }
        if [ -n "$CLUSTER_IMAGES_HOOK" ]; then
                "$CLUSTER_IMAGES_HOOK" "$i" "${CONTAINERD_SOCK[$i]}" || { _cluster_log "node $i: images"; return 1; }
        fi
        _kubelet_config "$i" && kubelet_start "$i" || { _cluster_log "node $i: kubelet"; return 1; }
        for ((t = 0; t < CLUSTER_NODE_TIMEOUT * 2; t++)); do
                _node_cni "$i" && break
                sleep 0.5
        done
        _node_ready "$i"
}

# _node_ready I: node I's pod CIDR routed, the node Ready.
_node_ready() {
        local i=$1
        [ -n "${NODE_POD_CIDR[$i]:-}" ] || { _cluster_log "node $i: no podCIDR"; return 1; }
        _node_routes "$i" || { _cluster_log "node $i: routes"; return 1; }
        kubectl_admin wait --for=condition=Ready "node/${NODE_NAME[$i]}" --timeout "${CLUSTER_NODE_TIMEOUT}s" >/dev/null ||
                { _cluster_log "node $i: not Ready: $(grep -E '^E' "${NODE_DIR[$i]}"/log/kubelet.*.log | tail -3)"; return 1; }
}

# _vm_node_add I: node I as a QEMU guest (see the top of this file).
_vm_node_add() {
        local i=$1 d=${NODE_DIR[$1]} tap=${CLUSTER_RUN_ID}t$1 log t qemu
        CONTAINERD_SOCK[$i]=
        _cluster_state link "$tap"
        ip tuntap add dev "$tap" mode tap &&
                ip link set "$tap" master "$_CLUSTER_BRIDGE" up || { _cluster_log "node $i: tap $tap"; return 1; }
        _containerd_config "$i" && _kubelet_config "$i" || { _cluster_log "node $i: configuration"; return 1; }
        # The guest's containerd socket and the kubelet's root on its tmpfs.
        _kubelet_args "$i" "$_VM_CONTAINERD_SOCK" /var/lib/kubelet
        {
                printf 'NODE_NAME=%q\nNODE_IP=%q\nHOST_IP=%q\nIMAGES=%q\nSOCK=%q\n' "${NODE_NAME[$i]}" "${NODE_IP[$i]}" \
                        "$HOST_IP" "$CLUSTER_VM_IMAGES" "$_VM_CONTAINERD_SOCK"
                printf 'KUBELET_ARGS=(%s)\n' "$(printf '%q ' "${_KUBELET_ARGS[@]}")"
        } >"$d/vmnode.env"
        _CLUSTER_N=$((_CLUSTER_N + 1))
        log=$d/log/vm.$_CLUSTER_N.log
        # Emulated (TCG), so slow: the VM outlives any run (the harness stops
        # it), and the node gets longer to be Ready.
        _cluster_spawn "$log" "VM_PID[$i]" bash "$_CLUSTER_ROOT/tests/vm/run" --timeout 86400 \
                -m "$CLUSTER_VM_MEM" --smp "$CLUSTER_VM_SMP" --tap "$tap" --share "$CLUSTER_DIR" \
                bash tests/cluster/vmnode.sh "$d" || return 1
        qemu=$(readlink -f "$(command -v qemu-system-x86_64)")
        for ((t = 0; t < 100; t++)); do
                QEMU_PID[$i]=$(cat "/proc/${VM_PID[$i]}/task/${VM_PID[$i]}/children" 2>/dev/null | tr ' ' '\n' |
                        while read -r p; do [ -n "$p" ] && [ "$(readlink "/proc/$p/exe")" = "$qemu" ] && echo "$p"; done)
                [ -n "${QEMU_PID[$i]}" ] && break
                kill -0 "${VM_PID[$i]}" 2>/dev/null || break
                sleep 0.2
        done
        [ -n "${QEMU_PID[$i]}" ] || { _cluster_log "node $i: no VM: $(tail -5 "$log")"; return 1; }
        _cluster_state pid "${QEMU_PID[$i]} $qemu"
        for ((t = 0; t < CLUSTER_VM_TIMEOUT * 2; t++)); do
                kill -0 "${VM_PID[$i]}" 2>/dev/null || { _cluster_log "node $i: the VM stopped: $(tail -5 "$log")"; return 1; }
                _node_cni "$i" && break
                sleep 0.5
        done
        _node_ready "$i" || { _cluster_log "node $i: $(tail -5 "$log")"; return 1; }
        _cluster_log "node $i (VM) Ready after $((t / 2)) s: $(grep -c . "$log") lines in $log"
}

# _node_remove I: node I's processes, cgroups and network gone.
_node_remove() {
        local i=$1
        if [ -n "${NODE_VM[$i]:-}" ]; then
                _cluster_stop "${VM_PID[$i]:-}" "$(command -v bash)" 15
                _cluster_stop "${QEMU_PID[$i]:-}" "$(command -v qemu-system-x86_64)" 5
                VM_PID[$i]='' QEMU_PID[$i]=''
                ip link del "${CLUSTER_RUN_ID}t$i" 2>/dev/null
                [ -n "${NODE_POD_CIDR[$i]:-}" ] && ip route del "${NODE_POD_CIDR[$i]}" 2>/dev/null
                return 0
        fi
        kubelet_stop "$i"
        _containerd_drain "$i"
        containerd_stop "$i"
        # Whatever is left in the node's mount namespace or cgroup root
        # (shims, containers) is ours.
        _cluster_kill_ns "${_NODE_MNTNS[$i]:-}"
        _cluster_kill_cgroup "${NODE_NAME[$i]}"
        _cluster_rm_cgroup "${NODE_NAME[$i]}"
        ip netns del "${NODE_NETNS[$i]}" 2>/dev/null
        ip link del "${CLUSTER_RUN_ID}v$i" 2>/dev/null
        [ -n "${NODE_POD_CIDR[$i]:-}" ] && ip route del "${NODE_POD_CIDR[$i]}" 2>/dev/null
        return 0
}

# --- cluster DNS ---

# dns_start: dnsmasq on the host's bridge address, fed by dnsfeed.py (the
# Services' ClusterIPs and ExternalNames, and the headless records that a
# second nlproxy instance, a dry run, writes with --headless-hosts-file),
# and the kube-dns Service (DNS_IP) whose EndpointSlice is that address: pods
# reach it through the service proxy, as they reach CoreDNS elsewhere.
dns_start() {
        local log d=$CLUSTER_DIR/dns
        mkdir -p "$d" || return 1
        _CLUSTER_N=$((_CLUSTER_N + 1))
        log=$CLUSTER_DIR/logs/dnsfeed.$_CLUSTER_N.log
        # The interpreter itself, not what PATH names: a wrapper (pyenv's
        # shim execs the real one) is not the executable that _cluster_stop
        # then finds behind the PID, and a stop that cannot prove the PID
        # ours leaves the process running (make e2e's leftover check caught
        # dnsfeed.py, its dnsmasq and its nlproxy that way).
        _CLUSTER_PYTHON=$(readlink -f "$(python3 -c 'import sys; print(sys.executable)')") &&
                [ -x "$_CLUSTER_PYTHON" ] || { _cluster_log "no python3"; return 1; }
        _cluster_spawn "$log" DNS_PID "$_CLUSTER_PYTHON" "$_CLUSTER_SELF/dnsfeed.py" --server "$APISERVER_URL" \
                --ca "$CLUSTER_CA" --cert "$CLUSTER_DIR/pki/admin.crt" --key "$CLUSTER_DIR/pki/admin.key" \
                --listen "$HOST_IP" --dir "$d" --domain "$CLUSTER_DOMAIN" \
                --nlproxy "$_CLUSTER_ROOT/build/nlproxy" --kubeconfig "$ADMIN_KUBECONFIG" || return 1
        kubectl_admin apply -f - >>"$CLUSTER_DIR/logs/kubectl.log" 2>&1 <<EOF || return 1
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  clusterIP: $DNS_IP
  ports:
    - {name: dns, port: 53, protocol: UDP}
    - {name: dns-tcp, port: 53, protocol: TCP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-host
  namespace: kube-system
  labels:
    kubernetes.io/service-name: kube-dns
    endpointslice.kubernetes.io/managed-by: nlproxy-test-harness
addressType: IPv4
ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
endpoints:
  - addresses: [$HOST_IP]
    conditions: {ready: true}
EOF
        _cluster_spawn_wait "$DNS_PID" 30 "$log" grep -q '^ready' "$d/status" || return 1
}

dns_stop() {
        # dnsfeed.py stops its dnsmasq and its nlproxy on SIGTERM.
        _cluster_stop "$DNS_PID" "${_CLUSTER_PYTHON:-python3}" 10
        DNS_PID=
}

# --- all of it ---

# cluster_up DIR [NODES]: the whole cluster in DIR (which the caller owns
# and removes): nodes Ready, DNS answering.
cluster_up() {
        local dir=$1 nodes=${2:-1} i t0=$SECONDS
        CLUSTER_RUN_ID=nl$(head -c 1024 /dev/urandom | tr -dc 'a-z0-9' | head -c 5)
        _slot_take || return 1
        _CLUSTER_UP=1
        _cluster_network || { _cluster_log "bridge"; return 1; }
        APISERVER_BIND=$HOST_IP
        APISERVER_ADVERTISE=$HOST_IP
        DNS_IP=${APISERVER_SERVICE_CIDR%.*/*}.10
        # Privileged pods (e2e's KubeProxy spec), the Node restriction for
        # kubelets, kubelet client certificate for exec, logs and proxy;
        # kubelets reached at their node IP (their names are nobody's DNS).
        APISERVER_EXTRA_ARGS+=(--allow-privileged=true --enable-admission-plugins NodeRestriction
                --kubelet-client-certificate "$dir/pki/apiserver-kubelet.crt"
                --kubelet-client-key "$dir/pki/apiserver-kubelet.key"
                --kubelet-preferred-address-types InternalIP)
        cluster_init "$dir" || return 1
        K8S_CM=$(cluster_bin kube-controller-manager) && K8S_SCHED=$(cluster_bin kube-scheduler) &&
                K8S_KUBELET=$(cluster_bin kubelet) || return 1
        cluster_cert apiserver-kubelet "/O=system:masters/CN=kube-apiserver-kubelet-client" 'extendedKeyUsage=clientAuth' &&
                cluster_cert cm "/CN=system:kube-controller-manager" 'extendedKeyUsage=clientAuth' &&
                cluster_cert sched "/CN=system:kube-scheduler" 'extendedKeyUsage=clientAuth' || return 1
        # The API server's own processes started through the harness's spawn
        # are etcd and kube-apiserver of apiserver.sh: recorded for a reap.
        etcd_start || return 1
        _cluster_state pid "$ETCD_PID $(readlink -f "$(command -v etcd)")"
        apiserver_start || return 1
        _cluster_state pid "$APISERVER_PID $(readlink -f "$K8S_APISERVER")"
        cluster_kubeconfig "$dir/cm.kubeconfig" cm && cluster_kubeconfig "$dir/sched.kubeconfig" sched
        controller_manager_start || { _cluster_log "kube-controller-manager"; return 1; }
        scheduler_start || { _cluster_log "kube-scheduler"; return 1; }
        dns_start || { _cluster_log "DNS"; return 1; }
        for ((i = 0; i < nodes; i++)); do
                node_add || return 1
        done
        _cluster_log "up in $((SECONDS - t0)) s: $CLUSTER_NODES node(s), run $CLUSTER_RUN_ID, slot $CLUSTER_SLOT, API $APISERVER_URL"
}

# cluster_logs DEST: the logs of every component (control plane, DNS,
# containerd, kubelet, pods) copied into DEST.
cluster_logs() {
        local i
        mkdir -p "$1" || return 1
        cp -r "$CLUSTER_DIR/logs" "$1/control-plane" 2>/dev/null
        for ((i = 1; i <= CLUSTER_NODES; i++)); do
                mkdir -p "$1/${NODE_NAME[$i]}"
                cp "${NODE_DIR[$i]}"/log/*.log "${NODE_DIR[$i]}"/log/*.txt "$1/${NODE_NAME[$i]}/" 2>/dev/null
                cp -rL "${NODE_DIR[$i]}/log/pods" "$1/${NODE_NAME[$i]}/pods" 2>/dev/null
        done
        return 0
}

# cluster_leftovers: what a cluster_down left behind, one line each (none:
# nothing): links, namespaces, routes, cgroups, mounts and processes of this
# run (by its run id and folder), its registry slot, and, when no other run
# holds a slot, the host-global settings (the kubelet's sysctls, conntrack's maximum and
# hash size) not back to their saved values.
cluster_leftovers() {
        local c p
        [ -n "$CLUSTER_RUN_ID" ] || return 0
        ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | grep "^$CLUSTER_RUN_ID" | sed 's/^/link /'
        ip netns list | awk '{print $1}' | grep "^$CLUSTER_RUN_ID" | sed 's/^/netns /'
        ip route show | grep -F "$CLUSTER_RUN_ID" | sed 's/^/route /'
        for c in $(_cgroup_dirs all); do
                ls -d "$c/$CLUSTER_RUN_ID"* 2>/dev/null | sed 's/^/cgroup /'
        done
        [ -n "$CLUSTER_DIR" ] && grep -F " $CLUSTER_DIR" /proc/self/mountinfo | awk '{print "mount " $5}'
        if [ -n "$CLUSTER_DIR" ]; then
                for p in /proc/[0-9]*; do
                        # 2>/dev/null first: a process may be gone before its file is opened.
                        tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF "$CLUSTER_DIR/" &&
                                echo "process ${p#/proc/}: $(tr '\0' ' ' 2>/dev/null <"$p/cmdline" | cut -c1-100)"
                done
        fi
        [ -n "${_CLUSTER_SLOT_TAKEN:-}" ] && [ -d "$CLUSTER_REGISTRY/slot.$_CLUSTER_SLOT_TAKEN" ] &&
                [ "$(cut -d' ' -f1 "$CLUSTER_REGISTRY/slot.$_CLUSTER_SLOT_TAKEN/owner" 2>/dev/null)" = $$ ] &&
                echo "registry slot.$_CLUSTER_SLOT_TAKEN"
        [ -d "$CLUSTER_REGISTRY" ] || _host_settings_changed
        return 0
}

# cluster_down: everything of cluster_up stopped and removed; for the
# caller's EXIT trap (safe twice and at any point of cluster_up).
cluster_down() {
        local i
        [ -n "$_CLUSTER_UP" ] || return 0
        dns_stop
        for ((i = CLUSTER_NODES; i >= 1; i--)); do
                _node_remove "$i"
        done
        scheduler_stop
        controller_manager_stop
        cluster_teardown
        [ -n "$_CLUSTER_BRIDGE" ] && ip link del "$_CLUSTER_BRIDGE" 2>/dev/null
        _slot_release
        _CLUSTER_UP=
}
