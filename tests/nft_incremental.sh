#!/usr/bin/env bash
# Partial syncs against the dry-run, step by step (tests/nft_incremental.py).
set -euo pipefail
cd "$(dirname "$0")/.."
make -s build/tests/nlp_steps
python3 tests/nft_incremental.py
# The same with the service dispatch in shard tables: partial syncs then
# touch only the shards of the services that changed.
python3 tests/nft_incremental.py --shards 4
# And the IPVS backend's companion ruleset, which goes through the same
# partial syncs (its IPVS part needs an IPVS kernel: tests/ipvs_vm.sh).
exec python3 tests/nft_incremental.py --companion
