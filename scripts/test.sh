#!/usr/bin/env bash
# The test command (README, CI): set up, then every test of the workspace.
# Unit tests need no root; end-to-end tests in tests/ run the real binary, as root where they must
# (when not root they print that they were skipped; with CI=true they must run).
# Doc tests first (nextest does not run them), then everything else with cargo-nextest, whose
# closing summary counts every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --locked --doc
cargo nextest run --workspace --locked --no-fail-fast
