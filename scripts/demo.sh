#!/usr/bin/env bash
# The main job on an example: build berth, make the example's image offline (busybox-static
# imported), show how berth reads the project, and run the example's web content in a real
# container (volume, bind mount, logs, exec). `berth up` comes with the orchestrator issue.
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
# A container from the example's image: the web root bind-mounted read-only, a named volume,
# a detached container, its logs and an exec into it; then everything removed.
"$berth" container run --rm -v "$PWD/examples/web/web:/www:ro" berth-example/busybox:latest \
  sh -c 'echo "container $(hostname) sees:"; ls /www'
"$berth" container run -d --name demo-app --init -v demo-data:/data berth-example/busybox:latest \
  sh -c 'for i in 1 2 3; do date >> /data/visits; echo "visit $i"; sleep 0.2; done; sleep 30'
sleep 1
"$berth" container ls
"$berth" container logs demo-app
"$berth" container exec demo-app wc -l /data/visits
"$berth" container rm -f demo-app
"$berth" volume rm demo-data
