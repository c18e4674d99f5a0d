#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# make check's way into make e2e: Kubernetes' own sig-network e2e specs
# against nlproxy, deployed by its DaemonSet in a real two-node cluster
# (tests/cluster/e2e.sh), then the disruption checks in a cluster of their
# own (tests/cluster/disruption.sh), then the cross-node checks from an
# external client in a two-node cluster (tests/cluster/crossnode.sh), then
# the Services conformance specs in IPVS mode with the node in the QEMU guest
# of tests/vm (make e2e MODE=ipvs, about 9 minutes here). Runs when the
# Kubernetes binaries are there (../shared/kubernetes, or KUBE_BIN_DIR) and
# says so in one line when they are not (a failure under CI=true, which must
# not skip).
set -u
cd "$(dirname "$0")/.."
. tests/cluster/apiserver.sh

skip() {
        echo "SKIP e2e_cluster.sh: $1"
        if [ "${CI:-}" = true ]; then
                echo "0 passed, 1 failed (skipped under CI=true)"
                exit 1
        fi
        exit 0
}

[ -r "$K8S_SHARED_DIR/SHA256SUMS" ] || [ -x "$K8S_SHARED_DIR/kube-apiserver" ] ||
        skip "no Kubernetes binaries in $K8S_SHARED_DIR (set KUBE_BIN_DIR): make e2e not run"
[ "$(id -u)" = 0 ] || skip "make e2e needs root (network namespaces, containerd, kubelet)"
rc=0
bash tests/cluster/e2e.sh || rc=1
bash tests/cluster/disruption.sh || rc=1
bash tests/cluster/crossnode.sh || rc=1
E2E_MODE=ipvs bash tests/cluster/e2e.sh || rc=1
exit $rc
