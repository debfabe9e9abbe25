#!/usr/bin/env bash
# The main job on an example: build berth and show the project it reads from examples/web.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked -q
./target/release/berth --project-directory examples/web config
./target/release/berth --project-directory examples/web config --services
