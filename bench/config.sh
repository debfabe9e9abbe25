#!/usr/bin/env bash
# Benchmark (run by hand): `berth config -q` on a generated 500-service project with anchors and
# three override files. Prints berth's median and, when installed, docker-compose's in the same
# run (Debian: apt-get install docker-compose), and their ratio. Target: berth under 50 ms.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-500}
runs=${RUNS:-15}
cargo build --release --locked -q
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 bench/gen_config.py "$n" "$dir" >/dev/null
files=(-p bench -f "$dir/compose.yaml" -f "$dir/override0.yaml" -f "$dir/override1.yaml" -f "$dir/override2.yaml")

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_runs() { # prints the median wall time in ms of "$@" over $runs runs
  for _ in $(seq "$runs"); do
    s=$(date +%s%N); "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; return 1; }; e=$(date +%s%N)
    echo $(((e - s) / 1000))
  done | median | awk '{printf "%.1f", $1/1000}'
}

berth_ms=$(time_runs ./target/release/berth "${files[@]}" config -q)
echo "berth config -q, $n services + 3 overrides: ${berth_ms} ms (median of $runs)"
if command -v docker-compose >/dev/null; then
  dc_ms=$(RUNS=3 time_runs docker-compose "${files[@]}" config -q) || dc_ms=
  if [ -n "$dc_ms" ]; then
    echo "docker-compose $(docker-compose version --short 2>/dev/null) config -q: ${dc_ms} ms"
    awk -v a="$dc_ms" -v b="$berth_ms" 'BEGIN {printf "ratio: berth is %.0fx faster\n", a/b}'
  fi
else
  echo "docker-compose not installed: no ratio (apt-get install docker-compose)"
fi
