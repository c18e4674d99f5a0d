# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# The real cluster's container images, built here without a registry and
# imported into containerd. Sourced, not run:
#
#   . tests/cluster/images.sh
#   images_prereqs || skip "$IMAGES_MISSING"
#   images_build                          # every image of IMAGES_WANT (or: images_build pause agnhost)
#   images_import "$SOCKET"               # all of them into that containerd, namespace k8s.io
#   ... the DaemonSet overlay's image: "$IMAGE_NLPROXY"
#   images_nlproxy_tag "$SOCKET" TAG      # the same image under nlproxy:TAG (IMAGE_NLPROXY_ALT)
#
# Images (tests/cluster/README.md says what each holds), by short name:
#   pause                  registry.k8s.io/pause:3.9 (tests/cluster/pause.c, static, from scratch)
#   agnhost                registry.k8s.io/e2e-test-images/agnhost:2.43
#   busybox                registry.k8s.io/e2e-test-images/busybox:1.29-4
#   regression-issue-74839 registry.k8s.io/e2e-test-images/regression-issue-74839:1.2
#   distroless-iptables    registry.k8s.io/build-image/distroless-iptables:v0.1.2
#   nginx                  registry.k8s.io/e2e-test-images/nginx:1.14-4 (not in IMAGES_WANT by default)
#   nlproxy                nlproxy:VERSION-TREEHASH, packaging/docker/Dockerfile as it is
# Each is built by buildah (`buildah bud --pull=never --isolation=chroot`:
# RUN steps use the host's network for apt-get against the Debian mirror and
# never touch the host's firewall) from tests/cluster/images/SHORT.Dockerfile,
# or packaging/docker/Dockerfile for nlproxy, and written as a docker-archive
# that carries the image's name (what `ctr images import` names it). The
# images FROM debian:bookworm-slim use one local base of that name: a
# `debootstrap --variant=minbase bookworm` root (the tarball tests/packaging.sh
# makes and keeps too) with the official slim image's dpkg and apt settings,
# committed with buildah.
#
# Cache (IMAGES_CACHE, build/cluster/images): archives/SHORT-KEY.tar, where
# KEY hashes everything the image is made of (this file, its Dockerfile, the
# files it copies, the base, and for nlproxy the source tree as a fresh
# checkout holds it): a rerun with nothing changed builds nothing and costs a
# few seconds (hashing the tree). buildah's own storage (storage/, layer cache
# kept: a source change rebuilds only nlproxy's last steps) and the last
# build's logs (logs/SHORT.log) are there too. Every mount buildah makes lives
# in a private mount namespace that ends with the build, with its run root on
# a tmpfs there: nothing stays mounted on the host, even after a kill.
# Concurrent builds on one cache wait for each other (flock). `rm -rf
# build/cluster/images` starts over.
#
# Functions: images_prereqs, images_build [SHORT...], images_import ADDRESS
# [SHORT...], images_nlproxy_tag ADDRESS TAG, images_ref NAME (the name
# containerd stores for NAME). They return non-zero with one line on stderr
# saying why.
#
# Variables: IMAGE_PAUSE, IMAGE_AGNHOST, IMAGE_BUSYBOX, IMAGE_REGRESSION,
# IMAGE_DISTROLESS_IPTABLES, IMAGE_NGINX (the names, set when sourced);
# IMAGE_NLPROXY (nlproxy:VERSION-TREEHASH: a changed tree gives a new tag;
# set by images_build, or by images_nlproxy_name alone); IMAGE_NLPROXY_ALT (set
# by images_nlproxy_tag); IMAGES_ARCHIVE (associative: short name -> archive,
# set by images_build); IMAGES_BUILT (the short names built, in import order:
# pause first); IMAGES_MISSING (what images_prereqs found missing).
#
# Knobs: IMAGES_WANT (the short names images_build builds without arguments;
# default all but nginx), IMAGES_CACHE, IMAGES_MINBASE_TAR (the debootstrap
# root, shared with tests/packaging.sh: build/packaging/bookworm-minbase.tar),
# IMAGES_DEBIAN_MIRROR (default NLPROXY_DEBIAN_MIRROR, else the bookworm
# mirror of this machine's apt sources), IMAGES_NLPROXY_TAG (instead of the
# derived tag), IMAGES_CTR (an array: the ctr command, e.g. prefixed by
# nsenter for a containerd whose socket lives in another mount namespace;
# default (ctr)), IMAGES_SNAPSHOTTER (ctr import's --snapshotter; default
# containerd's), IMAGES_BUILD_TIMEOUT (per buildah build, 1500 s),
# K8S_SHARED_DIR and K8S_BIN_DIR (as tests/cluster/apiserver.sh: agnhost and
# regression-issue-74839 come from there, extracted once and checked against
# SHA256SUMS).

_IMAGES_LIB=$(readlink -f "${BASH_SOURCE[0]}")
_IMAGES_ROOT=$(cd "$(dirname "$_IMAGES_LIB")/../.." && pwd)
IMAGES_CACHE=${IMAGES_CACHE:-$_IMAGES_ROOT/build/cluster/images}
IMAGES_MINBASE_TAR=${IMAGES_MINBASE_TAR:-$_IMAGES_ROOT/build/packaging/bookworm-minbase.tar}
IMAGES_DEBIAN_MIRROR=${IMAGES_DEBIAN_MIRROR:-${NLPROXY_DEBIAN_MIRROR:-}}
IMAGES_WANT=${IMAGES_WANT:-pause agnhost busybox regression-issue-74839 distroless-iptables nlproxy}
IMAGES_NLPROXY_TAG=${IMAGES_NLPROXY_TAG:-}
IMAGES_SNAPSHOTTER=${IMAGES_SNAPSHOTTER:-}
IMAGES_BUILD_TIMEOUT=${IMAGES_BUILD_TIMEOUT:-1500}
[ -n "${IMAGES_CTR+x}" ] || IMAGES_CTR=(ctr)
K8S_SHARED_DIR=${K8S_SHARED_DIR:-${KUBE_BIN_DIR:-$_IMAGES_ROOT/../shared/kubernetes}}
K8S_BIN_DIR=${K8S_BIN_DIR:-$_IMAGES_ROOT/build/kubernetes}

IMAGE_PAUSE=registry.k8s.io/pause:3.9
IMAGE_AGNHOST=registry.k8s.io/e2e-test-images/agnhost:2.43
IMAGE_BUSYBOX=registry.k8s.io/e2e-test-images/busybox:1.29-4
IMAGE_REGRESSION=registry.k8s.io/e2e-test-images/regression-issue-74839:1.2
IMAGE_DISTROLESS_IPTABLES=registry.k8s.io/build-image/distroless-iptables:v0.1.2
IMAGE_NGINX=registry.k8s.io/e2e-test-images/nginx:1.14-4
IMAGE_NLPROXY=
IMAGE_NLPROXY_ALT=
declare -gA IMAGES_ARCHIVE=()
IMAGES_BUILT=()
IMAGES_MISSING=
# The order of import: the sandbox image first.
_IMAGES_ALL="pause agnhost busybox regression-issue-74839 distroless-iptables nginx nlproxy"
# The base every Debian image starts FROM (the nlproxy Dockerfile's spelling).
_IMAGES_BASE=docker.io/library/debian:bookworm-slim
_IMAGES_NLPROXY_HASH=

_images_log() { echo "images: $*" >&2; }

# images_name SHORT: the image's name.
images_name() {
        case $1 in
        pause) echo "$IMAGE_PAUSE" ;;
        agnhost) echo "$IMAGE_AGNHOST" ;;
        busybox) echo "$IMAGE_BUSYBOX" ;;
        regression-issue-74839) echo "$IMAGE_REGRESSION" ;;
        distroless-iptables) echo "$IMAGE_DISTROLESS_IPTABLES" ;;
        nginx) echo "$IMAGE_NGINX" ;;
        nlproxy) echo "$IMAGE_NLPROXY" ;;
        *) _images_log "no image called $1 (one of: $_IMAGES_ALL)"; return 1 ;;
        esac
}

# images_ref NAME: the reference containerd (ctr, the CRI) stores for NAME:
# a name without a registry is Docker Hub's, in library/ when it has no path.
images_ref() {
        local n=$1 first=${1%%/*}
        if [ "$first" = "$n" ]; then
                n=docker.io/library/$n
        elif [[ $first != *.* && $first != *:* && $first != localhost ]]; then
                n=docker.io/$n
        fi
        echo "$n"
}

# Whether everything needed is here; IMAGES_MISSING says what is not.
images_prereqs() {
        local t miss=
        for t in buildah debootstrap ctr unshare flock xz sha256sum tar make gcc git; do
                command -v "$t" >/dev/null || miss="$miss $t"
        done
        [ -x /bin/busybox ] || miss="$miss /bin/busybox"
        # gcc -static needs libc6-dev's libc.a (the name alone when it has none).
        gcc -print-file-name=libc.a 2>/dev/null | grep / >/dev/null || miss="$miss libc.a"
        [ -r "$K8S_SHARED_DIR/SHA256SUMS" ] || miss="$miss $K8S_SHARED_DIR"
        [ "$(id -u)" = 0 ] || miss="$miss root"
        IMAGES_MISSING=${miss:+needs$miss (make deps installs buildah, debootstrap, containerd, busybox-static, libc6-dev)}
        [ -z "$miss" ]
}

_images_sha() { sha256sum | cut -d' ' -f1; }

# The bookworm mirror of this machine's apt sources (deb822 .sources or
# one-line sources.list), as tests/packaging.sh finds it.
_images_mirror() {
        [ -n "$IMAGES_DEBIAN_MIRROR" ] && { echo "$IMAGES_DEBIAN_MIRROR"; return 0; }
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

# The debootstrap root as a tarball (tests/packaging.sh makes the same file).
_images_minbase() {
        local mirror tmp start=$SECONDS
        [ -s "$IMAGES_MINBASE_TAR" ] && return 0
        mirror=$(_images_mirror)
        [ -n "$mirror" ] || { _images_log "no bookworm mirror in /etc/apt/sources.list(.d); set IMAGES_DEBIAN_MIRROR"; return 1; }
        mkdir -p "$(dirname "$IMAGES_MINBASE_TAR")" "$IMAGES_CACHE/logs" || return 1
        tmp=$(mktemp -d "$IMAGES_CACHE/tmp.debootstrap.XXXXXX") || return 1
        _images_log "debootstrap --variant=minbase bookworm from $mirror (once; kept in $IMAGES_MINBASE_TAR)"
        if timeout 900 debootstrap --variant=minbase bookworm "$tmp/root" "$mirror" >"$IMAGES_CACHE/logs/debootstrap.log" 2>&1 &&
                tar -C "$tmp/root" -cf "$IMAGES_MINBASE_TAR.$$" . && mv -f "$IMAGES_MINBASE_TAR.$$" "$IMAGES_MINBASE_TAR"; then
                rm -rf "$tmp"
                _images_log "debootstrap: $((SECONDS - start)) s"
                return 0
        fi
        _images_log "debootstrap failed: $(tail -n 3 "$IMAGES_CACHE/logs/debootstrap.log" | tr '\n' ' ')"
        rm -rf "$tmp" "$IMAGES_MINBASE_TAR.$$"
        return 1
}

# _images_k8s_bin NAME: a binary of K8S_SHARED_DIR, extracted into K8S_BIN_DIR
# and checked against SHA256SUMS (the layout of apiserver.sh's cluster_bin).
_images_k8s_bin() {
        local name=$1 want out=$K8S_BIN_DIR/$1 tmp
        want=$(awk -v n="$name" '$2 == n {print $1}' "$K8S_SHARED_DIR/SHA256SUMS")
        [ -n "$want" ] || { _images_log "no $name in $K8S_SHARED_DIR/SHA256SUMS"; return 1; }
        if [ -x "$out" ] && [ "$(cat "$out.sha256" 2>/dev/null)" = "$want" ]; then
                echo "$out"
                return 0
        fi
        mkdir -p "$K8S_BIN_DIR" || return 1
        tmp=$(mktemp "$K8S_BIN_DIR/.$name.XXXXXX") || return 1
        if ! xz -dc "$K8S_SHARED_DIR/$name.xz" >"$tmp" || [ "$(_images_sha <"$tmp")" != "$want" ]; then
                _images_log "$name: extraction failed or checksum mismatch"
                rm -f "$tmp"
                return 1
        fi
        chmod 0755 "$tmp" && mv -f "$tmp" "$out" && echo "$want" >"$out.sha256" && echo "$out"
}

# The files of the nlproxy image's build context, NUL-separated, relative to
# the root: what a fresh checkout holds (tracked and untracked files that git
# does not ignore), less the Dockerfile's .dockerignore.
_images_tree_files() {
        local ign=() p f
        while read -r p; do
                [ -n "$p" ] && ign+=("${p%/}")
        done < <(sed -e 's/#.*//' -e 's/[[:space:]]*$//' "$_IMAGES_ROOT/packaging/docker/Dockerfile.dockerignore" 2>/dev/null)
        (
                cd "$_IMAGES_ROOT" || exit 1
                if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
                        git ls-files -z -co --exclude-standard
                else
                        find . -mindepth 1 \( -name .git -o -path ./build \) -prune -o ! -type d -printf '%P\0'
                fi
        ) | while IFS= read -r -d '' f; do
                # Deleted but still tracked files are not in the tree.
                [ -e "$_IMAGES_ROOT/$f" ] || [ -L "$_IMAGES_ROOT/$f" ] || continue
                for p in "${ign[@]}"; do
                        [ "$f" = "$p" ] || [ "${f#"$p"/}" != "$f" ] && continue 2
                done
                printf '%s\0' "$f"
        done | sort -z
}

# The context as a tar stream that depends only on names, contents and modes.
_images_tree_tar() {
        _images_tree_files | tar -C "$_IMAGES_ROOT" --null --no-recursion -T - -cf - \
                --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner
}

# images_nlproxy_name: IMAGE_NLPROXY from VERSION and the tree's hash.
images_nlproxy_name() {
        local v
        v=$(cat "$_IMAGES_ROOT/VERSION") || return 1
        _IMAGES_NLPROXY_HASH=$(_images_tree_tar | _images_sha) || return 1
        IMAGE_NLPROXY=nlproxy:${IMAGES_NLPROXY_TAG:-$v-${_IMAGES_NLPROXY_HASH:0:12}}
}

# _images_inputs SHORT: a line per input of the image (besides the base and
# this file), for its cache key.
_images_inputs() {
        local s=$1 df=$_IMAGES_ROOT/tests/cluster/images/$1.Dockerfile
        case $s in
        nlproxy) echo "tree $_IMAGES_NLPROXY_HASH $IMAGE_NLPROXY" ;;
        *) echo "dockerfile $(_images_sha <"$df")" ;;
        esac
        case $s in
        pause) echo "pause $(_images_sha <"$_IMAGES_ROOT/build/cluster/pause")" ;;
        agnhost)
                echo "agnhost $(awk '$2 == "agnhost" {print $1}' "$K8S_SHARED_DIR/SHA256SUMS")"
                cat "$K8S_SHARED_DIR/agnhost-image/localhost.crt" "$K8S_SHARED_DIR/agnhost-image/localhost.key" | _images_sha
                ;;
        regression-issue-74839) awk '$2 == "regression-issue-74839" {print $1}' "$K8S_SHARED_DIR/SHA256SUMS" ;;
        busybox) echo "busybox $(_images_sha </bin/busybox)" ;;
        esac
}

_images_from_base() { [ "$1" = nlproxy ] || grep -q "^FROM $_IMAGES_BASE\$" "$_IMAGES_ROOT/tests/cluster/images/$1.Dockerfile"; }

# images_build [SHORT...]: the archives of the named images (IMAGES_WANT
# without names), from the cache when their inputs have not changed; sets
# IMAGES_ARCHIVE, IMAGES_BUILT and IMAGE_NLPROXY.
images_build() {
        local want=("$@") s lockfd rc=0 order=() start=$SECONDS
        [ ${#want[@]} -gt 0 ] || read -r -a want <<<"$IMAGES_WANT"
        for s in $_IMAGES_ALL; do # import order, each once
                [[ " ${want[*]} " == *" $s "* ]] && order+=("$s")
        done
        for s in "${want[@]}"; do
                images_name "$s" >/dev/null || return 1
        done
        images_prereqs || { _images_log "$IMAGES_MISSING"; return 1; }
        mkdir -p "$IMAGES_CACHE/archives" "$IMAGES_CACHE/logs" || return 1
        exec {lockfd}>"$IMAGES_CACHE/.lock" || return 1
        if ! flock -w 3600 "$lockfd"; then
                _images_log "another build holds $IMAGES_CACHE/.lock for an hour"
                exec {lockfd}>&-
                return 1
        fi
        _images_build_locked "${order[@]}" || rc=1
        exec {lockfd}>&-
        [ "$rc" = 0 ] && _images_log "images ready in $((SECONDS - start)) s: ${IMAGES_BUILT[*]}"
        return "$rc"
}

_images_build_locked() {
        local s key lib base_key todo=() d tmp
        # What a killed build left: never a tree with something mounted in it.
        for d in "$IMAGES_CACHE"/tmp.*; do
                [ -e "$d" ] || continue
                # grep reads to the end: under a caller's pipefail, an early
                # exit (-q) would fail findmnt with SIGPIPE and hide a mount.
                if findmnt -rn -o TARGET | grep -F "$d" >/dev/null; then
                        _images_log "$d still has mounts; leaving it"
                else
                        rm -rf "$d"
                fi
        done
        [[ " $* " == *" pause "* ]] && { make -C "$_IMAGES_ROOT" -s build/cluster/pause >"$IMAGES_CACHE/logs/pause-make.log" 2>&1 ||
                { _images_log "make build/cluster/pause: $(tail -n 3 "$IMAGES_CACHE/logs/pause-make.log" | tr '\n' ' ')"; return 1; }; }
        if [[ " $* " == *" nlproxy "* ]]; then
                images_nlproxy_name || { _images_log "cannot name the nlproxy image (VERSION, the tree)"; return 1; }
        fi
        lib=$(_images_sha <"$_IMAGES_LIB")
        base_key=
        for s in "$@"; do
                if _images_from_base "$s"; then
                        _images_minbase || return 1
                        # The base's own recipe only: an edit elsewhere in this
                        # file keeps it, and buildah's layer cache then makes
                        # the rebuild of every image a matter of seconds.
                        base_key=$({ declare -f _images_slimify _images_ns_base; stat -c '%s %Y' "$IMAGES_MINBASE_TAR"; } | _images_sha)
                        break
                fi
        done
        IMAGES_BUILT=()
        for s in "$@"; do
                key=$({ echo "$lib"; _images_from_base "$s" && echo "base $base_key"; _images_inputs "$s"; } | _images_sha)
                IMAGES_ARCHIVE[$s]=$IMAGES_CACHE/archives/$s-${key:0:16}.tar
                [ -s "${IMAGES_ARCHIVE[$s]}" ] || todo+=("$s")
        done
        if [ ${#todo[@]} -gt 0 ]; then
                tmp=$(mktemp -d "$IMAGES_CACHE/tmp.build.XXXXXX") || return 1
                declare -p IMAGES_CACHE IMAGES_MINBASE_TAR IMAGES_BUILD_TIMEOUT K8S_SHARED_DIR K8S_BIN_DIR \
                        IMAGE_NLPROXY IMAGES_ARCHIVE base_key >"$tmp/env" 2>/dev/null
                # One private mount namespace for every buildah step: whatever
                # it mounts (overlay layers, the working containers, the run
                # root's tmpfs) ends with it, however the build ends.
                unshare --mount --propagation private -- bash -c '. "$1"; . "$2/env"; shift 2; _images_ns_build "$@"' \
                        images "$_IMAGES_LIB" "$tmp" "$tmp" "${todo[@]}"
                rm -rf "$tmp"
        fi
        for s in "$@"; do
                [ -s "${IMAGES_ARCHIVE[$s]}" ] || { _images_log "$s: not built (see $IMAGES_CACHE/logs/$s.log)"; return 1; }
                IMAGES_BUILT+=("$s")
        done
}

# ---- inside the build's mount namespace ----

_images_buildah() {
        BUILDAH_ISOLATION=chroot buildah --root "$IMAGES_CACHE/storage" --runroot "$_IMAGES_RUNROOT" \
                --storage-driver overlay "$@"
}

# _images_ns_build TMP SHORT...: builds the base when needed, then each image.
_images_ns_build() {
        local tmp=$1 s rc=0
        shift
        _IMAGES_RUNROOT=$tmp/runroot
        mkdir -p "$_IMAGES_RUNROOT" && mount -t tmpfs -o mode=0700 tmpfs "$_IMAGES_RUNROOT" || return 1
        # Working containers a killed build left in the storage.
        _images_buildah rm --all >/dev/null 2>&1
        for s in "$@"; do
                if _images_from_base "$s"; then
                        _images_ns_base "$tmp" || return 1
                        break
                fi
        done
        for s in "$@"; do
                _images_ns_image "$tmp" "$s" || rc=1
        done
        return "$rc"
}

# The official slim image's settings (debuerreotype's): dpkg leaves out docs
# (but copyrights), man pages, info and locales; apt keeps no package cache
# and downloads no translations. The files they name are removed as well.
_images_slimify() {
        local r=$1
        mkdir -p "$r/etc/dpkg/dpkg.cfg.d" "$r/etc/apt/apt.conf.d" || return 1
        cat >"$r/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
EOF
        echo force-unsafe-io >"$r/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
        cat >"$r/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
        echo 'Acquire::GzipIndexes "true";' >"$r/etc/apt/apt.conf.d/docker-gzip-indexes"
        echo 'Acquire::Languages "none";' >"$r/etc/apt/apt.conf.d/docker-no-languages"
        echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$r/etc/apt/apt.conf.d/docker-autoremove-suggests"
        # No daemon starts in an image build (a package's postinst asks).
        printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d" && chmod 0755 "$r/usr/sbin/policy-rc.d"
        rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin "$r"/var/cache/apt/archives/*.deb \
                "$r"/var/cache/apt/archives/partial/* "$r"/var/log/*.log "$r"/var/log/apt/* \
                "$r"/usr/share/man/* "$r"/usr/share/groff/* "$r"/usr/share/info/* "$r"/usr/share/lintian/* \
                "$r"/usr/share/linda/*
        find "$r/usr/share/doc" -mindepth 1 ! -type d ! -path '*/copyright' -delete
        find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete
        find "$r/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
        # The runtime provides these; the build host's must not stay in.
        rm -f "$r/etc/resolv.conf"
        echo localhost >"$r/etc/hostname"
}

# The base image, unless the storage has it from the same minbase and recipe.
_images_ns_base() {
        local tmp=$1 c m log=$IMAGES_CACHE/logs/base.log start=$SECONDS
        if _images_buildah inspect --type image "$_IMAGES_BASE" >/dev/null 2>&1 &&
                [ "$(cat "$IMAGES_CACHE/storage.base-key" 2>/dev/null)" = "$base_key" ]; then
                return 0
        fi
        {
                c=$(_images_buildah from --pull=never scratch) &&
                        m=$(_images_buildah mount "$c") &&
                        tar -C "$m" -xpf "$IMAGES_MINBASE_TAR" &&
                        _images_slimify "$m" &&
                        _images_buildah umount "$c" &&
                        _images_buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
                                --cmd '["bash"]' --os linux --arch amd64 "$c" &&
                        _images_buildah commit --rm "$c" "$_IMAGES_BASE"
        } >"$log" 2>&1 || { _images_log "base $_IMAGES_BASE: $(tail -n 3 "$log" | tr '\n' ' ')"; return 1; }
        echo "$base_key" >"$IMAGES_CACHE/storage.base-key"
        _images_log "base $_IMAGES_BASE: $((SECONDS - start)) s"
}

# _images_ns_image TMP SHORT: its context, buildah bud, the archive.
_images_ns_image() {
        local tmp=$1 s=$2 ctx=$1/ctx.$2 df name log=$IMAGES_CACHE/logs/$2.log archive=${IMAGES_ARCHIVE[$2]} f start=$SECONDS
        name=$(images_name "$s") || return 1
        mkdir -p "$ctx" || return 1
        df=$_IMAGES_ROOT/tests/cluster/images/$s.Dockerfile
        {
                case $s in
                pause) cp "$_IMAGES_ROOT/build/cluster/pause" "$ctx/" ;;
                agnhost)
                        f=$(_images_k8s_bin agnhost) && cp "$f" "$ctx/agnhost" &&
                                cp "$K8S_SHARED_DIR/agnhost-image/localhost.crt" "$K8S_SHARED_DIR/agnhost-image/localhost.key" "$ctx/" &&
                                chmod 0644 "$ctx/localhost.crt" "$ctx/localhost.key"
                        ;;
                regression-issue-74839) f=$(_images_k8s_bin regression-issue-74839) && cp "$f" "$ctx/" ;;
                busybox)
                        ! readelf -l /bin/busybox | grep INTERP >/dev/null || { echo "/bin/busybox is not static"; false; } &&
                                cp /bin/busybox "$ctx/"
                        ;;
                nlproxy)
                        df=$ctx/packaging/docker/Dockerfile
                        _images_tree_tar | tar -C "$ctx" -xf -
                        ;;
                esac
        } >"$log" 2>&1 || { _images_log "$s: context: $(tail -n 3 "$log" | tr '\n' ' ')"; return 1; }
        echo "# buildah bud $name ($df)" >>"$log"
        if ! timeout "$IMAGES_BUILD_TIMEOUT" nice buildah --root "$IMAGES_CACHE/storage" --runroot "$_IMAGES_RUNROOT" \
                --storage-driver overlay bud --pull=never --isolation=chroot --layers \
                -f "$df" -t "$name" "$ctx" </dev/null >>"$log" 2>&1; then
                _images_log "$s: buildah bud failed: $(tail -n 5 "$log" | tr '\n' ' ')"
                return 1
        fi
        rm -f "$archive.tmp"
        if ! timeout 600 buildah --root "$IMAGES_CACHE/storage" --runroot "$_IMAGES_RUNROOT" --storage-driver overlay \
                push "$name" "docker-archive:$archive.tmp:$name" >>"$log" 2>&1; then
                _images_log "$s: buildah push: $(tail -n 3 "$log" | tr '\n' ' ')"
                rm -f "$archive.tmp"
                return 1
        fi
        mv -f "$archive.tmp" "$archive" || return 1
        # Older archives of this image: only the current one is kept.
        for f in "$IMAGES_CACHE/archives/$s"-*.tar; do
                [ "$f" = "$archive" ] || rm -f "$f"
        done
        rm -rf "$ctx"
        _images_log "$s: $name built in $((SECONDS - start)) s ($(du -m "$archive" | cut -f1) MB)"
}

# ---- containerd ----

# images_import ADDRESS [SHORT...]: the archives images_build made (all of
# IMAGES_BUILT without names) into the containerd at ADDRESS, namespace k8s.io,
# unpacked for its snapshotter (IMAGES_SNAPSHOTTER); each name is checked there.
images_import() {
        local addr=$1 s name list snap=() log=$IMAGES_CACHE/logs/import.log
        shift
        local which=("$@")
        [ ${#which[@]} -gt 0 ] || which=("${IMAGES_BUILT[@]}")
        [ ${#which[@]} -gt 0 ] || { _images_log "images_import: nothing built (images_build first)"; return 1; }
        [ -n "$IMAGES_SNAPSHOTTER" ] && snap=(--snapshotter "$IMAGES_SNAPSHOTTER")
        : >"$log"
        for s in "${which[@]}"; do
                name=$(images_name "$s") || return 1
                [ -s "${IMAGES_ARCHIVE[$s]:-}" ] || { _images_log "images_import: $s not built"; return 1; }
                if ! timeout 300 "${IMAGES_CTR[@]}" --address "$addr" -n k8s.io images import "${snap[@]}" \
                        "${IMAGES_ARCHIVE[$s]}" >>"$log" 2>&1; then
                        _images_log "import of $name into $addr: $(tail -n 3 "$log" | tr '\n' ' ')"
                        return 1
                fi
        done
        list=$(timeout 60 "${IMAGES_CTR[@]}" --address "$addr" -n k8s.io images ls -q 2>>"$log") || {
                _images_log "ctr images ls at $addr: $(tail -n 2 "$log" | tr '\n' ' ')"
                return 1
        }
        for s in "${which[@]}"; do
                name=$(images_ref "$(images_name "$s")")
                grep -qxF "$name" <<<"$list" || { _images_log "$name not in $addr after the import"; return 1; }
        done
}

# images_nlproxy_tag ADDRESS TAG: IMAGE_NLPROXY (imported there) also as
# nlproxy:TAG, IMAGE_NLPROXY_ALT: a new image name for the DaemonSet (a
# rolling update) that costs nothing to build. Once per containerd.
images_nlproxy_tag() {
        local addr=$1 tag=$2 log=$IMAGES_CACHE/logs/import.log
        [ -n "$IMAGE_NLPROXY" ] || { _images_log "images_nlproxy_tag: no IMAGE_NLPROXY (images_build first)"; return 1; }
        IMAGE_NLPROXY_ALT=${IMAGE_NLPROXY%%:*}:$tag
        timeout 60 "${IMAGES_CTR[@]}" --address "$addr" -n k8s.io images tag --force \
                "$(images_ref "$IMAGE_NLPROXY")" "$(images_ref "$IMAGE_NLPROXY_ALT")" >>"$log" 2>&1 ||
                { _images_log "ctr images tag $IMAGE_NLPROXY_ALT at $addr: $(tail -n 2 "$log" | tr '\n' ' ')"; return 1; }
}
