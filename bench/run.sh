#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# nlproxy benchmark: `make bench` (after `make all`) or `bash bench/run.sh`.
#
# For each size (services x endpoints) it generates the cluster twice, as a
# JSON `List` and as a multi-document YAML stream (bench/gen, deterministic),
# then measures in this one run:
#   * bench_table (bench/bench_table.c): parse / compute / render nft, json,
#     ipvsadm, median of K reps, peak RSS; on the YAML stream and on the JSON
#     List (the loader may reject the List: that is reported, not fatal);
#   * the whole dry run: build/nlproxy --manifests FILE --dry-run --output nft
#     > /dev/null, median wall time of K runs, peak RSS (/usr/bin/time %M);
#   * BASELINE 1: python3 -c 'import json; json.load(open(FILE))' on the JSON
#     List, same K runs (process wall time, and json.load alone in-process);
#   * BASELINE 2 (1k and 10k only): `nft -c -f` of the rendered script in a
#     scratch network namespace (kernel-side validation, nothing committed).
# Prints a markdown table and writes bench/out/results.md (+ raw.txt).
#
# Environment: BENCH_REPS (K, default 5), BENCH_SIZES (default
# "1000x2 10000x2 30000x2 5000x50"), BENCH_NFT_SIZES (sizes that get the
# nft -c baseline, default "1000x2 10000x2"), BENCH_SEED (default 1),
# BENCH_TREE_MAX (default 30000: above that many services the in-memory
# references, python's json.load and the yaml_to_json tree, are skipped:
# they hold the whole cluster as objects, over a GiB at 100k; the loader
# itself streams). 100k: BENCH_SIZES="1000x2 10000x2 30000x2 100000x2 5000x50".
#
# Then, as root only, bench/nft_sync.py: the real nftables backend (cold sync,
# one endpoint change, one service added/removed, peak RSS) in scratch network
# namespaces against `nft -f` of the dry-run script; appends to
# bench/out/nft_results.md. NFT_BENCH_SIZES (default: BENCH_SIZES), see the
# script's header for the rest; BENCH_NFT_SYNC=0 skips it. With
# NFT_BENCH_BASE_STEPS (a baseline build's build/tests/nlp_steps) also
# bench/sync_kinds.py: full and periodic syncs against that build, written to
# bench/out/sync_kinds.md.
#
# Then, as root too, bench/daemon_sync.py: the whole daemon's sync after one
# change (a --manifests reload, a Node status update from tests/fakeapi.py)
# at 1k/10k/30k x 2; appends to bench/out/daemon_results.md. BENCH_DAEMON=0
# skips it; BENCH_DAEMON_BASELINE_REF=<rev> measures that revision too.
#
# Then, as root, the IPVS backend inside tests/vm (BENCH_IPVS=0 skips it;
# IPVS_BENCH_SIZES, default "1000x2 10000x2"; a size over 30k gives the guest
# 3 GiB and two hours, IPVS_BENCH_MEM / IPVS_BENCH_TIMEOUT override), and
# bench/watch.sh, the API watcher against tests/fakeapi.py (BENCH_WATCH=0
# skips it; WATCH_BENCH_SERVICES, default 10000, WATCH_BENCH_UPDATES, default
# the same). Last, bench/targets.py reads this run's figures and writes issue
# 15's targets, met or missed, with the load before and after, to
# bench/out/targets.md. NFT_BENCH_REPS_LARGE defaults to 3 here (three cold
# syncs per size above 10k: the 30k / 10k ratio in three runs).
# Issue 15's recorded run:
#   BENCH_SIZES="1000x2 10000x2 30000x2 100000x2 5000x50" \
#   DAEMON_BENCH_SIZES="1000x2 10000x2 30000x2 100000x2" \
#   IPVS_BENCH_SIZES="1000x2 10000x2 100000x2" WATCH_BENCH_SERVICES=100000 make bench
set -euo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
B=$TOP/bench
OUT=$B/out
K=${BENCH_REPS:-5}
SIZES=${BENCH_SIZES:-"1000x2 10000x2 30000x2 5000x50"}
SEED=${BENCH_SEED:-1}
NFT_SIZES=${BENCH_NFT_SIZES:-"1000x2 10000x2"}
TREE_MAX=${BENCH_TREE_MAX:-30000}
NLPROXY=$TOP/build/nlproxy
FLAGS=(--node-ip 192.168.0.10 --cluster-cidr 10.0.0.0/8 --service-cluster-ip-range 10.96.0.0/12,fd00:96::/108
       --hostname-override node-0)
BT_FLAGS=(--node-name node-0 --node-ip 192.168.0.10 --cluster-cidr 10.0.0.0/8
          --service-cluster-ip-range 10.96.0.0/12,fd00:96::/108)

mkdir -p "$OUT"
LOAD0=$(uptime)
T0=$(date +%s)
# Three fresh namespaces per size above 10k too: the issue's "30k within 3.2 x
# 10k" is to be shown in three runs (bench/targets.py pairs them).
export NFT_BENCH_REPS_LARGE=${NFT_BENCH_REPS_LARGE:-3}
RAW=$OUT/raw.txt
: >"$RAW"
log() { echo "$*" >&2; }

# --- build ---------------------------------------------------------------
[ -x "$NLPROXY" ] || make -s -C "$TOP" build/nlproxy
make -s -C "$TOP" build/libnlproxy.a
make -s -C "$B" out/bench_table
BT=$OUT/bench_table

# The real interpreter, not a pyenv/asdf shim script: the baseline should not
# pay for a shell wrapper.
PY=$(python3 -c 'import sys; print(sys.executable)')

HAVE_TIME=0
[ -x /usr/bin/time ] && HAVE_TIME=1

# --- helpers -------------------------------------------------------------
median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) {print "NA"; exit} if (NR%2) print a[(NR+1)/2]; else printf "%.4f\n", (a[NR/2]+a[NR/2+1])/2}'; }
maxof() { sort -g | tail -n1; }
# field NAME from the bench_table line of PHASE in FILE
bt() { awk -v p="phase=$2" -v f="$3=" '$0 ~ "^BENCH " && index($0, " " p " ") {for (i=1;i<=NF;i++) if (index($i,f)==1) {print substr($i, length(f)+1); exit}}' "$1"; }
ms() { awk -v s="$1" 'BEGIN {if (s=="NA") print "NA"; else printf "%.1f", s*1000}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a=="NA"||b=="NA"||b==0) print "NA"; else printf "%.2f", a/b}'; }
mib() { awk -v k="$1" 'BEGIN {if (k=="NA"||k=="") print "NA"; else printf "%.1f", k/1024}'; }
now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.4f\n", b-a}'; }

# Runs CMD... K times with stdout to /dev/null; prints "median_wall_s max_rss_kib".
time_cmd() {
        local k=$1; shift
        local walls=() rss=() i t0 t1 tf
        tf=$(mktemp)
        for ((i = 0; i < k; i++)); do
                t0=$(now)
                if [ "$HAVE_TIME" = 1 ]; then
                        /usr/bin/time -o "$tf" -f '%e %M' "$@" >/dev/null 2>>"$RAW.stderr" || { rm -f "$tf"; return 1; }
                else
                        "$@" >/dev/null 2>>"$RAW.stderr" || { rm -f "$tf"; return 1; }
                        echo "0 NA" >"$tf"
                fi
                t1=$(now)
                walls+=("$(elapsed "$t0" "$t1")")
                rss+=("$(awk '{print $2}' "$tf")")
        done
        rm -f "$tf"
        echo "$(printf '%s\n' "${walls[@]}" | median) $(printf '%s\n' "${rss[@]}" | maxof)"
}

NS=nlb-$$
ns_up=0
cleanup() { if [ "$ns_up" = 1 ]; then ip netns del "$NS" 2>/dev/null || true; fi; }
trap cleanup EXIT
HAVE_NFT=0
if command -v nft >/dev/null && command -v ip >/dev/null && [ "$(id -u)" = 0 ]; then
        if ip netns add "$NS" 2>/dev/null; then
                ns_up=1
                HAVE_NFT=1
        fi
fi

# --- runs ----------------------------------------------------------------
ROWS=()
ROWS2=()
TARGETS=()
for size in $SIZES; do
        n=${size%x*}
        m=${size#*x}
        tag=s${n}x${m}
        J=$OUT/$tag.json
        Y=$OUT/$tag.yaml
        log "== $tag: generating"
        "$B/gen" --services "$n" --endpoints "$m" --format json --seed "$SEED" "$J"
        "$B/gen" --services "$n" --endpoints "$m" --format yaml --seed "$SEED" "$Y"
        jmib=$(mib $(($(stat -c %s "$J") / 1024)))
        ymib=$(mib $(($(stat -c %s "$Y") / 1024)))

        log "== $tag: bench_table (YAML stream, K=$K)"
        BY=$OUT/$tag.bench-yaml.txt
        "$BT" -k "$K" --label "$tag-yaml" "${BT_FLAGS[@]}" "$Y" >"$BY" 2>"$BY.err" || true
        cat "$BY" "$BY.err" >>"$RAW"
        BD=$OUT/$tag.bench-tree.txt
        heavy=1
        [ "$n" -le "$TREE_MAX" ] || heavy=0
        if [ "$heavy" = 1 ]; then
                log "== $tag: yaml_to_json alone (YAML stream, x$(( K < 3 ? K : 3 )))"
                "$BT" -k $(( K < 3 ? K : 3 )) --dom-only --label "$tag-tree" "$Y" >"$BD" 2>&1 || true
                cat "$BD" >>"$RAW"
        else
                : >"$BD"
        fi
        log "== $tag: bench_table (JSON List, K=$K)"
        BJ=$OUT/$tag.bench-json.txt
        json_ok=1
        "$BT" -k "$K" --label "$tag-json" "${BT_FLAGS[@]}" "$J" >"$BJ" 2>"$BJ.err" || json_ok=0
        cat "$BJ" "$BJ.err" >>"$RAW"
        json_err=""
        [ "$json_ok" = 1 ] || json_err=$(grep -m1 'warning' "$BJ.err" | sed 's/^bench_table: warning: //; s/|/\\|/g')

        log "== $tag: dry run x$K"
        read -r dry_y dry_y_rss < <(time_cmd "$K" "$NLPROXY" --manifests "$Y" --dry-run --output nft "${FLAGS[@]}" ||
                echo "NA NA")
        dry_j=NA dry_j_rss=NA
        if [ "$json_ok" = 1 ]; then
                read -r dry_j dry_j_rss < <(time_cmd "$K" "$NLPROXY" --manifests "$J" --dry-run --output nft "${FLAGS[@]}" ||
                        echo "NA NA")
        fi
        py=NA py_rss=NA py_in=NA
        if [ "$heavy" = 1 ]; then
                log "== $tag: baseline python json.load x$K"
                read -r py py_rss < <(time_cmd "$K" "$PY" -c 'import json; json.load(open("'"$J"'"))')
                py_in=$(for ((i = 0; i < K; i++)); do
                        "$PY" -c 'import json,sys,time; t=time.monotonic(); json.load(open(sys.argv[1])); print(time.monotonic()-t)' "$J"
                done | median)
        else
                log "== $tag: python json.load and yaml_to_json alone skipped (> BENCH_TREE_MAX=$TREE_MAX services)"
                TARGETS+=("- $n × $m: python json.load and yaml_to_json alone not run (over BENCH_TREE_MAX=$TREE_MAX services: they hold the whole cluster in memory)")
        fi

        nftc=NA nft_bytes=NA
        if [ "$HAVE_NFT" = 1 ] && [[ " $NFT_SIZES " == *" $size "* ]]; then
                S=$OUT/$tag.nft
                "$NLPROXY" --manifests "$Y" --dry-run --output nft "${FLAGS[@]}" >"$S"
                nft_bytes=$(stat -c %s "$S")
                log "== $tag: baseline nft -c -f (netns $NS) x$(( K < 3 ? K : 3 ))"
                nftc=$(for ((i = 0; i < (K < 3 ? K : 3); i++)); do
                        t0=$(now)
                        if ip netns exec "$NS" nft -c -f "$S" >/dev/null 2>"$S.err"; then
                                elapsed "$t0" "$(now)"
                        else
                                echo "nft -c failed: $(head -c 300 "$S.err")" >&2
                                echo NA
                        fi
                done | grep -v NA | median)
        fi

        p_y=$(bt "$BY" parse median_ms); p_j=$(bt "$BJ" parse median_ms)
        c=$(bt "$BY" compute median_ms); rn=$(bt "$BY" nft median_ms)
        rj=$(bt "$BY" json median_ms); ri=$(bt "$BY" ipvsadm median_ms)
        rss=$(bt "$BY" total maxrss_kib)
        cn=$(awk -v a="${c:-NA}" -v b="${rn:-NA}" 'BEGIN {if (a=="NA"||b=="NA"||a==""||b=="") print "NA"; else printf "%.1f", a+b}')
        py_ms=$(ms "$py_in")
        echo "ROW $tag n=$n m=$m json_mib=$jmib yaml_mib=$ymib parse_yaml_ms=${p_y:-NA} parse_json_ms=${p_j:-NA}" \
             "compute_ms=${c:-NA} nft_ms=${rn:-NA} json_ms=${rj:-NA} ipvsadm_ms=${ri:-NA} bench_rss_kib=${rss:-NA}" \
             "dry_yaml_s=$dry_y dry_yaml_rss_kib=$dry_y_rss dry_json_s=$dry_j dry_json_rss_kib=$dry_j_rss" \
             "py_s=$py py_rss_kib=$py_rss py_load_s=$py_in nft_check_s=$nftc nft_bytes=$nft_bytes" >>"$RAW"
        tree=$(bt "$BD" yaml_to_json median_ms); tree_rss=$(bt "$BD" yaml_to_json maxrss_kib)
        model_rss=$(bt "$BY" model rss_now_kib)
        echo "ROW2 $tag tree_ms=${tree:-NA} tree_rss_kib=${tree_rss:-NA} model_rss_kib=${model_rss:-NA}" >>"$RAW"
        pr=${p_j:-NA}; [ -n "$json_err" ] && pr=${p_y:-NA}
        row="| $n × $m | $jmib / $ymib | ${p_y:-NA} | ${p_j:-NA}${json_err:+ rejected} | ${tree:-NA} |"
        row+=" ${c:-NA} | ${rn:-NA} | **${cn}** | ${rj:-NA} | ${ri:-NA} |"
        row+=" $(mib "${rss:-NA}") | $(mib "${tree_rss:-NA}") | $(mib "${model_rss:-NA}") |"
        ROWS+=("$row")
        row="| $n × $m | **$dry_y** | $dry_j | $(mib "$dry_y_rss") | $py | $(awk -v s="$py_in" 'BEGIN{if (s=="NA") print s; else printf "%.3f", s}') |"
        row+=" $(mib "$py_rss") | $(ratio "$dry_y" "$py") | $(ratio "$pr" "$py_ms") | $(ratio "$dry_y_rss" "$py_rss") |"
        row+=" $nftc | $(ratio "$dry_y" "$nftc") |"
        ROWS2+=("$row")
        [ -n "$json_err" ] && TARGETS+=("- $n × $m: the JSON List was rejected by the loader: \`$json_err\`")
        if [ "$n" = 10000 ] && [ "$m" = 2 ]; then
                verdict() { awk -v v="$1" -v lim="$2" 'BEGIN {if (v=="NA") print "n/a"; else if (v+0 < lim+0) print "met"; else print "**MISSED**"}'; }
                TARGETS+=("- 10k × 2, compute + render nft < 100 ms: ${cn} ms → $(verdict "$cn" 100)")
                TARGETS+=("- 10k × 2, whole dry run (YAML) < 1 s: ${dry_y} s → $(verdict "$dry_y" 1)")
                TARGETS+=("- 10k × 2, peak RSS < 64 MiB: dry run $(mib "$dry_y_rss") MiB → $(verdict "$(mib "$dry_y_rss")" 64); yaml_to_json alone peaks at $(mib "${tree_rss:-NA}") MiB, the model alone is $(mib "${model_rss:-NA}") MiB resident")
        fi
done

# --- determinism and format checks (small size, cheap) ---------------------
CHECKS=()
C=$OUT/check
mkdir -p "$C"
"$B/gen" --services 1000 --endpoints 3 --format json --seed "$SEED" "$C/a.json"
"$B/gen" --services 1000 --endpoints 3 --format json --seed "$SEED" "$C/b.json"
"$B/gen" --services 1000 --endpoints 3 --format yaml --seed "$SEED" "$C/a.yaml"
"$B/gen" --services 1000 --endpoints 3 --format yaml --seed "$SEED" "$C/b.yaml"
if cmp -s "$C/a.json" "$C/b.json" && cmp -s "$C/a.yaml" "$C/b.yaml"; then
        CHECKS+=("- bench/gen: same arguments gave byte-identical files (json and yaml): yes")
else
        CHECKS+=("- bench/gen: same arguments gave byte-identical files: **NO**")
fi
for f in a.json a.yaml b.yaml; do
        "$NLPROXY" --manifests "$C/$f" --dry-run --output nft "${FLAGS[@]}" >"$C/$f.nft" 2>/dev/null || true
done
if [ -s "$C/a.yaml.nft" ] && cmp -s "$C/a.yaml.nft" "$C/b.yaml.nft"; then
        CHECKS+=("- nlproxy --output nft: byte-identical across two runs: yes")
else
        CHECKS+=("- nlproxy --output nft: byte-identical across two runs: **NO**")
fi
if [ -s "$C/a.json.nft" ] && cmp -s "$C/a.json.nft" "$C/a.yaml.nft"; then
        CHECKS+=("- the JSON List and the YAML stream of the same cluster render the same nft script: yes")
else
        CHECKS+=("- the JSON List and the YAML stream of the same cluster render the same nft script: **NO**")
fi

# --- report --------------------------------------------------------------
{
        echo "# nlproxy bench, $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo
        echo "Machine: $(nproc) CPUs, $(uname -sr), $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')."
        echo "Command: \`bash bench/run.sh\` (K=$K, sizes \"$SIZES\", seed $SEED); git $(git -C "$TOP" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$TOP" status --porcelain 2>/dev/null | grep -q . && echo ' + uncommitted changes')."
        echo
        echo "Times are medians of K runs: ms in table 1, s in table 2. MiB = 2^20 bytes."
        echo
        echo "Table 1, phases in-process (bench/bench_table, CLOCK_MONOTONIC, on the YAML stream; the JSON List"
        echo "parse alongside). *tree* = yaml_to_json alone (the document tree the loader builds first); *peak*"
        echo "= ru_maxrss of bench_table; *tree peak* = ru_maxrss of yaml_to_json alone; *model* = resident after"
        echo "the parse and malloc_trim(0), i.e. what the model keeps."
        echo
        echo "| size | MiB json/yaml | parse yaml | parse json | tree | compute | render nft | compute+nft | render json | render ipvsadm | peak MiB | tree peak MiB | model MiB |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        printf '%s\n' "${ROWS[@]}"
        echo
        echo "Table 2, whole process vs the same-run baselines. Dry run = \`nlproxy --manifests FILE --dry-run"
        echo "--output nft >/dev/null\` (YAML stream; JSON List where the loader accepts it), wall and /usr/bin/time %M."
        echo "Baseline 1: \`python3 -c 'import json; json.load(open(FILE))'\` on the JSON List (process wall; and"
        echo "json.load alone, timed in-process). Baseline 2: \`nft -c -f\` of the rendered script in a scratch"
        echo "netns (the kernel-side check: the ruleset is built and validated in the kernel, nothing committed)."
        echo "×py = dry run ÷ python process; parse×load = parse (JSON; YAML where the List is rejected) ÷ json.load;"
        echo "RSS×py = dry-run peak RSS ÷ python peak RSS; ×nft-c = dry run ÷ nft -c."
        echo
        echo "| size | dry run s | dry run json s | dry RSS MiB | python s | json.load s | python RSS MiB | ×py | parse×load | RSS×py | nft -c s | ×nft-c |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
        printf '%s\n' "${ROWS2[@]}"
        echo
        echo "Targets and notes:"
        printf '%s\n' "${TARGETS[@]}"
        printf '%s\n' "${CHECKS[@]}"
        [ "$HAVE_NFT" = 1 ] || echo "- nft -c baseline skipped (needs root, nft and ip netns)."
        [ "$HAVE_TIME" = 1 ] || echo "- /usr/bin/time missing: dry-run RSS not measured."
} | tee "$OUT/results.md"

# --- nftables backend: bench/nft_sync.py (needs root for network namespaces) ---
if [ "${BENCH_NFT_SYNC:-1}" = 0 ]; then
        log "== nft_sync.py skipped: BENCH_NFT_SYNC=0"
elif [ "$(id -u)" != 0 ]; then
        log "== nft_sync.py skipped: needs root (it programs the kernel in scratch network namespaces)"
elif ! command -v nft >/dev/null || ! command -v ip >/dev/null; then
        log "== nft_sync.py skipped: nft or ip not found"
else
        log "== nftables backend: bench/nft_sync.py"
        NFT_BENCH_SIZES="${NFT_BENCH_SIZES:-$SIZES}" NFT_BENCH_SEED="$SEED" "$PY" "$B/nft_sync.py" ||
                log "== nft_sync.py failed (rc $?), see bench/out/nft_raw.txt"
fi

# --- full and periodic syncs against a baseline build: bench/sync_kinds.py ---
if [ -z "${NFT_BENCH_BASE_STEPS:-}" ] || [ "$(id -u)" != 0 ]; then
        log "== sync_kinds.py skipped: needs root and NFT_BENCH_BASE_STEPS (a baseline build's nlp_steps)"
else
        log "== full and periodic syncs: bench/sync_kinds.py"
        NFT_BENCH_SEED="$SEED" "$PY" "$B/sync_kinds.py" >"$OUT/sync_kinds.md" ||
                log "== sync_kinds.py failed (rc $?)"
fi

# --- the daemon's own sync after one small change (issue 11): a reload of
# --manifests (one endpoint in a small file beside the cluster) and Node
# status updates from tests/fakeapi.py, with build/nlproxy in scratch network
# namespaces. BENCH_DAEMON=0 skips it. BENCH_DAEMON_BASELINE_REF=<git rev>
# also measures that revision's nlproxy, built from `git archive` under
# bench/out, in the same run (before / after).
if [ "${BENCH_DAEMON:-1}" = 0 ]; then
        log "== daemon_sync.py skipped: BENCH_DAEMON=0"
elif [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null || ! command -v openssl >/dev/null; then
        log "== daemon_sync.py skipped: needs root, ip and openssl (scratch network namespaces, the fake API server)"
else
        base=""
        if [ -n "${BENCH_DAEMON_BASELINE_REF:-}" ]; then
                BD=$OUT/baseline-src
                rm -rf "$BD"
                mkdir -p "$BD"
                if git -C "$TOP" archive "$BENCH_DAEMON_BASELINE_REF" | tar -x -C "$BD" &&
                        make -s -C "$BD" -j2 build/nlproxy >"$OUT/baseline-build.txt" 2>&1; then
                        base=$BD/build/nlproxy
                else
                        log "== baseline $BENCH_DAEMON_BASELINE_REF did not build, see bench/out/baseline-build.txt"
                fi
        fi
        log "== the daemon after one change: bench/daemon_sync.py${base:+ (baseline $BENCH_DAEMON_BASELINE_REF)}"
        DAEMON_BENCH_SIZES="${DAEMON_BENCH_SIZES:-1000x2 10000x2 30000x2}" DAEMON_BENCH_SEED="$SEED" \
                DAEMON_BENCH_BASELINE="$base" "$PY" "$B/daemon_sync.py" ||
                log "== daemon_sync.py failed (rc $?), see bench/out/daemon_raw.txt"
fi

# --- IPVS backend, in tests/vm (this kernel may have no IPVS; emulated, so
# only its ratio against ipvsadm-restore counts). BENCH_IPVS=0 skips it.
if [ "${BENCH_IPVS:-1}" = 0 ] || [ "$(id -u)" != 0 ] || ! command -v qemu-system-x86_64 >/dev/null; then
        log "== IPVS benchmark skipped (BENCH_IPVS=0, not root, or no qemu-system-x86_64)"
else
        log "== IPVS backend: bench/nft_sync.py NFT_BENCH_MODE=ipvs in tests/vm"
        # The guest's default 1 GiB does not hold 100k services (model, two
        # tables, ipvsadm-restore's input); emulation makes 100k take long.
        ipvs_sizes=${IPVS_BENCH_SIZES:-1000x2 10000x2}
        ipvs_mem=1024 ipvs_timeout=3000
        for sz in $ipvs_sizes; do
                if [ "${sz%x*}" -gt 30000 ]; then ipvs_mem=3072 ipvs_timeout=7200; fi
        done
        "$TOP/tests/vm/run" -m "${IPVS_BENCH_MEM:-$ipvs_mem}" --timeout "${IPVS_BENCH_TIMEOUT:-$ipvs_timeout}" \
                -e NFT_BENCH_MODE=ipvs -e NFT_BENCH_OUT=/tmp/bo \
                -e NFT_BENCH_SIZES="$ipvs_sizes" -e NFT_BENCH_REPS_SMALL=1 -e NFT_BENCH_REPS_LARGE=1 \
                -e NFT_BENCH_ITERS=20 'python3 bench/nft_sync.py' >"$OUT/ipvs_vm.txt" 2>&1 ||
                log "== IPVS benchmark failed, see bench/out/ipvs_vm.txt"
        { echo "# services cold_s baseline_s"; sed -n 's/^PLOTDATA //p' "$OUT/ipvs_vm.txt"; } >"$OUT/ipvs_plot.dat"
        sed -n '/^## IPVS backend/,/^PLOTDATA/p' "$OUT/ipvs_vm.txt" | grep -v '^PLOTDATA\|^RESULT' >>"$OUT/ipvs_results.md"
fi

# --- the API watcher (bench/watch.sh): the fake API server's list of
# WATCH_BENCH_SERVICES services and their slices, then WATCH_BENCH_UPDATES
# EndpointSlice updates in one burst; events per CPU second of nlproxy and the
# no-loss checks. BENCH_WATCH=0 skips it.
if [ "${BENCH_WATCH:-1}" = 0 ] || ! command -v openssl >/dev/null; then
        log "== watcher benchmark skipped (BENCH_WATCH=0 or no openssl)"
else
        ws=${WATCH_BENCH_SERVICES:-10000}
        log "== the API watcher: bench/watch.sh, $ws services, ${WATCH_BENCH_UPDATES:-$ws} updates"
        SERVICES=$ws UPDATES=${WATCH_BENCH_UPDATES:-$ws} bash "$B/watch.sh" >"$OUT/watch.txt" 2>&1 ||
                log "== watch.sh failed (rc $?), see bench/out/watch.txt"
fi

# --- issue 15's targets, met or missed, from this run's figures ---
"$PY" "$B/targets.py" --since "$T0" --load-before "$LOAD0" --load-after "$(uptime)" | tee "$OUT/targets.md" ||
        log "== targets.py failed"

# --- the plot (gnuplot): sync time against services, backends and baselines ---
if command -v gnuplot >/dev/null && [ -s "$OUT/nft_plot.dat" ]; then
        gnuplot -e "out='$OUT/sync.png'; dir='$OUT'" "$B/plot.gp" && log "== plot: bench/out/sync.png"
else
        log "== plot skipped: no gnuplot (make deps) or no nftables results"
fi

