#!/usr/bin/env bash
# The main job on an example: build berth, make the example's image offline (busybox-static
# imported), bring the three-service project of examples/web up (network, volumes, health-gated
# start, published port), fetch its page from the host, show ps and logs, then take it all
# down. State goes to a throw-away --root, so the demo leaves nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked -q
berth=${CARGO_TARGET_DIR:-$PWD/target}/release/berth
root=$(mktemp -d)
export BERTH_ROOT=$root
project=(--project-directory examples/web)
cleanup() {
  "$berth" "${project[@]}" down -v -t 1 >/dev/null 2>&1 || true
  # berth keeps runtime state on a tmpfs at <root>/run (as /run): it goes with the root.
  umount -l "$root/run" 2>/dev/null || true
  rm -rf "$root"
}
trap cleanup EXIT
examples/web/make-image.sh "$berth"
"$berth" "${project[@]}" config --services
"$berth" "${project[@]}" up -d
for _ in $(seq 50); do curl -fsS http://127.0.0.1:8080/ >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS http://127.0.0.1:8080/ | head -5
"$berth" "${project[@]}" ps
"$berth" "${project[@]}" logs --tail 3 app
"$berth" "${project[@]}" down -v -t 1
"$berth" "${project[@]}" ps -a
