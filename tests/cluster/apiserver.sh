# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# etcd and a real kube-apiserver on loopback, for tests. Sourced, not run:
#
#   . tests/cluster/apiserver.sh
#   cluster_prereqs || skip "$CLUSTER_MISSING"
#   trap 'cluster_teardown; rm -rf "$TMP"' EXIT
#   cluster_init "$TMP"       # binaries, certificates, kubeconfig of the admin
#   etcd_start; apiserver_start
#   kubectl_admin get services -A
#   apiserver_stop; etcd_stop
#   etcd_snapshot FILE; etcd_restore FILE; etcd_wipe  (etcd stopped; then etcd_start)
#
# The API server is v1.26 from ../shared/kubernetes (xz-compressed, checked
# against its SHA256SUMS, extracted once into build/kubernetes), or from
# KUBE_BIN_DIR: a folder of the same, or of plain binaries (an official
# release's kubernetes/server/bin plus e2e.test; checked against a
# SHA256SUMS there if there is one, used in place); etcd is
# Debian's etcd-server (3.4), etcdctl from etcd-client. Everything listens on
# 127.0.0.1 on ports the kernel hands out as free; the API server keeps its
# port across restarts (kubeconfigs name it). Authentication: client
# certificates (the admin is in system:masters) and service account tokens
# (TokenRequest; signing key made here); authorization: Node,RBAC.
#
# Processes are children of the caller's shell: cluster_teardown stops
# exactly what this file started, by PID, and must run on every exit path
# (an EXIT trap). Every wait is bounded. The caller owns the directory given
# to cluster_init and removes it.
#
# Variables: CLUSTER_DIR, CLUSTER_CA (the CA certificate), ADMIN_KUBECONFIG,
# APISERVER_URL, APISERVER_PORT, ETCD_URL, ETCD_DATA, ETCD_PID, APISERVER_PID,
# CLUSTER_MISSING (what cluster_prereqs found missing). Knobs, set before
# cluster_init: K8S_SHARED_DIR (KUBE_BIN_DIR, else ../shared/kubernetes), K8S_BIN_DIR
# (build/kubernetes), APISERVER_SERVICE_CIDR (10.96.0.0/16),
# APISERVER_ADVERTISE (127.0.0.1: the API server then cannot publish the
# kubernetes Service's endpoints, which it logs every 10 s; a test whose
# nodes reach it elsewhere sets their address), APISERVER_BIND (127.0.0.1:
# the address it listens on and clients name; tests/cluster/cluster.sh gives
# its bridge address, which its nodes reach), APISERVER_EXTRA_ARGS (an
# array), APISERVER_START_TIMEOUT (60 s).

_CLUSTER_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
K8S_SHARED_DIR=${K8S_SHARED_DIR:-${KUBE_BIN_DIR:-$_CLUSTER_ROOT/../shared/kubernetes}}
K8S_BIN_DIR=${K8S_BIN_DIR:-$_CLUSTER_ROOT/build/kubernetes}
APISERVER_SERVICE_CIDR=${APISERVER_SERVICE_CIDR:-10.96.0.0/16}
APISERVER_ADVERTISE=${APISERVER_ADVERTISE:-127.0.0.1}
APISERVER_BIND=${APISERVER_BIND:-127.0.0.1}
APISERVER_START_TIMEOUT=${APISERVER_START_TIMEOUT:-60}
[ -n "${APISERVER_EXTRA_ARGS+x}" ] || APISERVER_EXTRA_ARGS=()
CLUSTER_DIR=
CLUSTER_CA=
ADMIN_KUBECONFIG=
APISERVER_PORT=
APISERVER_URL=
APISERVER_PID=
ETCD_PORT=
ETCD_PEER_PORT=
ETCD_URL=
ETCD_DATA=
ETCD_PID=
CLUSTER_MISSING=
_CLUSTER_N=0
_APISERVER_STARTED=

_cluster_log() { echo "cluster: $*" >&2; }

# Whether everything needed is here; CLUSTER_MISSING says what is not.
cluster_prereqs() {
        local t miss=
        for t in etcd etcdctl openssl curl python3 xz sha256sum; do
                command -v "$t" >/dev/null || miss="$miss $t"
        done
        [ -r "$K8S_SHARED_DIR/SHA256SUMS" ] || [ -x "$K8S_SHARED_DIR/kube-apiserver" ] || miss="$miss $K8S_SHARED_DIR"
        CLUSTER_MISSING=${miss:+needs$miss (make deps installs etcd-server and etcd-client)}
        [ -z "$miss" ]
}

# cluster_bin NAME: the path of a Kubernetes binary, extracted on first use.
cluster_bin() {
        local name=$1 want out=$K8S_BIN_DIR/$1 tmp
        want=$(awk -v n="$name" '$2 == n {print $1}' "$K8S_SHARED_DIR/SHA256SUMS" 2>/dev/null)
        if [ ! -e "$K8S_SHARED_DIR/$name.xz" ] && [ -x "$K8S_SHARED_DIR/$name" ]; then
                # A plain binary (KUBE_BIN_DIR of a release): used where it is.
                if [ -n "$want" ] && [ "$(sha256sum "$K8S_SHARED_DIR/$name" | cut -d' ' -f1)" != "$want" ]; then
                        _cluster_log "$name: checksum mismatch"
                        return 1
                fi
                echo "$K8S_SHARED_DIR/$name"
                return 0
        fi
        [ -n "$want" ] || { _cluster_log "no $name in $K8S_SHARED_DIR/SHA256SUMS"; return 1; }
        # The checksum of the extracted file is kept beside it: checking it
        # costs nothing, checking the binary would cost a second per use.
        if [ -x "$out" ] && [ "$(cat "$out.sha256" 2>/dev/null)" = "$want" ]; then
                echo "$out"
                return 0
        fi
        mkdir -p "$K8S_BIN_DIR" || return 1
        tmp=$(mktemp "$K8S_BIN_DIR/.$name.XXXXXX") || return 1
        if ! xz -dc "$K8S_SHARED_DIR/$name.xz" >"$tmp" ||
                [ "$(sha256sum "$tmp" | cut -d' ' -f1)" != "$want" ]; then
                _cluster_log "$name: extraction failed or checksum mismatch"
                rm -f "$tmp"
                return 1
        fi
        chmod 0755 "$tmp" && mv -f "$tmp" "$out" && echo "$want" >"$out.sha256" && echo "$out"
}

# cluster_free_port [ADDRESS]: a TCP port that nothing listens on now, on
# ADDRESS (127.0.0.1).
cluster_free_port() {
        python3 -c 'import socket, sys
s = socket.socket()
s.bind((sys.argv[1], 0))
print(s.getsockname()[1])' "${1:-127.0.0.1}"
}

# The servers are disowned as soon as started: bash still reaps them, but
# does not print "Killed" for them when a test stops them.
_cluster_wait_gone() { # PID SECONDS: true once PID has exited
        local i
        for ((i = 0; i < $2 * 10; i++)); do
                kill -0 "$1" 2>/dev/null || return 0
                sleep 0.1
        done
        return 1
}

# _cluster_stop PID EXE GRACE: SIGTERM, then SIGKILL after GRACE seconds,
# while PID is still the program EXE that was started (a PID that exited on
# its own may since belong to someone else).
_cluster_stop() {
        [ -n "$1" ] || return 0
        local exe
        exe=$(readlink "/proc/$1/exe" 2>/dev/null)
        # " (deleted)": the binary was replaced (extracted again) meanwhile.
        [ "${exe% (deleted)}" = "$(readlink -f "$2")" ] || return 0
        set -- "$1" "$3"
        kill -TERM "$1" 2>/dev/null || return 0
        _cluster_wait_gone "$1" "$2" && return 0
        kill -KILL "$1" 2>/dev/null
        _cluster_wait_gone "$1" 10
}

# cluster_init DIR: binaries, certificates and the admin's kubeconfig in DIR.
cluster_init() {
        CLUSTER_DIR=$1
        mkdir -p "$CLUSTER_DIR/pki" "$CLUSTER_DIR/logs" || return 1
        K8S_APISERVER=$(cluster_bin kube-apiserver) || return 1
        K8S_KUBECTL=$(cluster_bin kubectl) || return 1
        CLUSTER_CA=$CLUSTER_DIR/pki/ca.crt
        # ECDSA P-256 throughout: as good here as RSA and much faster to make.
        (
                cd "$CLUSTER_DIR/pki" || exit 1
                ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
                # shellcheck disable=SC2086
                openssl req -x509 $ec -keyout ca.key -out ca.crt -days 2 -subj /CN=nlproxy-test-cluster-ca &&
                        openssl req $ec -keyout apiserver.key -out apiserver.csr -subj /CN=kube-apiserver &&
                        printf '%s\n' "subjectAltName=IP:127.0.0.1,IP:${APISERVER_SERVICE_CIDR%.*/*}.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:$APISERVER_ADVERTISE,IP:$APISERVER_BIND" \
                                'basicConstraints=CA:FALSE' 'extendedKeyUsage=serverAuth' >apiserver.ext &&
                        openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
                                -extfile apiserver.ext -out apiserver.crt &&
                        openssl req $ec -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=nlproxy-test-admin" &&
                        printf 'extendedKeyUsage=clientAuth\n' >client.ext &&
                        openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
                                -extfile client.ext -out admin.crt &&
                        openssl ecparam -name prime256v1 -genkey -noout -out sa.key &&
                        openssl ec -in sa.key -pubout -out sa.pub
        ) >"$CLUSTER_DIR/logs/openssl.log" 2>&1 || { _cluster_log "openssl: $(tail -3 "$CLUSTER_DIR/logs/openssl.log")"; return 1; }
        ADMIN_KUBECONFIG=$CLUSTER_DIR/admin.kubeconfig
        _apiserver_port || return 1
        ETCD_DATA=$CLUSTER_DIR/etcd.0
}

# A new port for the API server, and the admin's kubeconfig naming it
# (absolute paths: e2e.test does not resolve them against the file's folder).
_apiserver_port() {
        APISERVER_PORT=$(cluster_free_port "$APISERVER_BIND") || return 1
        APISERVER_URL=https://$APISERVER_BIND:$APISERVER_PORT
        cat >"$ADMIN_KUBECONFIG" <<EOF
apiVersion: v1
kind: Config
current-context: admin
contexts: [{name: admin, context: {cluster: test, user: admin}}]
clusters: [{name: test, cluster: {server: "$APISERVER_URL", certificate-authority: $CLUSTER_DIR/pki/ca.crt}}]
users: [{name: admin, user: {client-certificate: $CLUSTER_DIR/pki/admin.crt, client-key: $CLUSTER_DIR/pki/admin.key}}]
EOF
}

kubectl_admin() { "$K8S_KUBECTL" --kubeconfig "$ADMIN_KUBECONFIG" --request-timeout 20s "$@"; }

_etcdctl() { ETCDCTL_API=3 etcdctl --endpoints "$ETCD_URL" --dial-timeout 3s --command-timeout 20s "$@"; }

# etcd_start: etcd on ETCD_DATA (created when missing), healthy when it returns.
etcd_start() {
        local try i log
        for try in 1 2 3; do
                _CLUSTER_N=$((_CLUSTER_N + 1))
                log=$CLUSTER_DIR/logs/etcd.$_CLUSTER_N.log
                # The same ports at each start while they are free: the peer
                # URL is recorded in the data (and in a restore's).
                if [ -z "$ETCD_PORT" ] || [ "$try" != 1 ]; then
                        ETCD_PORT=$(cluster_free_port) && ETCD_PEER_PORT=$(cluster_free_port) || return 1
                        [ "$ETCD_PORT" != "$ETCD_PEER_PORT" ] || continue
                fi
                ETCD_URL=http://127.0.0.1:$ETCD_PORT
                etcd --name nlproxy-test --data-dir "$ETCD_DATA" \
                        --listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
                        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
                        --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
                        --initial-cluster "nlproxy-test=http://127.0.0.1:$ETCD_PEER_PORT" >"$log" 2>&1 &
                ETCD_PID=$!
                disown "$ETCD_PID"
                for ((i = 0; i < 150; i++)); do
                        if ! kill -0 "$ETCD_PID" 2>/dev/null; then
                                ETCD_PID=
                                break
                        fi
                        _etcdctl endpoint health >/dev/null 2>&1 && return 0
                        sleep 0.1
                done
                if [ -n "$ETCD_PID" ]; then
                        _cluster_log "etcd not healthy in 15 s: $(tail -3 "$log")"
                        etcd_stop
                        return 1
                fi
                # Another process took a port between the choice and the bind.
                grep -q "address already in use" "$log" || break
        done
        _cluster_log "etcd did not start: $(tail -3 "$log")"
        return 1
}

etcd_stop() {
        _cluster_stop "$ETCD_PID" "$(command -v etcd)" 10
        ETCD_PID=
}

# etcd_snapshot FILE: a backup of the running etcd.
etcd_snapshot() { _etcdctl snapshot save "$1" >>"$CLUSTER_DIR/logs/etcdctl.log" 2>&1; }

# etcd_restore FILE: etcd (stopped) gets a new data dir restored from FILE;
# its revision is the snapshot's, as etcdctl 3.4 restores.
etcd_restore() {
        [ -z "$ETCD_PID" ] || { _cluster_log "etcd_restore: etcd still runs"; return 1; }
        _CLUSTER_N=$((_CLUSTER_N + 1))
        ETCD_DATA=$CLUSTER_DIR/etcd.$_CLUSTER_N
        ETCD_PEER_PORT=${ETCD_PEER_PORT:-$(cluster_free_port)}
        ETCDCTL_API=3 etcdctl snapshot restore "$1" --data-dir "$ETCD_DATA" --name nlproxy-test \
                --initial-cluster "nlproxy-test=http://127.0.0.1:$ETCD_PEER_PORT" \
                --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" >>"$CLUSTER_DIR/logs/etcdctl.log" 2>&1
}

# etcd_wipe: etcd (stopped) starts next time from an empty data dir.
etcd_wipe() {
        [ -z "$ETCD_PID" ] || { _cluster_log "etcd_wipe: etcd still runs"; return 1; }
        rm -rf "$ETCD_DATA"
        _CLUSTER_N=$((_CLUSTER_N + 1))
        ETCD_DATA=$CLUSTER_DIR/etcd.$_CLUSTER_N
}

# The store's current revision (what a consistent LIST returns as its
# resourceVersion).
etcd_revision() {
        _etcdctl endpoint status -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["header"]["revision"])'
}

apiserver_ready() {
        [ "$(curl -s -m 2 --cacert "$CLUSTER_CA" --cert "$CLUSTER_DIR/pki/admin.crt" \
                --key "$CLUSTER_DIR/pki/admin.key" "$APISERVER_URL/readyz")" = ok ]
}

# apiserver_start: the API server on etcd, ready (/readyz) when it returns.
# Until it first started, a port another process took meanwhile is replaced
# (APISERVER_URL changes); later starts keep it, as clients' kubeconfigs name it.
apiserver_start() {
        local try rc
        for try in 1 2 3; do
                _apiserver_start_once
                rc=$?
                [ "$rc" = 2 ] && [ -z "$_APISERVER_STARTED" ] || break
                _apiserver_port || return 1
        done
        [ "$rc" = 0 ] && _APISERVER_STARTED=1
        [ "$rc" = 2 ] && _cluster_log "kube-apiserver: port $APISERVER_PORT is taken"
        [ "$rc" = 0 ]
}

_apiserver_start_once() {
        local i log pki=$CLUSTER_DIR/pki
        [ -n "$ETCD_URL" ] || { _cluster_log "apiserver_start: no etcd"; return 1; }
        _CLUSTER_N=$((_CLUSTER_N + 1))
        log=$CLUSTER_DIR/logs/kube-apiserver.$_CLUSTER_N.log
        "$K8S_APISERVER" --etcd-servers "$ETCD_URL" \
                --bind-address "$APISERVER_BIND" --secure-port "$APISERVER_PORT" --advertise-address "$APISERVER_ADVERTISE" \
                --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
                --client-ca-file "$pki/ca.crt" --authorization-mode Node,RBAC \
                --service-account-issuer https://kubernetes.default.svc.cluster.local \
                --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
                --service-cluster-ip-range "$APISERVER_SERVICE_CIDR" --profiling=false \
                "${APISERVER_EXTRA_ARGS[@]}" >"$log" 2>&1 &
        APISERVER_PID=$!
        disown "$APISERVER_PID"
        for ((i = 0; i < APISERVER_START_TIMEOUT * 4; i++)); do
                if ! kill -0 "$APISERVER_PID" 2>/dev/null; then
                        APISERVER_PID=
                        grep -q "address already in use" "$log" && return 2
                        _cluster_log "kube-apiserver exited: $(grep -v '^[IW]' "$log" | tail -3)"
                        return 1
                fi
                apiserver_ready && return 0
                sleep 0.25
        done
        _cluster_log "kube-apiserver not ready in $APISERVER_START_TIMEOUT s: $(tail -3 "$log")"
        apiserver_stop 0
        return 1
}

# apiserver_stop [GRACE]: SIGTERM, SIGKILL after GRACE seconds (10). A
# SIGTERMed API server drains its watches for up to 60 s before it exits.
apiserver_stop() {
        _cluster_stop "$APISERVER_PID" "$K8S_APISERVER" "${1:-10}"
        APISERVER_PID=
}

# Stops what this file started, by PID; for the caller's EXIT trap.
cluster_teardown() {
        apiserver_stop 5
        etcd_stop
}
