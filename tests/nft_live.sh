#!/usr/bin/env bash
# UDP conntrack cleanup and restarts with live traffic (tests/nft_live.py).
set -euo pipefail
cd "$(dirname "$0")/.."
exec timeout 300 python3 tests/nft_live.py
