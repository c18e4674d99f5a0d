#!/bin/bash
# Run by `tests/vm/run --selftest` inside the guest: checks that the guest
# provides what the project's kernel tests need. Prints one line per check and
# exits non-zero when one fails.
set -u
fails=0
pass() { printf 'selftest: ok    %s\n' "$1"; }
fail() { printf 'selftest: FAIL  %s\n' "$1"; fails=$((fails + 1)); }
check() { # check NAME CMD... (output shown only on failure)
	local name=$1 out
	shift
	if out=$("$@" 2>&1); then
		pass "$name"
	else
		fail "$name"
		printf '%s\n' "$out" | sed 's/^/    /'
	fi
}

ns=nlvm-st-$$
cleanup() { ip netns del "$ns" 2>/dev/null; ip netns del "$ns-b" 2>/dev/null; }
trap cleanup EXIT

read -r up _ </proc/uptime
echo "selftest: kernel $(uname -r), guest uptime ${up}s, $(nproc) CPUs, $(awk '/MemTotal/ { print int($2 / 1024) " MiB" }' /proc/meminfo)"

check "cwd is the project root ($PWD)" test -f Makefile -a -f tests/vm/run
check "/tmp is writable" sh -c 'echo x >/tmp/nlvm-st && rm /tmp/nlvm-st'
check "project root is read-only" sh -c '! touch .nlvm-selftest 2>/dev/null'
check "ip_vs module loaded" grep -qw '^ip_vs' /proc/modules
check "ipvsadm -Ln" ipvsadm -Ln
check "ip netns add" sh -c "ip netns add $ns && ip -n $ns link set lo up"
# (in a fresh netns, adding a real server fails with EINVAL until lo is up:
# the kernel checks the address type against the local routing table)
check "ipvsadm -A/-a/-Ln in a netns" sh -c "
	ip netns exec $ns ipvsadm -A -t 10.0.0.1:80 -s rr &&
	ip netns exec $ns ipvsadm -a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m -w 1 &&
	ip netns exec $ns ipvsadm -Ln | grep -q '10.0.1.1:8080' &&
	! ipvsadm -Ln | grep -q 10.0.0.1:80"
for s in rr wrr lc wlc sh mh; do
	check "IPVS scheduler $s" sh -c "
		ip netns exec $ns ipvsadm -A -u 10.0.0.2:53 -s $s &&
		ip netns exec $ns ipvsadm -D -u 10.0.0.2:53"
done
check "nft ruleset with numgen, fib, ct, reject, masquerade, concatenated interval set" \
	ip netns exec "$ns" nft -f - <<'EOF'
table ip nlvm {
	set cidrs {
		type ipv4_addr . inet_service
		flags interval
		elements = { 10.0.0.0/8 . 80-90, 192.168.0.0/16 . 443 }
	}
	map backends {
		type ipv4_addr . inet_proto . inet_service : verdict
		elements = { 10.96.0.10 . tcp . 6379 : goto svc }
	}
	chain svc {
		numgen random mod 2 vmap { 0 : goto ep0, 1 : goto ep1 }
	}
	chain ep0 { meta mark set 0x4000 meta l4proto tcp dnat to 10.244.1.10:6379; }
	chain ep1 { meta l4proto tcp dnat to 10.244.1.11:6379; }
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr . meta l4proto . th dport vmap @backends
	}
	chain output {
		type nat hook output priority -100; policy accept;
		fib daddr type local ip daddr . meta l4proto . th dport vmap @backends
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		meta mark & 0x4000 == 0x4000 masquerade
	}
	chain filter {
		type filter hook forward priority filter; policy accept;
		ct state invalid drop
		ct state new ip daddr . tcp dport @cidrs reject with icmp type port-unreachable
		ip daddr 10.96.0.11 reject
		limit rate 10/second log prefix "nlvm " counter
	}
}
table ip6 nlvm6 {
	chain filter {
		type filter hook input priority filter; policy accept;
		fib daddr type local ct state new counter
		ip6 daddr ::1 tcp dport 9 reject with tcp reset
	}
}
EOF
check "nft list ruleset in the netns" sh -c "ip netns exec $ns nft list ruleset | grep -q numgen"
check "no nft ruleset leaked to the root netns" sh -c '! nft list ruleset | grep -q nlvm'
check "veth pair between two network namespaces" sh -c "
	ip netns add $ns-b && ip -n $ns-b link set lo up &&
	ip link add va netns $ns type veth peer name vb netns $ns-b &&
	ip -n $ns addr add 192.168.77.1/24 dev va && ip -n $ns link set va up &&
	ip -n $ns-b addr add 192.168.77.2/24 dev vb && ip -n $ns-b link set vb up &&
	ip -n $ns-b route add default via 192.168.77.1"
check "dummy interface" sh -c "ip -n $ns link add kube-ipvs0 type dummy && ip -n $ns addr add 10.96.0.10/32 dev kube-ipvs0"
# a TCP server in the second netns, reached directly over the veth, then
# through an IPVS virtual server (NAT) on the dummy interface
ip netns exec "$ns-b" python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(8); s.settimeout(60)
while True:
    c, a = s.accept(); c.sendall(b"hello from %s\n" % a[0].encode()); c.close()
' &
srv=$!
connect() { # connect ADDR PORT: prints the first line the server sends
	ip netns exec "$ns" python3 -c '
import socket, sys
for i in range(50):
    try:
        c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5); break
    except ConnectionRefusedError:
        import time; time.sleep(0.2)
else:
    sys.exit("connection refused")
print(c.makefile().readline().strip())' "$@"
}
check "TCP over the veth pair" sh -c "$(declare -f connect); ns=$ns; connect 192.168.77.2 8080 | grep -q hello"
check "TCP through IPVS (NAT, local client, rr)" sh -c "
	ip netns exec $ns ipvsadm -A -t 10.96.0.10:80 -s rr &&
	ip netns exec $ns ipvsadm -a -t 10.96.0.10:80 -r 192.168.77.2:8080 -m &&
	$(declare -f connect); ns=$ns; connect 10.96.0.10 80 | grep -q hello &&
	ip netns exec $ns ipvsadm -Lnc | grep -q 192.168.77.2:8080"
kill "$srv" 2>/dev/null
wait "$srv" 2>/dev/null
check "conntrack netlink (nf_conntrack_netlink)" grep -qw '^nf_conntrack_netlink' /proc/modules
check "python3 runs ($(command -v python3))" python3 -c 'import socket, json, subprocess; print("ok")'
if [ -x build/nlproxy ]; then
	check "build/nlproxy runs" build/nlproxy --version
	check "nft -f of nlproxy's ruleset for examples/redis" sh -c "
		build/nlproxy --manifests examples/redis --dry-run --output nft --hostname-override node-a \
			--cluster-cidr 10.244.0.0/16 --service-cluster-ip-range 10.96.0.0/12 >/tmp/nlvm-st.nft &&
		ip netns exec $ns nft -f /tmp/nlvm-st.nft"
else
	echo "selftest: skip  build/nlproxy (not built on the host)"
fi

read -r up _ </proc/uptime
if [ $fails = 0 ]; then
	echo "selftest: all checks passed (guest uptime ${up}s)"
else
	echo "selftest: $fails check(s) failed"
fi
[ $fails = 0 ]
