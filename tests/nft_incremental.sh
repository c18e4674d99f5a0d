#!/usr/bin/env bash
# Partial syncs against the dry-run, step by step (tests/nft_incremental.py).
set -euo pipefail
cd "$(dirname "$0")/.."
make -s build/tests/nlp_steps
exec python3 tests/nft_incremental.py
