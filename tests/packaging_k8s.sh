#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# packaging/kubernetes: parses every YAML with Debian's python3-yaml and checks
# the objects and that nlproxy accepts the ConfigMap's config file
# (tests/packaging_k8s.py). Run from the project root after `make all`.
set -u
cd "$(dirname "$0")/.."
# Debian's interpreter first: python3-yaml is installed for it (make deps).
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
if ! "$PY" -c 'import yaml' 2>/dev/null; then
        echo "FAIL - $PY cannot import yaml: install python3-yaml (make deps)"
        echo "0 passed, 1 failed"
        exit 1
fi
exec "$PY" tests/packaging_k8s.py "${NLPROXY:-build/nlproxy}"
