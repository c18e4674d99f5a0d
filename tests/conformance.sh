#!/usr/bin/env bash
# Every flow of every conformance scenario, for real: the nftables
# backend programs a node namespace and packets cross namespaces
# (tests/conformance/run). Needs root; a skip says why, and CI never skips.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	echo "SKIP conformance: needs root for network namespaces"
	if [ "${CI:-}" = true ]; then echo "0 passed, 1 failed"; exit 1; fi
	exit 0
fi
# The shared scenarios, then nlproxy's own (issue 11: eTP Local without a
# local endpoint; the runner's affinity and legacy-address cases; issue 14:
# each --detect-local-mode).
files=(tests/data/scenarios.json tests/data/scenarios_etp_local.json tests/data/scenarios_runner.json
	tests/data/scenarios_detect_local.json)
tests/conformance/run --backend nftables -j 2 "${files[@]}" || exit 1
# The same flows with the service dispatch split over shard tables (what
# large clusters get; docs/nftables-ruleset.md): the masquerade marking in
# the main table must run before any shard's DNAT.
exec tests/conformance/run --backend nftables -j 2 --flag=--nftables-shards=4 "${files[@]}"
