#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The global conntrack settings (nf_conntrack_max, the hash size) can only
# be exercised from a kernel's initial network namespace, which on this
# machine is the host's: tests/vm/run boots Debian's kernel under QEMU and
# runs tests/conntrack.sh there, --vm (nf_conntrack_max and the hash size
# raised from the guest's initial namespace, read-only /sys and /proc/sys,
# IPVS mode's --init-only) and in host mode (the namespaced part again, with
# the guest's root, which has CAP_SYS_RESOURCE: oom_score_adj -999). Needs
# root and qemu (make deps); a skip says why, and CI never skips.
set -uo pipefail
cd "$(dirname "$0")/.."

skip() {
	echo "SKIP conntrack_vm: $*"
	if [ "${CI:-}" = true ]; then echo "0 passed, 1 failed"; exit 1; fi
	exit 0
}
[ "$(id -u)" = 0 ] || skip "needs root (the VM's cache, network namespaces inside the guest)"
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is not installed (make deps)"
[ -x build/nlproxy ] || { echo "conntrack_vm: build/nlproxy missing (make all)"; exit 1; }

exec tests/vm/run --timeout 900 -e CI="${CI:-}" \
	'bash tests/conntrack.sh --vm; a=$?; bash tests/conntrack.sh; b=$?; [ $a = 0 ] && [ $b = 0 ]'
