#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Fuzzes the parsers of API input (watch stream framer, watch events, the
# Service/EndpointSlice/Node decoders, the YAML reader) with libFuzzer under
# ASan and UBSan, for FUZZ_SECONDS (default 30), from the API fixtures as
# seeds. A crash, leak or sanitizer report fails. Needs clang with libFuzzer
# (Debian: clang, libclang-rt-14-dev); skips otherwise (fails under CI=true).
set -u

cd "$(dirname "$0")/.."
SECONDS_BUDGET=${FUZZ_SECONDS:-30}
TMP=

skip() {
        echo "SKIP fuzz.sh: $1"
        if [ "${CI:-}" = true ]; then
                echo "0 passed, 1 failed (skipped under CI=true)"
                exit 1
        fi
        exit 0
}

command -v clang >/dev/null || skip "needs clang"
command -v python3 >/dev/null || skip "needs python3"
TMP=$(mktemp -d /tmp/nlproxy-fuzz.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

SRCS="tests/fuzz/fuzz_objects.c proxy/k8s.c proxy/k8s_stream.c proxy/ipaddr.c proxy/watch.c proxy/model.c proxy/kubeconfig.c
        proxy/manifest.c proxy/log.c"
# shellcheck disable=SC2086
if ! clang -std=gnu11 -D_GNU_SOURCE -DNLPROXY_VERSION='"fuzz"' -Iproxy -g -O1 -Wall -Wextra -Werror \
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
        $(pkg-config --cflags jansson yajl yaml-0.1 libcurl) $SRCS -o "$TMP/fuzz" \
        $(pkg-config --libs jansson yajl yaml-0.1 libcurl) -lm 2>"$TMP/build.log"; then
        if grep -q "fuzzer" "$TMP/build.log" && grep -qi "no such file\|cannot find\|unsupported" "$TMP/build.log"; then
                skip "clang has no libFuzzer runtime (libclang-rt-14-dev): $(head -1 "$TMP/build.log")"
        fi
        echo "FAIL building the fuzz target"
        cat "$TMP/build.log"
        echo "0 passed, 1 failed"
        exit 1
fi

# Seeds: each fixture as a watch event (path 0), as JSON (1) and as YAML (2).
mkdir "$TMP/corpus"
i=0
for f in tests/data/fixtures/*.json; do
        i=$((i + 1))
        { printf '\000'; python3 -c 'import json,sys; print(json.dumps({"type":"ADDED","object":json.load(open(sys.argv[1]))}))' "$f"; } >"$TMP/corpus/w$i"
        { printf '\001'; cat "$f"; } >"$TMP/corpus/j$i"
        { printf '\002'; cat "$f"; } >"$TMP/corpus/y$i"
done
# A slice event the streaming decoder takes (the fixture's addressType is not
# a valid one), so that the fuzzer compares it with jansson's.
ev='{"type":"MODIFIED","object":{"metadata":{"name":"w-1","namespace":"n","resourceVersion":"5",'
ev+='"labels":{"kubernetes.io/service-name":"w"},"annotations":{"endpoints.kubernetes.io/last-change-trigger-time":"t"}},'
ev+='"addressType":"IPv4","endpoints":[{"addresses":["10.0.0.1"],"conditions":{"ready":true,"serving":null},'
ev+='"hostname":"h","nodeName":"a","zone":"z","hints":{"forZones":[{"name":"z"}],"forNodes":[{"name":"a"}]}},'
ev+='{"addresses":["10.0.0.2"],"targetRef":{"kind":"Pod"}}],"ports":[{"name":"http","port":80,"protocol":"TCP"},{"port":53,"protocol":"UDP"}]}}'
{ printf '\000'; printf '%s\n' "$ev"; } >"$TMP/corpus/stream0"
{ printf '\001'; printf '%s' "$ev"; } >"$TMP/corpus/stream1"
for f in tests/data/manifests/*.yaml; do
        i=$((i + 1))
        { printf '\002'; cat "$f"; } >"$TMP/corpus/y$i"
done

if (cd "$TMP" && ASAN_OPTIONS=detect_leaks=1 timeout $((SECONDS_BUDGET + 60)) ./fuzz -max_total_time="$SECONDS_BUDGET" \
        -rss_limit_mb=2048 -timeout=10 -max_len=65536 corpus >fuzz.log 2>&1); then
        echo "ok   $(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$TMP/fuzz.log")"
        echo "1 passed, 0 failed"
else
        echo "FAIL the fuzzer found a problem:"
        grep -A30 "ERROR\|runtime error\|deadly signal" "$TMP/fuzz.log" | head -60
        ls "$TMP"/crash-* "$TMP"/leak-* "$TMP"/timeout-* 2>/dev/null | while read -r c; do
                echo "input ($c): $(od -c "$c" | head -5)"
        done
        echo "0 passed, 1 failed"
        exit 1
fi
