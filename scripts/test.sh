#!/usr/bin/env bash
# The test command (README, CI): set up, then every test of the workspace.
# Unit tests need no root; end-to-end tests in tests/ run the real binary, as root where they must
# (when not root they print that they were skipped; with CI=true they must run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --locked --all-targets
