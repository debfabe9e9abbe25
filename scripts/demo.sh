#!/usr/bin/env bash
# The main job on an example: build berth, make the example's image offline (busybox-static
# imported), and show how berth reads the project and what it stores. Running the containers
# (`berth up`) comes with the runtime and orchestrator issues.
# State goes to a throw-away --root, so the demo leaves nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked -q
berth=${CARGO_TARGET_DIR:-$PWD/target}/release/berth
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
export BERTH_ROOT=$root
examples/web/make-image.sh "$berth"
"$berth" image ls
"$berth" --project-directory examples/web config
"$berth" --project-directory examples/web config --services
