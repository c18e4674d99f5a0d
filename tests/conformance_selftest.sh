#!/usr/bin/env bash
# The conformance runner's own logic, without namespaces or root
# (tests/conformance/test_run.py): its verdicts on synthetic probe outcomes,
# per-flow session affinity (the service a destination belongs to), legacy
# address parsing checked against nlproxy's, the deadline plan and the
# probes' resends on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/nlproxy ] || { echo "conformance_selftest: build/nlproxy missing (make all)"; exit 1; }
exec python3 -B tests/conformance/test_run.py
