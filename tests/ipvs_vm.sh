#!/usr/bin/env bash
# The IPVS backend on a real IPVS kernel: this machine's kernel has none, so
# tests/vm/run boots Debian's (QEMU, software emulation) and runs, inside it,
# every flow of every conformance scenario (the shared ones and nlproxy's own
# tests/data/scenarios_*.json) with --backend ipvs (the
# same expectations as nftables; the flows listed in tests/data/ipvs_xfail.txt
# are reported with their reason) and tests/ipvs_live.py (ipvsadm-restore
# equivalence, graceful termination, restart). Needs root and qemu (make
# deps); a skip says why, and CI never skips.
set -uo pipefail
cd "$(dirname "$0")/.."

skip() {
	echo "SKIP ipvs_vm: $*"
	if [ "${CI:-}" = true ]; then echo "0 passed, 1 failed"; exit 1; fi
	exit 0
}
[ "$(id -u)" = 0 ] || skip "needs root (network namespaces inside the guest, the VM's cache)"
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is not installed (make deps)"
[ -x build/nlproxy ] || { echo "ipvs_vm: build/nlproxy missing (make all)"; exit 1; }

# Emulated CPUs are slow: the conformance agents get a minute to start (and
# the runner scales its deadlines with the guest's measured speed); the
# topologies of the three scenario files take ~30 min on a busy 2-core
# machine, so the runner's time limit is 50 min.
exec tests/vm/run --timeout 3600 -e NLC_READY_TIMEOUT=60 -e CI="${CI:-}" \
	'tests/conformance/run --backend ipvs -j 2 --time-limit 3000 --xfail-file tests/data/ipvs_xfail.txt \
	   tests/data/scenarios.json tests/data/scenarios_etp_local.json tests/data/scenarios_runner.json \
	   tests/data/scenarios_detect_local.json; a=$?;
	 python3 tests/ipvs_live.py; b=$?; [ $a = 0 ] && [ $b = 0 ]'
