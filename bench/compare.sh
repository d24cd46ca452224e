#!/usr/bin/env bash
# Builds nnc in release mode and runs it against the peer frameworks (see compare.py).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
exec python3 bench/compare.py "$@"
