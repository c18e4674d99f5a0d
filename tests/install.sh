#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `make install` with DESTDIR and PREFIX: the binary, nlproxy(8) and the
# systemd unit land where they should, with the right modes and the unit
# pointing at the installed binary; the man page documents every flag of
# `nlproxy --help` and formats without warnings; the unit passes
# systemd-analyze verify. Run from the project root after `make all`.
set -u
cd "$(dirname "$0")/.."
BIN=${NLPROXY:-build/nlproxy}
pass=0
failed=0
ok() { echo "ok   - $1"; pass=$((pass + 1)); }
bad() { echo "FAIL - $1${2:+: $2}"; failed=$((failed + 1)); }

tmp=$(mktemp -d /tmp/nlproxy-install.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT

if [ ! -x "$BIN" ]; then
        echo "FAIL - $BIN is not built (make all)"
        echo "0 passed, 1 failed"
        exit 1
fi

# mode_is FILE MODE
mode_is() { [ "$(stat -c %a "$1" 2>/dev/null)" = "$2" ]; }

# check_tree NAME DESTDIR SBIN MAN UNIT: the three files and nothing else.
check_tree() {
        local name=$1 d=$2 sbin=$3 man=$4 unit=$5 files want
        if [ -x "$d$sbin/nlproxy" ] && mode_is "$d$sbin/nlproxy" 755 &&
                "$d$sbin/nlproxy" --version | grep -q '^nlproxy '; then
                ok "$name: $sbin/nlproxy, mode 755, runs"
        else
                bad "$name: $sbin/nlproxy" "$(ls -l "$d$sbin" 2>&1)"
        fi
        if [ -f "$d$man/man8/nlproxy.8" ] && mode_is "$d$man/man8/nlproxy.8" 644 &&
                cmp -s docs/nlproxy.8 "$d$man/man8/nlproxy.8"; then
                ok "$name: $man/man8/nlproxy.8, mode 644"
        else
                bad "$name: $man/man8/nlproxy.8" "$(ls -l "$d$man/man8" 2>&1)"
        fi
        if [ -f "$d$unit/nlproxy.service" ] && mode_is "$d$unit/nlproxy.service" 644 &&
                grep -qx "ExecStart=$sbin/nlproxy --config /etc/nlproxy/config.conf \$NLPROXY_ARGS" \
                        "$d$unit/nlproxy.service"; then
                ok "$name: $unit/nlproxy.service, mode 644, ExecStart=$sbin/nlproxy"
        else
                bad "$name: $unit/nlproxy.service" "$(grep ExecStart "$d$unit/nlproxy.service" 2>&1)"
        fi
        files=$(cd "$d" && find . -type f | sed 's/^\.//' | sort)
        want=$(printf '%s\n' "$sbin/nlproxy" "$man/man8/nlproxy.8" "$unit/nlproxy.service" | sort)
        if [ "$files" = "$want" ]; then
                ok "$name: nothing else installed"
        else
                bad "$name: installed files" "$(echo $files)"
        fi
}

d1=$tmp/default
if make -s install DESTDIR="$d1" >"$tmp/log" 2>&1; then
        ok "make install DESTDIR=... (PREFIX=/usr/local by default)"
        check_tree "default prefix" "$d1" /usr/local/sbin /usr/local/share/man /usr/local/lib/systemd/system
else
        bad "make install DESTDIR=..." "$(tail -5 "$tmp/log")"
fi

d2=$tmp/usr
if make -s install DESTDIR="$d2" PREFIX=/usr SYSTEMDUNITDIR=/lib/systemd/system >"$tmp/log" 2>&1; then
        ok "make install DESTDIR=... PREFIX=/usr SYSTEMDUNITDIR=/lib/systemd/system"
        check_tree "PREFIX=/usr" "$d2" /usr/sbin /usr/share/man /lib/systemd/system
else
        bad "make install PREFIX=/usr" "$(tail -5 "$tmp/log")"
fi

# Every flag of --help has its entry in the man page's OPTIONS: the tag line
# after a .TP (roff source, dashes as \-).
flags=$("$BIN" --help | grep -E '^ +-' | grep -oE '(^| )--?[a-z][a-z-]*' | tr -d ' ' | sort -u)
tags=$(awk '/^\.SH / { opts = ($0 == ".SH OPTIONS") } opts && tag { print; tag = 0 } opts && /^\.TP/ { tag = 1 }' \
        docs/nlproxy.8)
missing=
for f in $flags; do
        grep -qE -- "(^|[^a-z\\-])$(sed 's/-/\\\\-/g' <<<"$f")([^a-z\\]|\\[^-]|$)" <<<"$tags" || missing="$missing $f"
done
if [ -z "$flags" ]; then
        bad "flags of --help found" "none parsed"
elif [ -z "$missing" ]; then
        ok "nlproxy.8 documents all $(wc -w <<<"$flags") flags of --help"
else
        bad "nlproxy.8 documents every flag of --help" "missing:$missing"
fi
warn=$(groff -t -man -ww -z docs/nlproxy.8 2>&1)
if [ $? = 0 ] && [ -z "$warn" ]; then ok "nlproxy.8 formats without groff warnings"
else bad "nlproxy.8 formats without groff warnings" "$warn"; fi

# systemd-analyze checks paths on this host: verify a copy whose ExecStart
# is the binary installed above.
if command -v systemd-analyze >/dev/null; then
        mkdir -p "$tmp/verify"
        sed "s|/usr/local/sbin/nlproxy|$d1/usr/local/sbin/nlproxy|" \
                "$d1/usr/local/lib/systemd/system/nlproxy.service" >"$tmp/verify/nlproxy.service"
        out=$(systemd-analyze verify --man=no "$tmp/verify/nlproxy.service" 2>&1)
        if [ $? = 0 ] && [ -z "$out" ]; then ok "systemd-analyze verify nlproxy.service: clean"
        else bad "systemd-analyze verify nlproxy.service" "$out"; fi
else
        echo "note - systemd-analyze is not installed: the unit's syntax is not verified here"
fi

echo "$pass passed, $failed failed"
[ "$failed" = 0 ]
