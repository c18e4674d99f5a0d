#!/usr/bin/env bash
# UDP conntrack cleanup, restarts and session affinity with live traffic
# (tests/nft_live.py).
set -euo pipefail
cd "$(dirname "$0")/.."
make -s build/tests/nlp_steps
exec timeout 600 python3 tests/nft_live.py
