#!/usr/bin/env bash
# Benchmark (run by hand, as root): pull and unpack a ~230 MB, ~6,000-file image (real files
# from this machine's /usr, five gzip layers) from a local docker-registry on 127.0.0.1.
# Compares, in the same run: berth pull (cold: fresh state root, page cache dropped), skopeo copy
# to an OCI dir followed by tar -xzf of its layers, and unpack alone (berth's unpacker vs tar -xzf
# of the same blobs). docker/podman pull are measured when their daemons/config are usable.
# Debian packages: docker-registry, skopeo (apt-get install -y docker-registry skopeo).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}
dirs=(/usr/share/locale /usr/share/perl /usr/share/i18n /usr/share/zoneinfo /usr/lib/git-core)
cargo build --release --locked -q
cargo build --release --locked -q -p berth-testkit --example bench_image
cargo build --release --locked -q -p berth-engine --example unpack
work=$(mktemp -d /var/tmp/berth-bench.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<YML
version: 0.1
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:$port}
log: {level: error}
YML
docker-registry serve "$work/registry.yml" >/dev/null 2>&1 &
reg=$!
cleanup() { kill "$reg" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
image="127.0.0.1:$port/bench/usr:v1"
./target/release/examples/bench_image "127.0.0.1:$port" bench/usr:v1 "${dirs[@]}"

cold() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; sleep 1; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }

berth_t=$(for i in $(seq "$runs"); do rm -rf "$work/root"; cold; secs ./target/release/berth --root "$work/root" image pull -q "$image"; done | median)
echo "berth pull:                    ${berth_t} s (median of $runs, cold)"

blobs=("$work"/root/content/blobs/sha256/*)
layer_blobs=()
for b in "${blobs[@]}"; do [ "$(stat -c %s "$b")" -gt 100000 ] && layer_blobs+=("$b"); done
tar_t=$(for i in $(seq "$runs"); do rm -rf "$work/x"; mkdir -p "$work/x"; cold
  s=$(date +%s.%N); for b in "${layer_blobs[@]}"; do tar -xzf "$b" -C "$work/x"; done; e=$(date +%s.%N); echo "$e - $s" | bc; done | median)
unpack_t=$(for i in $(seq "$runs"); do rm -rf "$work/u"; cold; ./target/release/examples/unpack "$work/u" "${layer_blobs[@]}"; done | median)
echo "unpack alone: berth ${unpack_t} s, tar -xzf ${tar_t} s (ratio $(echo "scale=2; $unpack_t / $tar_t" | bc))"

if command -v skopeo >/dev/null; then
  sk_t=$(for i in $(seq "$runs"); do rm -rf "$work/oci" "$work/x"; mkdir -p "$work/x"; cold
    s=$(date +%s.%N); skopeo copy -q --src-tls-verify=false "docker://$image" "oci:$work/oci" >/dev/null
    for b in $(python3 -c "import json,sys;m=json.load(open('$work/oci/index.json'));d=m['manifests'][0]['digest'].split(':')[1];mf=json.load(open('$work/oci/blobs/sha256/'+d));print(' '.join(l['digest'].split(':')[1] for l in mf['layers']))"); do
      tar -xzf "$work/oci/blobs/sha256/$b" -C "$work/x"; done
    e=$(date +%s.%N); echo "$e - $s" | bc; done | median)
  echo "skopeo copy + tar -xzf:        ${sk_t} s (ratio berth/skopeo+tar $(echo "scale=2; $berth_t / $sk_t" | bc))"
else
  echo "skopeo not installed: no skopeo+tar comparison (apt-get install skopeo)"
fi
if command -v podman >/dev/null; then
  p_t=$(for i in $(seq "$runs"); do podman rmi -af >/dev/null 2>&1 || true; cold; secs podman pull -q --tls-verify=false "$image"; done | median)
  podman rmi -af >/dev/null 2>&1 || true
  echo "podman pull:                   ${p_t} s (ratio berth/podman $(echo "scale=2; $berth_t / $p_t" | bc))"
else
  echo "podman pull: not measured (apt-get install podman)"
fi
if docker info >/dev/null 2>&1; then
  d_t=$(for i in $(seq "$runs"); do docker rmi -f "$image" >/dev/null 2>&1 || true; docker image prune -af >/dev/null 2>&1 || true; cold; secs docker pull -q "$image"; done | median)
  docker rmi -f "$image" >/dev/null 2>&1 || true
  echo "docker pull:                   ${d_t} s (ratio berth/docker $(echo "scale=2; $berth_t / $d_t" | bc))"
else
  echo "docker pull: not measured (no running dockerd: start one with \`dockerd &\`; it sets the iptables FORWARD policy to DROP, so stop it afterwards)"
fi
