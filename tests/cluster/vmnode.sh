#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# A cluster node inside the QEMU guest of tests/vm/run, for make e2e
# MODE=ipvs: this machine's kernel has no IPVS, the guest's Debian kernel has.
# Run by tests/cluster/cluster.sh (node_add with the node in CLUSTER_VM_NODES),
# never by hand:
#
#   tests/vm/run --tap TAP --share CLUSTER_DIR ... bash tests/cluster/vmnode.sh NODE_DIR
#
# NODE_DIR (on the shared folder, written by the host) holds vmnode.env (the
# node's name, address, gateway, image archives, containerd socket, kubelet
# command line), the
# containerd and kubelet configurations, and log/, where this script writes
# containerd's and the kubelet's logs and, every VMNODE_DUMP_EVERY seconds,
# the node's IPVS table and nftables ruleset (the harness cannot enter the
# guest to read them when a spec fails).
#
# The guest is the node: its own kernel, network (eth0 on the harness's
# bridge through the tap), cgroup v2 hierarchy and host name. Whatever the
# node writes goes to tmpfs (/var/lib, /var/log, /run) and dies with the VM;
# the harness stops the node by stopping the VM (tests/vm/run's PID).
set -u
d=$1
# shellcheck source=/dev/null
. "$d/vmnode.env" || exit 1
log() { echo "vmnode: $(date +%T) $*"; }

ip link set eth0 up &&
        ip addr add "$NODE_IP/28" dev eth0 &&
        ip route add default via "$HOST_IP" || { log "eth0: cannot configure"; exit 1; }
sysctl -q -w net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 \
        net.bridge.bridge-nf-call-ip6tables=1 >/dev/null || { log "sysctls"; exit 1; }
hostname "$NODE_NAME"
# The host's root is read-only here: the node's state on tmpfs.
mount -t tmpfs -o mode=0755 vmnode-varlib /var/lib &&
        mount -t tmpfs -o mode=0755 vmnode-varlog /var/log &&
        mkdir -p /var/log/pods /var/log/containers /run/vmnode/cni || { log "mounts"; exit 1; }
# cgroup v2: the kubelet's root with every controller the kubelet asks for.
for c in cpuset cpu io memory pids hugetlb; do
        echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null
done
mkdir -p "/sys/fs/cgroup/$NODE_NAME" || { log "cgroup root"; exit 1; }
for c in cpuset cpu io memory pids hugetlb; do
        echo "+$c" >"/sys/fs/cgroup/$NODE_NAME/cgroup.subtree_control" 2>/dev/null
done

sock=$SOCK
containerd --config "$d/containerd.toml" >"$d/log/containerd.log" 2>&1 &
for ((i = 0; i < 240; i++)); do
        ctr --address "$sock" version >/dev/null 2>&1 && break
        sleep 0.5
done
ctr --address "$sock" version >/dev/null 2>&1 || { log "containerd did not start"; exit 1; }
log "containerd up"
for a in $IMAGES; do
        timeout 600 ctr --address "$sock" -n k8s.io images import --snapshotter overlayfs "$a" \
                >>"$d/log/import.log" 2>&1 || { log "import of $a failed"; exit 1; }
done
log "images imported"

# The command line cluster.sh's kubelet_start runs (_kubelet_args).
"${KUBELET_ARGS[@]}" >"$d/log/kubelet.log" 2>&1 &
kubelet=$!
log "kubelet started"

# The CNI configuration comes from the host once the Node has its podCIDR
# (cluster.sh's _node_cni); containerd watches its own folder with inotify,
# which does not see the host's writes on 9p: copied into a local one.
for ((i = 0; i < 1200; i++)); do
        [ -s "$d/cni/10-bridge.conflist" ] && cp "$d/cni/10-bridge.conflist" /run/vmnode/cni/ && break
        sleep 0.5
done
[ -s /run/vmnode/cni/10-bridge.conflist ] || { log "no CNI configuration from the host"; exit 1; }
log "CNI configured"

# Until the harness stops the VM: the kernel's tables now and then, bounded.
for ((i = 0; i < 2880; i++)); do
        kill -0 "$kubelet" 2>/dev/null || { log "the kubelet exited"; exit 1; }
        {
                ipvsadm -Ln
                ipvsadm -Ln --stats
        } >"$d/log/ipvs.txt.new" 2>&1 && mv "$d/log/ipvs.txt.new" "$d/log/ipvs.txt"
        nft list ruleset >"$d/log/nftables.txt.new" 2>&1 && mv "$d/log/nftables.txt.new" "$d/log/nftables.txt"
        sleep "${VMNODE_DUMP_EVERY:-15}"
done
log "stopping after $i rounds"
