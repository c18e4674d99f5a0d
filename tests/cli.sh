#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The nlproxy command line: exit codes, messages and dry-run output.
# Run from the project root after `make all`; NLPROXY overrides the binary.
set -u

BIN=${NLPROXY:-build/nlproxy}
DATA=tests/data/cli
MANIFEST=$DATA/cluster.yaml
NODE=(--hostname-override node-a)
pass=0
failed=0

tmp=$(mktemp -d /tmp/nlproxy-cli.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT

ok() { echo "ok   - $1"; pass=$((pass + 1)); }
bad() { echo "FAIL - $1: $2"; failed=$((failed + 1)); }

# run ARGS...: sets rc, and leaves stdout/stderr in $tmp/out, $tmp/err.
run() {
        "$BIN" "$@" >"$tmp/out" 2>"$tmp/err"
        rc=$?
}

# usage_error WANT ARGS...: exit 2, nothing on stdout, and on stderr exactly
# "nlproxy: <one line containing WANT>" then the --help hint.
usage_error() {
        local want=$1 name
        shift
        name="usage error: $*"
        run "$@"
        if [ "$rc" -ne 2 ]; then
                bad "$name" "exit $rc, want 2 ($(head -c 200 "$tmp/err"))"
        elif [ -s "$tmp/out" ]; then
                bad "$name" "stdout not empty"
        elif [ "$(wc -l <"$tmp/err")" -ne 2 ]; then
                bad "$name" "stderr has $(wc -l <"$tmp/err") lines, want 2"
        elif ! head -n1 "$tmp/err" | grep -q '^nlproxy: '; then
                bad "$name" "first line lacks the nlproxy: prefix: $(head -n1 "$tmp/err")"
        elif ! head -n1 "$tmp/err" | grep -qF -- "$want"; then
                bad "$name" "message lacks \"$want\": $(head -n1 "$tmp/err")"
        elif [ "$(tail -n1 "$tmp/err")" != "Try 'nlproxy --help'." ]; then
                bad "$name" "second line: $(tail -n1 "$tmp/err")"
        else
                ok "$name -> $(head -n1 "$tmp/err")"
        fi
}

# expect NAME RC GREP-PATTERN FILE: exit code and a fixed string in out or err.
expect() {
        local name=$1 want_rc=$2 pattern=$3 file=$4
        if [ "$rc" -ne "$want_rc" ]; then
                bad "$name" "exit $rc, want $want_rc ($(head -c 300 "$tmp/err"))"
        elif [ -n "$pattern" ] && ! grep -qF -- "$pattern" "$tmp/$file"; then
                bad "$name" "$file lacks \"$pattern\": $(head -c 300 "$tmp/$file")"
        else
                ok "$name"
        fi
}

if [ ! -x "$BIN" ]; then
        echo "FAIL - $BIN is not built"
        echo "0 passed, 1 failed"
        exit 1
fi

# --- bad flags ---
usage_error 'invalid value "foo" for --mode: must be ipvs, nftables or auto' --mode foo
usage_error '--mode' --mode=iptables
usage_error 'unknown flag: --bogus' --bogus
usage_error 'unknown shorthand flag' -x
usage_error 'flag needs an argument: --output' --output
usage_error '--output' --output yaml
usage_error '--sync-period' --sync-period 30
usage_error '--sync-period' --sync-period=0s
usage_error '--min-sync-period' --min-sync-period=1m --sync-period=30s
usage_error '--node-ip' --node-ip 10.0.0.1 --node-ip 10.0.0.2
usage_error '--nodeport-addresses' --nodeport-addresses primary,10.0.0.0/8
usage_error '--cluster-cidr' --cluster-cidr 10.0.0.0/33
usage_error '--ipvs-scheduler' --ipvs-scheduler fastest
usage_error '--cluster-domain' --cluster-domain 'bad_domain'
usage_error '--healthz-bind-address' --healthz-bind-address 0.0.0.0
usage_error '--metrics-bind-address' --metrics-bind-address 127.0.0.1:99999
usage_error '--dry-run' --dry-run=maybe
usage_error '--v' -v 11
usage_error 'unexpected argument "frobnicate"' frobnicate
usage_error 'trace needs' trace 10.0.0.1
usage_error '"icmp"' trace 10.0.0.1 10.96.0.1:80/icmp
usage_error '--dry-run needs --manifests' --dry-run
usage_error 'trace needs --manifests' trace 10.0.0.1 10.96.0.1:80
# kube-proxy's settings: its names, validation and messages.
usage_error 'invalid value "-1" for --conntrack-max-per-core: must be greater than or equal to 0' \
        --conntrack-max-per-core -1
usage_error 'invalid value "many" for --conntrack-min: must be an integer' --conntrack-min many
usage_error 'invalid value "-1h" for --conntrack-tcp-timeout-close-wait: must be a duration' \
        --conntrack-tcp-timeout-close-wait=-1h
usage_error 'invalid value "500ms" for --conntrack-udp-timeout: must be 0 (leave the kernel'"'"'s) or at least 1s' \
        --conntrack-udp-timeout 500ms
usage_error 'must be within the range [-1000, 1000]' --oom-score-adj 1001
usage_error 'Unsupported log format' --logging-format xml
usage_error 'unrecognized feature gate: NoSuchGate' --feature-gates NoSuchGate=true
usage_error 'malformed pair, expect string=bool' --feature-gates TopologyAwareHints
usage_error 'cannot set feature gate PodSecurity to false, feature is locked to true' --feature-gates PodSecurity=false
usage_error 'LoggingBetaOptions' --logging-format json --feature-gates LoggingBetaOptions=false
usage_error '--init-only sets the node'"'"'s sysctls and exits: it cannot be combined with --dry-run' \
        --init-only --dry-run --manifests "$MANIFEST"
usage_error 'invalid value "sometimes" for --bind-address-hard-fail: must be true or false' \
        --bind-address-hard-fail=sometimes

printf 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeletConfiguration\n' >"$tmp/kind.yaml"
usage_error "$tmp/kind.yaml: kind:" --config "$tmp/kind.yaml"
printf 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nipvs:\n  scheduler: 3\n' \
        >"$tmp/type.yaml"
usage_error "$tmp/type.yaml: ipvs.scheduler:" --config "$tmp/type.yaml"
printf 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nfeatureGates:\n  Nope: true\n' \
        >"$tmp/gate.yaml"
usage_error "$tmp/gate.yaml: featureGates: unrecognized feature gate: Nope" --config "$tmp/gate.yaml"

# --- version and help ---
run --version
if [ "$rc" -eq 0 ] && [ "$(cat "$tmp/out")" = "nlproxy $(cat VERSION)" ] && [ ! -s "$tmp/err" ]; then
        ok "--version -> $(cat "$tmp/out")"
else
        bad "--version" "exit $rc, stdout \"$(cat "$tmp/out")\""
fi
for h in --help -h; do
        run "$h"
        if [ "$rc" -eq 0 ] && grep -q '^Usage: nlproxy' "$tmp/out" && grep -qF -- '--mode' "$tmp/out" &&
                [ ! -s "$tmp/err" ]; then
                ok "$h prints usage to stdout"
        else
                bad "$h" "exit $rc"
        fi
done

# --- the daemon without a source (no --manifests, no API server) ---
run
expect "no source: exit 1 pointing at --once and --dry-run" 1 "or --dry-run" err
if [ "$(wc -l <"$tmp/err")" -eq 1 ]; then ok "no source: one line"; else bad "no source" "$(cat "$tmp/err")"; fi

# --- dry-run ---
declare -A marker=(
        [nft]='table ip nlproxy'
        [ipvsadm]='-A -t 172.30.0.41:80'
        [json]='"services"'
        [table]='default/web'
)
for out in nft ipvsadm json table; do
        run --dry-run --manifests "$MANIFEST" "${NODE[@]}" --output "$out"
        cp "$tmp/out" "$tmp/first.$out"
        expect "dry-run --output $out" 0 "${marker[$out]}" out
        if [ ! -s "$tmp/first.$out" ]; then
                bad "dry-run --output $out" "empty output"
        fi
        run --dry-run --manifests "$MANIFEST" "${NODE[@]}" --output="$out"
        if [ "$rc" -eq 0 ] && cmp -s "$tmp/out" "$tmp/first.$out"; then
                ok "dry-run --output $out twice: byte-identical"
        else
                bad "dry-run --output $out twice" "outputs differ (exit $rc)"
        fi
done

if command -v python3 >/dev/null; then
        if python3 -m json.tool "$tmp/first.json" >/dev/null 2>&1; then
                ok "json output parses"
        else
                bad "json output" "does not parse"
        fi
fi

run --dry-run --manifests "$MANIFEST" "${NODE[@]}" --mode ipvs
if [ "$rc" -eq 0 ] && cmp -s "$tmp/out" "$tmp/first.ipvsadm"; then
        ok "dry-run --mode ipvs defaults to ipvsadm output"
else
        bad "dry-run --mode ipvs" "exit $rc or output differs from --output ipvsadm"
fi

printf 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ipvs\nhostnameOverride: node-a\n' \
        >"$tmp/ipvs.yaml"
run --dry-run --manifests "$MANIFEST" --config "$tmp/ipvs.yaml"
if [ "$rc" -eq 0 ] && cmp -s "$tmp/out" "$tmp/first.ipvsadm"; then
        ok "--config mode: ipvs selects ipvsadm output"
else
        bad "--config mode: ipvs" "exit $rc or output differs"
fi
run --dry-run --manifests "$MANIFEST" --config "$tmp/ipvs.yaml" --mode nftables
if [ "$rc" -eq 0 ] && cmp -s "$tmp/out" "$tmp/first.nft"; then
        ok "--mode flag overrides the config file"
else
        bad "--mode over --config" "exit $rc or output differs"
fi

run --dry-run --manifests "$tmp/does-not-exist.yaml" "${NODE[@]}"
expect "dry-run with an unreadable manifest path: exit 1" 1 "does-not-exist.yaml" err

run --dry-run --manifests "$MANIFEST" "${NODE[@]}" --headless-hosts-file "$tmp/hosts"
expect "dry-run --headless-hosts-file" 0 "" out
if [ -f "$tmp/hosts" ] && head -n1 "$tmp/hosts" | grep -q '^#' &&
        grep -qP '^10\.244\.1\.9\tdb-0\.db\.default\.svc\.cluster\.local$' "$tmp/hosts" &&
        [ -z "$(ls "$tmp" | grep '^hosts\.')" ]; then
        ok "hosts file written, no temporary left behind"
else
        bad "hosts file" "$(cat "$tmp/hosts" 2>/dev/null | head -5)"
fi

# --- --logging-format json: component-base's JSON lines on stderr ---
run --dry-run --manifests "$tmp/does-not-exist.yaml" "${NODE[@]}" --logging-format json --feature-gates \
        EndpointSliceTerminatingCondition=true
if [ "$rc" -eq 1 ] && python3 - "$tmp/err" <<'PY'
import json, re, sys
lines = open(sys.argv[1]).read().splitlines()
assert lines, "no log line"
for l in lines:
    o = json.loads(l)
    assert list(o)[:3] == ["ts", "caller", "msg"], l
    assert isinstance(o["ts"], float) and o["ts"] > 1.5e12, l
    assert re.fullmatch(r"proxy/[a-z_]+\.c:\d+", o["caller"]), l
# The GA gate's warning (an info line at v 0), then the error (no "v").
assert any("Setting GA feature gate EndpointSliceTerminatingCondition=true" in json.loads(l)["msg"]
           and json.loads(l)["v"] == 0 for l in lines), lines
err = [json.loads(l) for l in lines if "does-not-exist.yaml" in json.loads(l)["msg"]]
assert err and "v" not in err[-1], lines
PY
then
        ok "--logging-format json: every stderr line is {ts, caller, msg[, v]}; errors carry no v"
else
        bad "--logging-format json" "exit $rc: $(head -c 400 "$tmp/err")"
fi

# --- trace ---
run trace 10.0.0.2 172.30.0.41:80/tcp --manifests "$MANIFEST" "${NODE[@]}"
expect "trace to a ClusterIP: DNAT" 0 "DNAT" out
expect "trace lists the local endpoint" 0 "10.244.1.5:8080 local" out
run trace 10.0.0.2 192.168.0.10:30080 --manifests "$MANIFEST" "${NODE[@]}"
expect "trace to a NodePort (default tcp) masquerades" 0 "masquerade: yes" out
run trace fd00::9 '[fd00:30::a]:53/UDP' --manifests "$MANIFEST" "${NODE[@]}"
expect "trace over IPv6" 0 "[fd00:244::3]:5353" out
run trace 10.0.0.2 172.30.0.41:81 --manifests "$MANIFEST" "${NODE[@]}"
expect "trace to an unknown port of a ClusterIP: REJECT" 0 "REJECT" out

echo "$pass passed, $failed failed"
[ "$failed" -eq 0 ]
