#!/usr/bin/env bash
# The dry-run nftables script of every conformance case (and the IPVS
# companion script) must be accepted by the kernel: `nft -c -f` inside a
# scratch network namespace, which never touches the host's ruleset.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=build/nlproxy
passed=0 failed=0

skip() {
	echo "SKIP nft_check: $*"
	# CI must exercise the kernel: a skip there is a failure.
	if [ "${CI:-}" = true ]; then echo "0 passed, 1 failed"; exit 1; fi
	exit 0
}
[ -x "$bin" ] || { echo "nft_check: $bin missing (make all)"; exit 1; }
command -v nft >/dev/null || skip "nft is not installed (make deps)"
[ "$(id -u)" = 0 ] || skip "needs root for a scratch network namespace"

work=$(mktemp -d /tmp/nlproxy-nftcheck.XXXXXX)
ns=nlp-nftc-$$
cleanup() { ip netns del "$ns" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
ip netns add "$ns" || skip "cannot create a network namespace"

for f in tests/data/scenarios.json tests/data/scenarios_etp_local.json tests/data/scenarios_detect_local.json; do
	python3 tests/conformance/scenario_manifests.py "$f" "$work" >>"$work/cases" || exit 1
done
check() { # name file
	local out
	if out=$(ip netns exec "$ns" nft -c -f "$2" 2>&1); then
		echo "ok   $1"; passed=$((passed + 1))
	else
		echo "FAIL $1"; printf '%s\n' "$out" | head -5; failed=$((failed + 1))
	fi
}
while read -r c; do
	mapfile -t flags <"$work/$c/flags"
	if ! "$bin" "${flags[@]}" --manifests "$work/$c/objects.json" --dry-run --output nft >"$work/$c/out.nft" 2>"$work/$c/err"; then
		echo "FAIL $c: dry-run exited non-zero"; head -3 "$work/$c/err"; failed=$((failed + 1)); continue
	fi
	check "$c nft" "$work/$c/out.nft"
	if "$bin" "${flags[@]}" --manifests "$work/$c/objects.json" --dry-run --output ipvsadm >"$work/$c/out.ipvs" 2>>"$work/$c/err"; then
		sed -n '/^# nftables companion ruleset/,$p' "$work/$c/out.ipvs" >"$work/$c/companion.nft"
		if [ -s "$work/$c/companion.nft" ]; then check "$c ipvs-companion" "$work/$c/companion.nft"
		else echo "FAIL $c: ipvsadm output has no companion ruleset"; failed=$((failed + 1)); fi
	else
		echo "FAIL $c: ipvsadm dry-run exited non-zero"; failed=$((failed + 1))
	fi
done <"$work/cases"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
