#!/usr/bin/env bash
# Runs the demo (examples/demo.sh) and checks its key lines, part by part:
# the redis ClusterIP service in every output format, the headless DNS names
# in the hosts file, the trace verdicts. Needs build/nlproxy (make all).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

out=$(mktemp "${TMPDIR:-/tmp}/nlproxy-demo.XXXXXX")
trap 'rm -f "$out"' EXIT

passed=0
failed=0
ok() {
        echo "ok   - $1"
        passed=$((passed + 1))
}
fail() {
        echo "FAIL - $1"
        failed=$((failed + 1))
}

# The lines of the demo output under header "### $1", up to the next header.
part() { awk -v h="### $1" '/^### /{ p = ($0 == h); next } p' "$out"; }

# check PART DESCRIPTION ERE: the part has a line matching ERE.
check() {
        local text
        text=$(part "$1")
        # Not `part | grep -q`: grep quitting early would SIGPIPE awk and fail the pipeline.
        if grep -Eq -- "$3" <<<"$text"; then
                ok "$1: $2"
        else
                fail "$1: $2 (no line matches /$3/)"
        fi
}

# check_absent PART DESCRIPTION ERE: no line of the part matches ERE.
check_absent() {
        local text
        text=$(part "$1")
        if grep -Eq -- "$3" <<<"$text"; then
                fail "$1: $2 (a line matches /$3/)"
        else
                ok "$1: $2"
        fi
}

echo "== bash examples/demo.sh"
if bash examples/demo.sh >"$out" 2>&1; then
        ok "examples/demo.sh exits 0"
else
        fail "examples/demo.sh exits 0 (status $?)"
fi

check "dry-run --output table" "redis ClusterIP service" 'default/redis.*10\.96\.0\.10|10\.96\.0\.10.*default/redis'
check "dry-run --output table" "endpoint 10.244.1.10:6379" '10\.244\.1\.10:6379'
check "dry-run --output table" "endpoint 10.244.1.11:6379" '10\.244\.1\.11:6379'
check "dry-run --output nft" "redis ClusterIP in service-ips" '10\.96\.0\.10 \. tcp \. 6379 : goto'
check "dry-run --output nft" "DNAT to 10.244.1.10:6379" 'dnat to 10\.244\.1\.10:6379'
check "dry-run --output nft" "DNAT to 10.244.1.11:6379" 'dnat to 10\.244\.1\.11:6379'
check "dry-run --output ipvsadm" "redis virtual server" '^-A -t 10\.96\.0\.10:6379'
check "dry-run --output ipvsadm" "real server 10.244.1.10:6379" '^-a -t 10\.96\.0\.10:6379 -r 10\.244\.1\.10:6379'
check "dry-run --output ipvsadm" "real server 10.244.1.11:6379" '^-a -t 10\.96\.0\.10:6379 -r 10\.244\.1\.11:6379'
check_absent "dry-run --output ipvsadm" "no virtual server for the headless redis-sfs" '10\.244\.1\.2[01]'
check "dry-run --output json" "redis ClusterIP" '"10\.96\.0\.10"'
check "dry-run --output json" "redis service" '"redis"'
check "headless hosts file" "redis-sfs-0 record" '^10\.244\.1\.20[[:space:]]+(.*[[:space:]])?redis-sfs-0\.redis-sfs\.default\.svc\.cluster\.local([[:space:]]|$)'
check "headless hosts file" "redis-sfs-1 record" '^10\.244\.1\.21[[:space:]]+(.*[[:space:]])?redis-sfs-1\.redis-sfs\.default\.svc\.cluster\.local([[:space:]]|$)'
check "headless hosts file" "service name record" 'redis-sfs\.default\.svc\.cluster\.local'
check "trace: pod -> redis ClusterIP" "verdict DNAT" '^verdict:[[:space:]]+DNAT$'
check "trace: pod -> redis ClusterIP" "candidate 10.244.1.10" '10\.244\.1\.10'
check "trace: pod -> redis ClusterIP, wrong port" "verdict REJECT" '^verdict:[[:space:]]+REJECT$'
check "trace: pod -> unallocated address in the service CIDR" "verdict DROP" '^verdict:[[:space:]]+DROP$'

if ((failed)); then
        echo "---- demo output ----"
        cat "$out"
        echo "---- end of demo output ----"
fi
echo "$passed passed, $failed failed"
((failed == 0))
