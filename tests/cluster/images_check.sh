#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The real cluster's images (tests/cluster/images.sh) work: built (or taken
# from the cache), imported into a throwaway containerd, and run there with
# `ctr run`, each doing what the e2e suite or the kubelet asks of it:
#   pause    stays up, reaps orphans, exits 0 on SIGTERM
#   agnhost  its default `pause` stays up; `netexec` answers HTTP and UDP on
#            loopback; sh, bash, nc, curl, wget, nslookup, dig, ip, iperf are
#            there, and the user and files the suite expects
#   busybox  sh, sleep and nc (to a name from /etc/hosts, as the Conntrack spec)
#   regression-issue-74839  its server starts and listens on 9000
#   distroless-iptables     sleep, sh, grep and conntrack -L, privileged
#   nginx    (when built) serves its page on port 80
#   nlproxy  --version is this tree's
# containerd has its own root, state and socket in a temporary directory and
# runs in its own network and mount namespaces (unshare): containers share
# that network namespace (--net-host), every mount ends with it, and their
# cgroups are under /nlproxy-images-check-PID, removed afterwards. Teardown
# is by PID (containerd, then the shims and container processes proven ours
# by their socket address or cgroup); every wait is bounded.
#
#   bash tests/cluster/images_check.sh [SHORT...]   (default: IMAGES_WANT)
# Needs root and what images_prereqs lists; a first run builds the images
# (a few minutes), later runs take them from build/cluster/images.
set -u
cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD

if [ "${1:-}" = --inner ]; then
        INNER=1
        T=$2
        shift 2
else
        INNER=
        T=
fi
. tests/cluster/images.sh

pass=0
failed=0
ok() { echo "ok   - $1"; pass=$((pass + 1)); }
bad() { echo "FAIL - $1${2:+: $2}"; failed=$((failed + 1)); }
finish() {
        echo "$pass passed, $failed failed"
        [ "$failed" = 0 ]
        exit
}

# ---------------------------------------------------------------- outer part
if [ -z "$INNER" ]; then
        if [ "$(id -u)" != 0 ] || ! images_prereqs; then
                why=${IMAGES_MISSING:-needs root}
                echo "SKIP images_check.sh: $why"
                [ "${CI:-}" = true ] && { bad "images_check.sh ran" "skipped under CI=true: $why"; finish; }
                exit 0
        fi
        command -v containerd >/dev/null && command -v runc >/dev/null && command -v curl >/dev/null ||
                { bad "containerd, runc and curl are installed" "make deps installs them"; finish; }
        start=$SECONDS
        if images_build "$@"; then
                ok "images_build ${*:-$IMAGES_WANT} ($((SECONDS - start)) s)"
        else
                bad "images_build ${*:-$IMAGES_WANT}"
                finish
        fi
        for s in "${IMAGES_BUILT[@]}"; do
                printf '#   %-24s %-64s %4s MB\n' "$s" "$(images_name "$s")" "$(du -m "${IMAGES_ARCHIVE[$s]}" | cut -f1)"
        done
        T=$(mktemp -d /tmp/nlproxy-images-check.XXXXXX)
        ipid=
        outer_cleanup() {
                local p i
                # The inner part stops its containers and containerd on TERM
                # (timeout passes it on), within its bounded commands.
                if [ -n "$ipid" ] && kill -0 "$ipid" 2>/dev/null; then
                        kill -TERM "$ipid" 2>/dev/null
                        for ((i = 0; i < 300; i++)); do
                                kill -0 "$ipid" 2>/dev/null || break
                                sleep 0.1
                        done
                fi
                # What it could not stop (it was killed): containerd and the
                # shims name our directory on their command line, nothing else does.
                for p in /proc/[0-9]*; do
                        { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qF "$T/" || continue
                        kill -KILL "${p#/proc/}" 2>/dev/null
                done
                rm -rf "$T"
        }
        trap outer_cleanup EXIT
        trap 'exit 130' INT TERM HUP
        # In the background: a signal to this script is handled at once
        # (bash runs traps only after a foreground command ends).
        timeout 900 unshare --net --mount --propagation private -- bash "$0" --inner "$T" "${IMAGES_BUILT[@]}" &
        ipid=$!
        wait "$ipid"
        rc=$?
        ipid=
        [ "$rc" = 0 ] || [ "$rc" = 1 ] || bad "the checks ran to their end" "exit status $rc"
        [ "$rc" = 0 ] || failed=$((failed + 1))
        exit "$([ "$failed" = 0 ] && echo 0 || echo 1)"
fi

# ---------------------------------------------------------------- inner part
# In our own network and mount namespaces, as root; T is ours.
WANT=("$@")
S=$T/containerd.sock
CG=/nlproxy-images-check-$$
CPID=
CTR=(timeout 60 ctr --address "$S" -n k8s.io)
has() { [[ " ${WANT[*]} " == *" $1 "* ]]; }

# Ready when the state is a task's: RUNNING or STOPPED.
task_status() { "${CTR[@]}" task ls 2>/dev/null | awk -v id="$1" '$1 == id { print $3 }'; }
wait_status() { # ID STATUS SECONDS
        local i
        for ((i = 0; i < $3 * 10; i++)); do
                [ "$(task_status "$1")" = "$2" ] && return 0
                sleep 0.1
        done
        return 1
}
run_d() { # ID IMAGE [ctr run flags...] -- [ARGS...]: a detached task, its output in T/ID.log
        local id=$1 img=$2 flags=()
        shift 2
        while [ $# -gt 0 ] && [ "$1" != -- ]; do flags+=("$1"); shift; done
        [ $# -gt 0 ] && shift
        "${CTR[@]}" run -d --cgroup "$CG/$id" --log-uri "file://$T/$id.log" "${flags[@]}" \
                "$(images_ref "$img")" "$id" "$@" >>"$T/ctr.log" 2>&1
}
run_rm() { # ID IMAGE [flags...] -- ARGS...: a task run to its end; its output on stdout
        local id=$1 img=$2 flags=()
        shift 2
        while [ $# -gt 0 ] && [ "$1" != -- ]; do flags+=("$1"); shift; done
        [ $# -gt 0 ] && shift
        "${CTR[@]}" run --rm --cgroup "$CG/$id" "${flags[@]}" "$(images_ref "$img")" "$id" "$@" </dev/null 2>&1
}
ex() { # TASK ARGS...: exec in a running task
        local id=$1
        shift
        "${CTR[@]}" task exec --exec-id "x$RANDOM" "$id" "$@" </dev/null 2>&1
}

inner_cleanup() {
        local t c i p d
        if [ -n "$CPID" ]; then
                for t in $("${CTR[@]}" task ls -q 2>/dev/null); do
                        "${CTR[@]}" task kill -s SIGKILL "$t" >/dev/null 2>&1
                done
                for c in $("${CTR[@]}" containers ls -q 2>/dev/null); do
                        for ((i = 0; i < 50; i++)); do
                                [ "$(task_status "$c")" = RUNNING ] || break
                                sleep 0.1
                        done
                        "${CTR[@]}" task rm -f "$c" >/dev/null 2>&1
                        "${CTR[@]}" containers rm "$c" >/dev/null 2>&1
                done
                kill -TERM "$CPID" 2>/dev/null
                for ((i = 0; i < 100; i++)); do
                        kill -0 "$CPID" 2>/dev/null || break
                        sleep 0.1
                done
                kill -KILL "$CPID" 2>/dev/null
                CPID=
        fi
        # Container processes that outlived their shim are in our cgroups.
        for d in /sys/fs/cgroup/*"$CG"; do
                [ -d "$d" ] || continue
                while read -r p; do
                        [ -n "$p" ] && kill -KILL "$p" 2>/dev/null
                done < <(cat "$d"/*/cgroup.procs 2>/dev/null)
        done
        sleep 0.2
        for d in /sys/fs/cgroup/*"$CG"; do
                [ -d "$d" ] || continue
                find "$d" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null
                rmdir "$d" 2>/dev/null || echo "images_check: could not remove cgroup $d" >&2
        done
}
trap inner_cleanup EXIT
trap 'exit 130' INT TERM HUP

ip link set lo up || { bad "loopback up in the test's network namespace"; finish; }
# The archives' names, from the cache the outer part filled (nothing to build).
images_build "${WANT[@]}" 2>/dev/null || { bad "images_build again in the namespaces"; finish; }

# ---- pause, alone: reaping (it is PID 1 of a PID namespace of its own)
if has pause; then
        unshare --pid --fork "$ROOT/build/cluster/pause" 2>"$T/pause-host.log" &
        upid=$!
        ppid=
        for ((i = 0; i < 50; i++)); do
                ppid=$(cat "/proc/$upid/task/$upid/children" 2>/dev/null | awk '{ print $1 }')
                [ -n "$ppid" ] && break
                sleep 0.1
        done
        if [ -n "$ppid" ]; then
                # Two orphans: their shell exits at once, they are reparented to pause.
                nsenter --target "$ppid" --pid -- sh -c 'sleep 0.5 & sleep 0.7 & exit 0'
                sleep 0.2
                orphans=$(ps -o pid= --ppid "$ppid" | wc -l)
                sleep 1.2
                zombies=$(ps -o stat= --ppid "$ppid" | grep -c Z)
                left=$(ps -o pid= --ppid "$ppid" | wc -l)
                [ "$orphans" = 2 ] && [ "$zombies" = 0 ] && [ "$left" = 0 ] &&
                        ok "pause as PID 1: 2 orphans reparented to it, reaped when they exit" ||
                        bad "pause reaps orphans" "orphans $orphans, zombies $zombies, left $left"
                kill -TERM "$ppid"
        else
                bad "pause starts in a PID namespace"
        fi
        for ((i = 0; i < 50; i++)); do kill -0 "$upid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$upid" 2>/dev/null; then
                bad "pause exits on SIGTERM" "still running"
                kill -KILL "$ppid" 2>/dev/null
        fi
        wait "$upid"
        rc=$?
        [ "$rc" = 0 ] && ok "pause: exit 0 on SIGTERM" || bad "pause: exit status on SIGTERM" "$rc"
fi

# ---- containerd
cat >"$T/config.toml" <<EOF
version = 2
root = "$T/root"
state = "$T/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$S"
[ttrpc]
  address = "$S.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$T/opt"
EOF
containerd --config "$T/config.toml" >"$T/containerd.log" 2>&1 &
CPID=$!
up=
for ((i = 0; i < 200; i++)); do
        kill -0 "$CPID" 2>/dev/null || break
        "${CTR[@]}" version >/dev/null 2>&1 && { up=1; break; }
        sleep 0.1
done
[ -n "$up" ] || { bad "containerd starts" "$(tail -n 5 "$T/containerd.log")"; finish; }
ok "containerd $(containerd --version | awk '{ print $3 }') up on $S"

start=$SECONDS
if images_import "$S" "${WANT[@]}"; then
        ok "images_import: ${WANT[*]} ($((SECONDS - start)) s)"
else
        bad "images_import" "$(tail -n 5 "$IMAGES_CACHE/logs/import.log")"
        finish
fi

# ---- pause, as a container
if has pause; then
        "${CTR[@]}" run --cgroup "$CG/pause" "$(images_ref "$IMAGE_PAUSE")" pause >"$T/pause.log" 2>&1 &
        rpid=$!
        if wait_status pause RUNNING 10 && sleep 1 && [ "$(task_status pause)" = RUNNING ]; then
                ok "pause: the container stays up"
        else
                bad "pause: the container stays up" "$(task_status pause) $(cat "$T/pause.log")"
        fi
        user=$(awk '/^Uid:/ { print $2 }' "/proc/$("${CTR[@]}" task ls | awk '$1 == "pause" { print $2 }')/status" 2>/dev/null)
        [ "$user" = 65535 ] && ok "pause: runs as uid 65535, as upstream's" || bad "pause: uid" "$user"
        "${CTR[@]}" task kill -s SIGTERM pause >/dev/null 2>&1
        for ((i = 0; i < 100; i++)); do kill -0 "$rpid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$rpid" 2>/dev/null; then
                bad "pause: exits on SIGTERM" "still running after 10 s"
        else
                wait "$rpid"
                rc=$?
                [ "$rc" = 0 ] && ok "pause: the container exits 0 on SIGTERM" || bad "pause: exit status" "$rc $(cat "$T/pause.log")"
        fi
        "${CTR[@]}" containers rm pause >/dev/null 2>&1
fi

# ---- agnhost
if has agnhost; then
        if run_d agnhost "$IMAGE_AGNHOST" --net-host && wait_status agnhost RUNNING 10 && sleep 1 &&
                [ "$(task_status agnhost)" = RUNNING ]; then
                ok "agnhost: the default command (pause) stays up"
        else
                bad "agnhost: the default command stays up" "$(task_status agnhost) $(tail -n 3 "$T/agnhost.log")"
        fi
        run_d netexec "$IMAGE_AGNHOST" --net-host -- /agnhost netexec --http-port=18080 --udp-port=18081
        out=
        for ((i = 0; i < 100; i++)); do
                out=$(curl -s -m 2 http://127.0.0.1:18080/hostname) && [ -n "$out" ] && break
                sleep 0.1
        done
        [ -n "$out" ] && ok "agnhost netexec: HTTP /hostname on loopback: $out" ||
                bad "agnhost netexec answers on 127.0.0.1:18080" "$(tail -n 3 "$T/netexec.log")"
        out=$(ex agnhost sh -c 'echo hostname | nc -u -w 2 127.0.0.1 18081')
        [ -n "$out" ] && [[ $out != *rror* ]] && ok "agnhost: nc -u to netexec's UDP port: $out" ||
                bad "agnhost: nc -u to netexec's UDP port" "$out"
        out=$(ex agnhost curl -s -m 5 'http://127.0.0.1:18080/echo?msg=inside')
        [ "$out" = inside ] && ok "agnhost: curl inside the container" || bad "agnhost: curl inside" "$out"
        out=$(ex agnhost sh -c 'for t in sh bash nc curl wget nslookup dig ip iperf; do command -v $t >/dev/null || echo "missing $t"; done
                nc -h 2>&1 | grep -q OpenBSD || echo "nc is not netcat-openbsd"
                ip -o link show lo >/dev/null || echo "ip link fails"
                nslookup -version >/dev/null 2>&1 || dig -v >/dev/null 2>&1 || echo "dnsutils fail"
                [ "$(id -u user-defined-in-image):$(id -g user-defined-in-image):$(id -gn user-defined-in-image)" = 1000:50000:group-defined-in-image ] || echo "user-defined-in-image: $(id user-defined-in-image 2>&1)"
                [ -d /uploads ] && [ -z "$(ls -A /uploads)" ] || echo "no empty /uploads"
                [ "$(readlink /agnhost-2)" = agnhost ] || echo "/agnhost-2 is not a link to agnhost"
                grep -q "BEGIN CERTIFICATE" /localhost.crt && grep -q "PRIVATE KEY" /localhost.key || echo "no /localhost.crt, /localhost.key"')
        [ -z "$out" ] && ok "agnhost: sh bash nc(openbsd) curl wget nslookup dig ip iperf, user 1000:50000, /uploads, /agnhost-2, TLS pair" ||
                bad "agnhost: tools and files" "$(tr '\n' ';' <<<"$out")"
        out=$(ex agnhost /agnhost-2 --help 2>&1 | head -n 1)
        [ -n "$out" ] && ok "agnhost: /agnhost-2 runs" || bad "agnhost: /agnhost-2 runs"
fi

# ---- busybox
if has busybox; then
        printf '127.0.0.1 localhost boom-server\n' >"$T/hosts"
        # Our network namespace, joined without --net-host, which would mount
        # the host's /etc/hosts over ours.
        out=$(run_rm busybox "$IMAGE_BUSYBOX" --with-ns "network:/proc/$$/ns/net" \
                --mount "type=bind,src=$T/hosts,dst=/etc/hosts,options=rbind:ro" -- \
                sh -c 'echo Pausing start. && sleep 0.2 && printf "GET /hostname HTTP/1.0\r\n\r\n" | nc boom-server 18080')
        if has agnhost; then
                [[ $out == "Pausing start."*"200 OK"* ]] && ok "busybox: sh, sleep, nc to a name from /etc/hosts (netexec answered)" ||
                        bad "busybox: sh, sleep, nc" "$out"
        else
                [[ $out == "Pausing start."* ]] && ok "busybox: sh, sleep" || bad "busybox: sh, sleep" "$out"
        fi
fi

# ---- regression-issue-74839
if has regression-issue-74839; then
        run_d boom "$IMAGE_REGRESSION" --net-host --env POD_IP=127.0.0.1 --env POD_IPS=127.0.0.1
        up=
        for ((i = 0; i < 50; i++)); do
                ss -ltnH 'sport = :9000' | grep -q . && { up=1; break; }
                sleep 0.1
        done
        [ -n "$up" ] && [ "$(task_status boom)" = RUNNING ] && ok "regression-issue-74839: the server listens on 9000" ||
                bad "regression-issue-74839: the server listens on 9000" "$(task_status boom) $(tail -n 3 "$T/boom.log")"
fi

# ---- distroless-iptables: as the KubeProxy spec uses it
if has distroless-iptables; then
        run_d dt "$IMAGE_DISTROLESS_IPTABLES" --net-host --privileged -- sleep 600
        wait_status dt RUNNING 10
        out=$(ex dt /bin/sh -x -c "conntrack -L -f ipv4 2>&1 | grep -m 1 -c 'flow entries'")
        rc=$?
        [ "$rc" = 0 ] && ok "distroless-iptables: sleep 600, then sh -c 'conntrack -L -f ipv4 | grep' by exec" ||
                bad "distroless-iptables: conntrack -L by exec" "$out"
fi

# ---- nginx
if has nginx; then
        run_d nginx "$IMAGE_NGINX" --net-host
        out=
        for ((i = 0; i < 100; i++)); do
                out=$(curl -s -m 2 http://127.0.0.1:80/) && [ -n "$out" ] && break
                sleep 0.1
        done
        grep -q 'Welcome to nginx' <<<"$out" && ok "nginx: serves its page on port 80" ||
                bad "nginx: serves on port 80" "$(tail -n 3 "$T/nginx.log")"
fi

# ---- nlproxy
if has nlproxy; then
        out=$(run_rm nlp "$IMAGE_NLPROXY" -- /usr/sbin/nlproxy --version)
        [ "$out" = "nlproxy $(cat VERSION)" ] && ok "nlproxy ($IMAGE_NLPROXY): $out" || bad "nlproxy --version" "$out"
        if images_nlproxy_tag "$S" check-alt && out=$(run_rm nlp2 "$IMAGE_NLPROXY_ALT" -- /usr/sbin/nlproxy --version) &&
                [ "$out" = "nlproxy $(cat VERSION)" ]; then
                ok "images_nlproxy_tag: the same image as $IMAGE_NLPROXY_ALT runs"
        else
                bad "images_nlproxy_tag" "$out"
        fi
fi

finish
