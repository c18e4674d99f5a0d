#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The container image and the Debian package, without a Docker engine:
#  1. packaging/docker/Dockerfile, read: two bookworm-slim stages, a runtime
#     package for every library build/nlproxy links, /usr/sbin/nlproxy.
#  2. dpkg-buildpackage -us -uc -b builds the .deb (packaging/debian) from a
#     copy of the tree in a temporary directory.
#  3. debootstrap --variant=minbase bookworm (what bookworm-slim is) into
#     build/packaging/ (cached there as a tarball across runs), from the Debian
#     mirror of this machine's apt sources (NLPROXY_DEBIAN_MIRROR overrides).
#  4. The Dockerfile, executed: each stage a copy of that root, its RUN lines
#     run with chroot, COPY from the build context (less the .dockerignore) or
#     from the build stage, as `docker build` would. The build stage compiles
#     nlproxy; in the runtime stage's root `nlproxy --version` and a dry run of
#     examples/redis must work: the runtime stage lacks nothing.
#  5. The .deb: installed with apt-get into another fresh copy (so that apt
#     resolves the package's own Depends), then the same runs, and the man page
#     and the (disabled) systemd unit are there.
# Needs root (chroot) and the network to the Debian mirror; a cold run takes
# several minutes, later runs reuse the cached root and apt's downloads. Every
# step is bounded in time; a failure says why and the test exits non-zero.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${NLPROXY:-build/nlproxy}
VERSION=$(cat VERSION)
CACHE=$ROOT/build/packaging          # kept across runs (make clean removes it)
WORK=$CACHE/run.$$                   # this run's roots, removed on exit
TMP=
pass=0
failed=0
ok() { echo "ok   - $1"; pass=$((pass + 1)); }
bad() { echo "FAIL - $1${2:+: $2}"; failed=$((failed + 1)); }
finish() {
        echo "$pass passed, $failed failed"
        [ "$failed" = 0 ]
        exit
}
# A step that cannot go on: the reason, then the summary.
abort() {
        bad "$1" "$2"
        finish
}

cleanup() {
        # The chroot mounts live in a private mount namespace that is gone by
        # now; never delete a tree that still has something mounted in it.
        if [ -d "$WORK" ]; then
                if findmnt -rn -o TARGET | grep -qF "$WORK"; then
                        echo "packaging.sh: $WORK still has mounts; not removing it" >&2
                else
                        rm -rf "$WORK"
                fi
        fi
        [ -n "$TMP" ] && rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

if [ "$(id -u)" != 0 ]; then
        echo "SKIP packaging.sh: needs root (chroot, apt-get in the chroot)"
        if [ "${CI:-}" = true ]; then
                abort "packaging.sh ran" "skipped under CI=true"
        fi
        exit 0
fi
for t in debootstrap dpkg-buildpackage dh fakeroot chroot unshare findmnt; do
        command -v "$t" >/dev/null || abort "$t is installed" "missing: make deps installs debootstrap, dpkg-dev, debhelper, fakeroot"
done
[ -x "$BIN" ] || abort "$BIN is built" "run make all"

TMP=$(mktemp -d /tmp/nlproxy-packaging.XXXXXX)
mkdir -p "$CACHE" "$WORK"

# ---------------------------------------------------------------- 1. Dockerfile
DF=packaging/docker/Dockerfile
froms=$(grep -cE '^FROM debian:bookworm-slim( AS [a-z]+)?$' "$DF")
[ "$froms" = 2 ] && [ "$(grep -c '^FROM ' "$DF")" = 2 ] &&
        ok "Dockerfile: two stages, both debian:bookworm-slim" || bad "Dockerfile: two bookworm-slim stages" "$(grep '^FROM' "$DF")"
# The runtime stage: everything after the last FROM.
runtime=$(awk '/^FROM /{ s = "" } { s = s $0 "\n" } END { printf "%s", s }' "$DF")
# Its packages: the words after `apt-get install ... --no-install-recommends`, up to `&&`.
RUNTIME_PKGS=$(sed -e ':a' -e '/\\$/{N;s/\\\n//;ba' -e '}' <<<"$runtime" |
        sed -n 's/.*apt-get install -y --no-install-recommends \([^&]*\).*/\1/p' | tr -s ' ' '\n' | grep . | sort -u)
[ -n "$RUNTIME_PKGS" ] && ok "Dockerfile: runtime packages: $(echo $RUNTIME_PKGS)" ||
        bad "Dockerfile: runtime stage installs its libraries with apt-get" ""
grep -qx 'COPY --from=build /src/build/nlproxy /usr/sbin/nlproxy' <<<"$runtime" &&
        grep -qx 'ENTRYPOINT \["/usr/sbin/nlproxy"\]' <<<"$runtime" &&
        ok "Dockerfile: runtime stage holds /usr/sbin/nlproxy, the DaemonSet's command" ||
        bad "Dockerfile: COPY --from=build ... /usr/sbin/nlproxy and ENTRYPOINT"
grep -q '/usr/sbin/nlproxy' packaging/kubernetes/daemonset.yaml &&
        ok "DaemonSet runs /usr/sbin/nlproxy" || bad "DaemonSet command is /usr/sbin/nlproxy"
# The build stage asks the Makefile for DEB_BUILD (one list, no copy).
eval_arg=$(grep -o "make -s --eval='[^']*' build-deps" "$DF" | head -n1)
deps=$(make -s --eval='build-deps: ; @echo $(DEB_BUILD)' build-deps 2>/dev/null)
[ -n "$eval_arg" ] && grep -q 'libnftnl-dev' <<<"$deps" && grep -qx 'RUN make clean && make all' "$DF" &&
        ok "Dockerfile: build stage installs the Makefile's DEB_BUILD ($(wc -w <<<"$deps") packages) and runs make all" ||
        bad "Dockerfile: build stage" "want: $eval_arg -> $deps, RUN make clean && make all"
# Every library the binary links comes from a listed package (libc6 is in the base).
missing=
for so in $(readelf -d "$BIN" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
        path=$(ldd "$BIN" | awk -v l="$so" '$1 == l { print $3 }')
        pkg=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null || dpkg -S "$path" 2>/dev/null)
        pkg=${pkg%%:*}
        [ "$pkg" = libc6 ] && continue
        grep -qx -- "$pkg" <<<"$RUNTIME_PKGS" || missing="$missing $so(${pkg:-?})"
done
[ -z "$missing" ] && ok "Dockerfile: a runtime package for every linked library" ||
        bad "Dockerfile: runtime packages for every linked library" "missing:$missing"

# ---------------------------------------------------------------- 2. the .deb
src=$TMP/src/nlproxy-$VERSION
mkdir -p "$src"
tar -C "$ROOT" --exclude=./build --exclude=./.git --exclude=./bench/out -cf - . | tar -C "$src" -xf -
cp -r packaging/debian "$src/debian"
start=$SECONDS
if (cd "$src" && timeout 900 dpkg-buildpackage -us -uc -b -j2) >"$TMP/deb.log" 2>&1; then
        ok "dpkg-buildpackage -us -uc -b ($((SECONDS - start)) s)"
else
        abort "dpkg-buildpackage -us -uc -b" "$(tail -n 15 "$TMP/deb.log")"
fi
DEB=$TMP/src/nlproxy_${VERSION}_$(dpkg --print-architecture).deb
[ -f "$DEB" ] || abort "the .deb is built" "no $DEB"
contents=$(dpkg-deb -c "$DEB" | awk '{ print $NF }')
for f in ./usr/sbin/nlproxy ./usr/share/man/man8/nlproxy.8.gz ./lib/systemd/system/nlproxy.service; do
        grep -qx -- "$f" <<<"$contents" && ok ".deb holds ${f#.}" || bad ".deb holds ${f#.}"
done
depends=$(dpkg-deb -f "$DEB" Depends)
grep -q libnftnl11 <<<"$depends" && ok ".deb Depends from shlibs: $depends" || bad ".deb Depends" "$depends"

# ---------------------------------------------------------------- 3. base root
# The mirror this machine's apt uses for bookworm (deb822 .sources or
# one-line sources.list).
mirror_of_host() {
        {
                cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk 'BEGIN { RS = "" }
                        /(^|\n)Types:[^\n]*deb([ \n]|$)/ && /(^|\n)Suites:[^\n]*[ \t]bookworm([ \t\n]|$)/ {
                                if (match($0, /(^|\n)URIs:[ \t]*[^ \t\n]+/)) {
                                        u = substr($0, RSTART, RLENGTH); sub(/^\n?URIs:[ \t]*/, "", u); print u
                                }
                        }'
                cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
                        sed -n 's/^deb \(\[[^]]*\] \)\{0,1\}\([^ ]*\) bookworm .*/\2/p'
        } | grep -E '^https?://' | head -n1
}
MIRROR=${NLPROXY_DEBIAN_MIRROR:-$(mirror_of_host)}
[ -n "$MIRROR" ] || abort "a Debian bookworm mirror in /etc/apt/sources.list(.d)" \
        "none found; set NLPROXY_DEBIAN_MIRROR=http://<mirror>/debian"
BASE_TAR=$CACHE/bookworm-minbase.tar
if [ -s "$BASE_TAR" ]; then
        ok "base root: cached $BASE_TAR"
else
        start=$SECONDS
        echo "# debootstrap --variant=minbase bookworm from $MIRROR (first run only; cached in $CACHE)"
        if timeout 900 debootstrap --variant=minbase bookworm "$WORK/base" "$MIRROR" >"$TMP/debootstrap.log" 2>&1; then
                tar -C "$WORK/base" -cf "$BASE_TAR.tmp" . && mv "$BASE_TAR.tmp" "$BASE_TAR"
                rm -rf "$WORK/base"
                ok "debootstrap --variant=minbase bookworm ($((SECONDS - start)) s)"
        else
                rm -rf "$WORK/base" "$BASE_TAR.tmp"
                abort "debootstrap --variant=minbase bookworm from $MIRROR" \
                        "could not build the base root (network to the mirror?): $(grep -E '^[EW]:' "$TMP/debootstrap.log" | tail -n 3) $(tail -n 3 "$TMP/debootstrap.log")"
        fi
fi

# ---------------------------------------------------------------- chroot runs
# apt's downloads are kept in the cache and bind-mounted into each root, so
# that later runs download only the package lists (the Dockerfile removes
# those itself, as images do).
mkdir -p "$CACHE/apt-archives/partial"
rm -rf "$CACHE/apt-lists"   # an earlier layout of this cache

new_root() { # DIR: a fresh copy of the base root
        mkdir -p "$1" && tar -C "$1" -xf "$BASE_TAR" || return 1
        cp /etc/resolv.conf "$1/etc/resolv.conf"
        printf '#!/bin/sh\nexit 101\n' >"$1/usr/sbin/policy-rc.d" # no daemons start in it
        chmod 755 "$1/usr/sbin/policy-rc.d"
}

# in_root DIR SECONDS SCRIPT: SCRIPT under sh in the chroot DIR, with /proc
# and the apt caches mounted in a private mount namespace (the mounts end with
# it, whatever happens), bounded in time.
in_root() {
        local dir=$1 secs=$2 script=$3
        timeout "$secs" unshare --mount --propagation private sh -ec '
                mount -t proc proc "$1/proc"
                mount --bind "$2/apt-archives" "$1/var/cache/apt/archives"
                exec chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
                        sh -ec "$3"' sh "$dir" "$CACHE" "$script"
}

APT='apt-get -q -o APT::Sandbox::User=root -o Dpkg::Use-Pty=0'
DRY='nlproxy --manifests /tmp/redis --dry-run --output nft --hostname-override node-a --cluster-cidr 10.244.0.0/16 --service-cluster-ip-range 10.96.0.0/12'

# check_runs NAME DIR: --version and a dry run of examples/redis in DIR.
check_runs() {
        local name=$1 dir=$2 out
        rm -rf "$dir/tmp/redis" && cp -r examples/redis "$dir/tmp/redis"
        if out=$(in_root "$dir" 60 'nlproxy --version' 2>&1) && [ "$out" = "nlproxy $VERSION" ]; then
                ok "$name: chroot nlproxy --version: $out"
        else
                bad "$name: chroot nlproxy --version" "$out"
        fi
        # Both endpoints, as elements of the service's endpoint map (docs/nftables-ruleset.md).
        if out=$(in_root "$dir" 60 "$DRY" 2>&1) && grep -Eq '10\.96\.0\.10 \. tcp \. 6379 \. [01] : 10\.244\.1\.10 \. 6379' <<<"$out" &&
                grep -Eq '10\.96\.0\.10 \. tcp \. 6379 \. [01] : 10\.244\.2\.11 \. 6379' <<<"$out"; then
                ok "$name: chroot dry run of examples/redis ($(wc -l <<<"$out") lines of nft)"
        else
                bad "$name: chroot dry run of examples/redis" "$(tail -n 5 <<<"$out")"
        fi
}

# ---------------------------------------------------------------- 4. the Dockerfile, run
# Instructions one a line: comments dropped, continuation lines joined.
instructions=$(sed -e '/^[[:space:]]*#/d' -e ':a' -e '/\\$/{N;s/\\\n//;ba' -e '}' "$DF" | grep -v '^[[:space:]]*$')
# What `COPY` from the context leaves out (the Dockerfile's own .dockerignore).
ignore=()
while read -r pat; do
        [ -n "$pat" ] && ignore+=("--exclude=./$pat")
done < <(sed -e 's/#.*//' -e 's/[[:space:]]*$//' "$DF.dockerignore" 2>/dev/null)

declare -A STAGE=()    # stage name -> root
nstage=0
root=
workdir=/
user=
entrypoint=
abs() { case $1 in /*) echo "$1" ;; *) echo "${workdir%/}/$1" ;; esac; }
while read -r op rest; do
        case $op in
        FROM)
                read -r image as name <<<"$rest"
                [ "$image" = debian:bookworm-slim ] || abort "Dockerfile: FROM $image" "only debian:bookworm-slim is emulated"
                nstage=$((nstage + 1))
                root=$WORK/stage$nstage
                new_root "$root" || abort "Dockerfile stage $nstage: root from $BASE_TAR" "extraction failed"
                [ "${as^^}" = AS ] && STAGE[$name]=$root
                workdir=/ user= entrypoint=
                ;;
        WORKDIR)
                workdir=$(abs "$rest")
                mkdir -p "$root$workdir"
                ;;
        COPY)
                read -r -a args <<<"$rest"
                from=
                if [[ ${args[0]} == --from=* ]]; then
                        from=${STAGE[${args[0]#--from=}]:-}
                        [ -n "$from" ] || abort "Dockerfile: COPY ${args[0]}" "no such stage"
                        args=("${args[@]:1}")
                fi
                dest=$(abs "${args[-1]}")
                for src in "${args[@]:0:${#args[@]}-1}"; do
                        if [ -n "$from" ]; then
                                mkdir -p "$(dirname "$root$dest")" && cp -a "$from$src" "$root$dest"
                        elif [ "$src" = . ]; then
                                mkdir -p "$root$dest" &&
                                        tar -C "$ROOT" "${ignore[@]}" -cf - . | tar -C "$root$dest" -xf -
                        else
                                mkdir -p "$root$dest" && cp -a "$ROOT/$src" "$root$dest/"
                        fi || abort "Dockerfile stage $nstage: COPY $rest" "copy failed"
                done
                ;;
        RUN)
                start=$SECONDS
                if in_root "$root" 1500 "cd $workdir; $rest" </dev/null >"$TMP/run.log" 2>&1; then
                        ok "Dockerfile stage $nstage: RUN $(tr -s " " <<<"$rest" | cut -c1-72)... ($((SECONDS - start)) s)"
                else
                        abort "Dockerfile stage $nstage: RUN $rest" "$(tail -n 12 "$TMP/run.log")"
                fi
                ;;
        USER) user=$rest ;;
        ENTRYPOINT) entrypoint=$rest ;;
        *) abort "Dockerfile: $op" "instruction not emulated by this test" ;;
        esac
done <<<"$instructions"
[ "$nstage" = 2 ] || abort "Dockerfile: two stages run" "$nstage"
{ [ -z "$user" ] || [ "$user" = 0 ] || [ "$user" = root ]; } &&
        ok "runtime stage runs as root (user ${user:-default})" || bad "runtime stage user" "$user"
[ "$entrypoint" = '["/usr/sbin/nlproxy"]' ] && ok "runtime stage ENTRYPOINT $entrypoint" || bad "ENTRYPOINT" "$entrypoint"
[ -x "$root/usr/sbin/nlproxy" ] && ok "runtime stage holds /usr/sbin/nlproxy, built in the build stage" ||
        bad "runtime stage holds /usr/sbin/nlproxy"
# Only what the runtime stage installed: no compiler, no headers.
if [ -e "$root/usr/bin/gcc" ] || [ -d "$root/usr/include/libnftnl" ]; then
        bad "runtime stage has no build tools or headers"
else
        ok "runtime stage has no build tools or headers"
fi
check_runs "runtime stage" "$root"
# This tree's own build (make all on the host) runs there too.
install -m 0755 "$BIN" "$root/usr/local/bin/nlproxy-host"
out=$(in_root "$root" 60 '/usr/local/bin/nlproxy-host --version' 2>&1) && [ "$out" = "nlproxy $VERSION" ] &&
        ok "runtime stage: $BIN from this tree runs there too" || bad "runtime stage: $BIN runs there" "$out"
rm -rf "$WORK"/stage*

# ---------------------------------------------------------------- 5. the .deb
R2=$WORK/deb
new_root "$R2" || abort "root for the .deb from $BASE_TAR" "extraction failed"
cp "$DEB" "$R2/tmp/"
start=$SECONDS
if in_root "$R2" 600 "$APT update && $APT install -y --no-install-recommends /tmp/$(basename "$DEB")" \
        >"$TMP/apt2.log" 2>&1; then
        ok ".deb: apt-get install ./$(basename "$DEB") in a fresh root, Depends resolved ($((SECONDS - start)) s)"
else
        abort ".deb: apt-get install in the chroot" "$(tail -n 8 "$TMP/apt2.log")"
fi
check_runs ".deb" "$R2"
st=$(in_root "$R2" 30 "dpkg-query -W -f '\${Status}' nlproxy" 2>&1)
[ "$st" = "install ok installed" ] && ok ".deb: dpkg says: $st" || bad ".deb: dpkg status" "$st"
[ -f "$R2/usr/share/man/man8/nlproxy.8.gz" ] && [ -f "$R2/lib/systemd/system/nlproxy.service" ] &&
        grep -q '^ExecStart=/usr/sbin/nlproxy ' "$R2/lib/systemd/system/nlproxy.service" &&
        ok ".deb: nlproxy(8) and the unit (ExecStart=/usr/sbin/nlproxy) installed" ||
        bad ".deb: man page and unit installed"
# Installed disabled: a service proxy must be configured before it starts.
if compgen -G "$R2/etc/systemd/system/*.wants/nlproxy.service" >/dev/null; then
        bad ".deb: the unit is not enabled on install" "$(ls "$R2"/etc/systemd/system/*.wants/)"
else
        ok ".deb: the unit is not enabled on install"
fi
rm -rf "$R2"

finish
