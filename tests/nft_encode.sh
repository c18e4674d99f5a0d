#!/usr/bin/env bash
# The netlink encoder must program exactly what the dry-run script loads: for
# every conformance case (nft mode and the IPVS companion) and the rich
# example, one scratch namespace loads the script with `nft -f`, another
# gets the same plan through the backend's full sync (tests/tools/nft_apply.c:
# netlink/nft_encode.c under netlink/nft_full.c, one transaction), and `nft -j
# list ruleset` of both must match once handles are removed. Cases run on top
# of each other in both namespaces: the script replaces the tables (its
# delete-table idiom, with and without an existing table), the full sync
# converges the tables the previous case left in place, so the same content
# arrives in another order (kept chains and sets stay where they were): the
# comparison sorts objects by table, kind and name and keeps the order of
# the rules within each chain. Never touches the host's ruleset.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=build/nlproxy
drv=build/tests/nft_apply
passed=0 failed=0

skip() {
	echo "SKIP nft_encode: $*"
	# CI must exercise the kernel: a skip there is a failure.
	if [ "${CI:-}" = true ]; then echo "0 passed, 1 failed"; exit 1; fi
	exit 0
}
[ -x "$bin" ] || { echo "nft_encode: $bin missing (make all)"; exit 1; }
command -v nft >/dev/null || skip "nft is not installed (make deps)"
command -v jq >/dev/null || skip "jq is not installed (make deps)"
command -v python3 >/dev/null || skip "python3 is not installed (make deps)"
[ "$(id -u)" = 0 ] || skip "needs root for scratch network namespaces"

# The driver is a test tool, built here against the library with the
# project's flags.
make -s build/libnlproxy.a || exit 1
pkgs="libnl-3.0 libnl-genl-3.0 libmnl libnftnl libcurl jansson yajl yaml-0.1"
if [ ! -x "$drv" ] || [ "$drv" -ot tests/tools/nft_apply.c ] || [ "$drv" -ot build/libnlproxy.a ]; then
	mkdir -p build/tests
	# shellcheck disable=SC2046
	cc -std=gnu11 -D_GNU_SOURCE -O2 -g -Iproxy -Inetlink -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
		-Wmissing-prototypes -Wvla $(pkg-config --cflags $pkgs) -o "$drv" tests/tools/nft_apply.c \
		build/libnlproxy.a $(pkg-config --libs $pkgs) -lm || { echo "nft_encode: cannot build $drv"; exit 1; }
fi

work=$(mktemp -d /tmp/nlproxy-nftenc.XXXXXX)
nsa=nlenc-a-$$ nsb=nlenc-b-$$
cleanup() { ip netns del "$nsa" 2>/dev/null; ip netns del "$nsb" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
ip netns add "$nsa" || skip "cannot create a network namespace"
ip netns add "$nsb" || skip "cannot create a network namespace"

# Handles differ between namespaces; everything else must not. jq, not
# python: python's start-up per dump was most of the run time. Objects
# sorted by (family, table, kind, name); jq's sort is stable, so the rules of
# a chain keep their order.
norm() {
	jq -c '.nftables[] | select(has("metainfo") | not) | to_entries[0] | .value |= del(.handle)' |
		jq -s -c 'sort_by(.value.family, (.value.table // .value.name), .key, (.value.chain // .value.name)) | .[]'
}

dump() { # ns out
	# The whole ruleset (the main tables and any shard tables; the scratch
	# namespace holds nothing else). The tables and their comments from the
	# text listing too: JSON leaves out the table comment.
	ip netns exec "$1" nft -j list ruleset | norm >"$2"
	ip netns exec "$1" nft list ruleset | grep -E '^table |^\s+comment ' | sort >>"$2"
}

compare() { # name [expected number of tables]
	local ok=1
	dump "$nsa" "$work/a"
	dump "$nsb" "$work/b"
	if ! cmp -s "$work/a" "$work/b"; then
		echo "FAIL $1"
		ok=0
		diff -u "$work/a" "$work/b" | head -20
	elif [ -n "${2:-}" ] && [ "$(grep -c '^table ' "$work/b")" != "$2" ]; then
		echo "FAIL $1: $(grep -c '^table ' "$work/b") tables, expected $2"
		ok=0
	fi
	if [ $ok = 1 ]; then echo "ok   $1"; passed=$((passed + 1)); else failed=$((failed + 1)); fi
}

# Each namespace starts empty for a case that checks the number of tables.
fresh() {
	ip netns del "$nsa"; ip netns del "$nsb"
	ip netns add "$nsa" && ip netns add "$nsb" || { echo "FAIL: cannot recreate the namespaces"; exit 1; }
}

run() { # name manifests flagsfile companion(0/1) [extra flag] [expected tables]
	local name=$1 m=$2 ff=$3 comp=$4 out="$work/script.nft" flags
	mapfile -t flags <"$ff"
	[ -n "${5:-}" ] && flags+=("$5")
	if [ "$comp" = 1 ]; then
		if ! "$bin" "${flags[@]}" --manifests "$m" --dry-run --output ipvsadm >"$out.full" 2>"$work/err"; then
			echo "FAIL $name: dry-run exited non-zero"; head -3 "$work/err"; failed=$((failed + 1)); return
		fi
		sed '0,/^# nftables companion ruleset$/d' "$out.full" >"$out"
	elif ! "$bin" "${flags[@]}" --manifests "$m" --dry-run --output nft >"$out" 2>"$work/err"; then
		echo "FAIL $name: dry-run exited non-zero"; head -3 "$work/err"; failed=$((failed + 1)); return
	fi
	if ! ip netns exec "$nsa" nft -f "$out" 2>"$work/err"; then
		echo "FAIL $name: nft -f refused the script"; head -3 "$work/err"; failed=$((failed + 1)); return
	fi
	local opt=()
	[ "$comp" = 1 ] && opt=(--companion)
	if ! ip netns exec "$nsb" "$drv" "${opt[@]}" "${flags[@]}" --manifests "$m" 2>"$work/err"; then
		echo "FAIL $name: netlink transaction refused"; head -3 "$work/err"; failed=$((failed + 1)); return
	fi
	compare "$name" "${6:-}"
}

python3 tests/conformance/scenario_manifests.py tests/data/scenarios.json "$work" >"$work/cases" || exit 1
# The cases of each --detect-local-mode too (a Node's podCIDRs, iifname).
python3 tests/conformance/scenario_manifests.py tests/data/scenarios_detect_local.json "$work" >>"$work/cases" || exit 1
while read -r c; do
	run "$c nft" "$work/$c/objects.json" "$work/$c/flags" 0
	run "$c ipvs-companion" "$work/$c/objects.json" "$work/$c/flags" 1
done <"$work/cases"
run "rich nft" tests/data/nftenc/rich.json tests/data/nftenc/rich.flags 0
run "rich ipvs-companion" tests/data/nftenc/rich.json tests/data/nftenc/rich.flags 1
run "cluster nft" tests/data/cli/cluster.yaml tests/data/nftenc/cluster.flags 0
# Each --detect-local-mode (the pod-cidrs set, or iifname matches in its
# place), one after the other: the full sync converges a mode's rules to
# the next one's.
for m in cluster node bridge prefix cluster; do
	run "detect-$m nft" tests/data/nftenc/detect.json "tests/data/nftenc/detect-$m.flags" 0
	run "detect-$m ipvs-companion" tests/data/nftenc/detect.json "tests/data/nftenc/detect-$m.flags" 1
done
# Sharded rulesets (docs/nftables-ruleset.md): main table plus shard tables
# per family. Scenarios first on top of each other, then with fresh
# namespaces so the number of tables is exact.
while read -r c; do
	run "$c nft shards=4" "$work/$c/objects.json" "$work/$c/flags" 0 --nftables-shards=4
done <"$work/cases"
for m in prefix node bridge; do
	run "detect-$m nft shards=4" tests/data/nftenc/detect.json "tests/data/nftenc/detect-$m.flags" 0 --nftables-shards=4
done
fresh
run "rich nft shards=8" tests/data/nftenc/rich.json tests/data/nftenc/rich.flags 0 --nftables-shards=8 18
fresh
run "cluster nft shards=2" tests/data/cli/cluster.yaml tests/data/nftenc/cluster.flags 0 --nftables-shards=2 6
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
