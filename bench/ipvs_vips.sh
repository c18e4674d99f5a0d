#!/usr/bin/env bash
# What making N VIPs local costs the kernel (issue 15, IPVS): N host
# addresses on one interface (kube-proxy's kube-ipvs0) against N local
# routes in table local (nlproxy's, proto 95), added then deleted with
# `ip -batch`, in a network namespace of its own (`unshare -n`: the host's
# links, addresses and routes are never touched). The interface is a dummy
# where the kernel has the module, else a veth (the same address list).
# Root. SIZES (default "10000 30000"), ADDR_MAX (largest N for which the
# addresses, quadratic, are measured too; default 30000), FAM (4 or 6).
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "ipvs_vips: needs root"; exit 1; }
if [ "${1:-}" != --in-netns ]; then
	exec unshare -n "$0" --in-netns
fi
SIZES=${SIZES:-10000 30000} ADDR_MAX=${ADDR_MAX:-30000} FAM=${FAM:-4}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ip link set lo up
ip link add kipvs type dummy 2>/dev/null || ip link add kipvs type veth peer name kipvs-p
# IPv6 refuses a local route on a down device: lo holds that family's VIPs.
dev=kipvs; [ "$FAM" = 6 ] && dev=lo
now() { date +%s.%N; }
for n in $SIZES; do
	python3 - "$n" "$FAM" "$dev" "$tmp" <<'PY'
import sys
n, fam, dev, tmp = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
a = [("10.%d.%d.%d" % (96 + (i >> 16), (i >> 8) & 255, i & 255)) if fam == "4" else
     ("fd00::%x:%x" % (i >> 16, i & 0xffff)) for i in range(n)]
p = "32" if fam == "4" else "128"
nodad = "" if fam == "4" else " nodad"
for name, fmt in (("r_add", "route append local %s/" + p + " dev " + dev + " table local proto 95"),
                  ("r_del", "route del local %s/" + p + " table local proto 95"),
                  ("a_add", "addr add %s/" + p + " dev kipvs" + nodad), ("a_del", "addr del %s/" + p + " dev kipvs")):
    open(f"{tmp}/{name}", "w").write("".join(fmt % x + "\n" for x in a))
PY
	t0=$(now); ip -"$FAM" -batch "$tmp/r_add"; t1=$(now); ip -"$FAM" -batch "$tmp/r_del"; t2=$(now)
	ra=$(echo "$t1-$t0" | bc); rd=$(echo "$t2-$t1" | bc)
	line=$(printf "IPv%s N=%s routes: add %.2f s, delete %.2f s" "$FAM" "$n" "$ra" "$rd")
	if [ "$n" -le "$ADDR_MAX" ]; then
		t0=$(now); ip -"$FAM" -batch "$tmp/a_add"; t1=$(now); ip -"$FAM" -batch "$tmp/a_del"; t2=$(now)
		aa=$(echo "$t1-$t0" | bc); ad=$(echo "$t2-$t1" | bc)
		line+=$(printf "; addresses: add %.2f s, delete %.2f s; addresses / routes (add) %.1f" "$aa" "$ad" \
			"$(echo "scale=3; $aa/$ra" | bc)")
	fi
	echo "$line"
done
