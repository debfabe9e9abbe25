#!/usr/bin/env bash
# Benchmark (run by hand, as root): what networking costs per container.
#
# 1. Endpoints alone (crates/net/examples/endpoint_bench.rs, N=100): in a throw-away netns, a
#    network store in a temp dir, one network; per container setup = reserve + plug (address,
#    record, veth into a fresh named netns, configured there) and teardown = release + netns
#    removal: median / p90 / min; then 50 endpoints joining one after another, and from 4
#    threads (3 rounds each, median).
# 2. End to end, every engine inside a throw-away network namespace of its own (`ip netns add`,
#    commands through `nsenter --net`), so its bridges, veths and firewall rules (berth's nft
#    table, docker's and netavark's iptables) live and die there, and no DNS query leaves it
#    (berth: <root>/daemon.json {"dns": ["127.0.0.1"]}; dockerd --dns 127.0.0.1; podman
#    dns_servers). Same busybox-static rootfs tar imported as bench/bb:1 everywhere.
#    - hyperfine (warmup 3, RUNS runs, default 20): `container run --rm --network none
#      bench/bb:1 true` vs `--network benchnet`; the difference is networking's cost per
#      container, setup + teardown, DNS registration included. For berth also with a
#      container left running on benchnet (its DNS daemon stays up between runs).
#    - 50 x `run -d --network benchnet bench/bb:1 sleep 600` one after another, then one
#      `rm -f` of all 50 (podman: `rm -f -t 0`, else it waits 10 s for SIGTERM): wall time.
#    - ratios peer/berth for each.
#    dockerd: own data root, exec root, pidfile and socket, started inside its netns (its
#    docker0 and iptables rules stay there), stopped at the end. podman: own --root,
#    --runroot, --tmpdir, a containers.conf (CONTAINERS_CONF: netavark with its own
#    network_config_dir, runc, cgroupfs, file events), run through nsenter into its netns.
#    At the end: no netns, link, nft table, mount or process of this script is left.
# Debian packages: hyperfine busybox-static docker.io podman (netavark, aardvark-dns).
#
# Measured 2026-11-23 on the shared 2-core dev VM (kernel 6.18, hybrid cgroups, ext4; another
# job was building/testing at the same time), RUNS=20:
#   endpoints alone (N=100)      median    p90     min
#     setup (reserve + plug)     3.92 ms   4.89    3.29   (reserve 1.85, plug 2.06): target <= 5 ms met
#     teardown (release + rm)   30.40 ms  42.53   11.28   (release 30.36: the kernel's veth delete,
#                                                         RCU grace periods; rm netns 0.04)
#     teardown, netns first     30.30 ms  43.81   14.29   (the veth is still there: no gain)
#     50 joining sequentially  199 ms (3.99 ms each); from 4 threads 134 ms (1.49x); leaving 1.7 s
#   end to end, mean of 20        berth        docker 20.10       podman 4.3 (netavark)
#     run --rm --network none     67.7 ms      320.7 ms (4.73x)   183.7 ms (2.71x)
#     run --rm --network benchnet 87.4 ms      404.3 ms (4.63x)   425.7 ms (4.87x)
#     networking cost             19.6 ms       83.6 ms (4.26x)   242.1 ms (12.35x)
#     50 x run -d on benchnet     3.87 s       18.17 s  (4.70x)   10.08 s  (2.61x)
#     rm -f of the 50             1.98 s        3.85 s  (1.95x)    3.11 s  (1.57x)
#   berth benchnet with a container keeping the DNS daemon up: 103.4 ms (not faster).
#   An earlier run on a busier machine: setup 5.37 ms median (p90 16.7), berth cost 19.4 ms,
#   docker 255.7, podman 286.5 ms; "DNS up" 287 ± 169 ms: the 50-container and keeper
#   numbers swing by 2x with the other job's load, the ratios of the same run are the signal.
#   Nothing left afterwards (netns, links, nft tables, mounts, processes).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
runs=${RUNS:-20}
n=${N:-50}
eps=${EPS:-100}
for t in hyperfine python3 nsenter ip nft; do
  command -v "$t" >/dev/null || { echo "$t not installed (apt-get install -y $t)" >&2; exit 1; }
done
[ -x /bin/busybox ] && file -L /bin/busybox | grep -q 'statically linked' ||
  { echo "needs Debian's busybox-static (apt-get install -y busybox-static)" >&2; exit 1; }
cargo build --release --locked -q
berth=$(realpath "${CARGO_TARGET_DIR:-target}/release/berth")

echo "== endpoints alone: setup / teardown per container, 50 joining (endpoint_bench $eps) =="
cargo run --release --locked -q -p berth-net --example endpoint_bench -- "$eps"

work=$(mktemp -d /var/tmp/berth-nbench.XXXXXX)
root=$work/berth
tag=nb$$
ns_b=$tag-berth ns_d=$tag-docker ns_p=$tag-podman
made_ns=()
dockerd_pid=
host_links=$(ip -o link show | awk -F': ' '{print $2}' | sort)
host_tables=$(nft list tables | sort)
run_netns_before=$(ls /run/netns 2>/dev/null | sort)

inb() { nsenter --net="/run/netns/$ns_b" "$@"; }
ind() { nsenter --net="/run/netns/$ns_d" "$@"; }
inp() { nsenter --net="/run/netns/$ns_p" "$@"; }
bt() { inb "$berth" --root "$root" "$@"; }
docker_cli=docker
[ -x /usr/bin/docker ] && docker_cli=/usr/bin/docker # Debian's CLI matches Debian's dockerd
dk_args=(-H "unix://$work/docker/docker.sock")
dk() { ind "$docker_cli" "${dk_args[@]}" "$@"; }
export CONTAINERS_CONF=$work/podman/containers.conf
pm_args=(--root "$work/podman/root" --runroot "$work/podman/run" --tmpdir "$work/podman/tmp"
  --storage-driver overlay)
pm() { inp podman "${pm_args[@]}" "$@"; }

mk_netns() {
  ip netns add "$1"
  made_ns+=("$1")
  ip -n "$1" link set lo up
}
# Pids of the processes living in named netns $1.
pids_in() {
  local ino p
  ino=$(stat -L -c %i "/run/netns/$1" 2>/dev/null) || return 0
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/net" 2>/dev/null)" = "net:[$ino]" ] && echo "${p#/proc/}"
  done
  return 0
}
stop_dockerd() {
  [ -n "$dockerd_pid" ] || return 0
  local ids
  ids=$(dk ps -aq 2>/dev/null) || true
  [ -z "$ids" ] || dk rm -f $ids >/dev/null 2>&1 || true
  kill "$dockerd_pid" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.2; done
  # Its containerd exits after it.
  for _ in $(seq 50); do [ -n "$(pids_in "$ns_d")" ] || break; sleep 0.2; done
  dockerd_pid=
}
cleanup() {
  set +e
  if [ -d "$root" ]; then
    ids=$(bt container ls -aq --no-trunc 2>/dev/null)
    [ -z "$ids" ] || bt container rm -f $ids >/dev/null 2>&1
    bt network rm benchnet >/dev/null 2>&1
  fi
  [ -f "$CONTAINERS_CONF" ] && { pm rm -af -t 0 >/dev/null 2>&1; pm network rm -f benchnet >/dev/null 2>&1; }
  stop_dockerd
  for ns in "${made_ns[@]}"; do
    for pid in $(pids_in "$ns"); do kill "$pid" 2>/dev/null; done
  done
  sleep 0.5
  for ns in "${made_ns[@]}"; do
    for pid in $(pids_in "$ns"); do echo "killing leftover $pid in $ns: $(tr '\0' ' ' <"/proc/$pid/cmdline")"; kill -9 "$pid"; done
    ip netns del "$ns"
  done
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
  rm -rf "$work"
}
trap cleanup EXIT

# ---- the busybox rootfs tar, as bench/container.sh makes it -----------------------------
mkdir -p "$work/rootfs/bin"
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$work/rootfs/bin/$a"; done
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .

peers=(berth)
# ---- berth --------------------------------------------------------------------------------
mk_netns "$ns_b"
"$berth" --root "$root" image import -c 'CMD ["sh"]' "$work/rootfs.tar" bench/bb:1 >/dev/null
echo '{"dns": ["127.0.0.1"]}' >"$root/daemon.json"
bt network create benchnet >/dev/null
# ---- docker -------------------------------------------------------------------------------
if command -v dockerd >/dev/null; then
  mk_netns "$ns_d"
  mkdir -p "$work/docker"
  # nsenter itself (not the ind function, which would fork a subshell) so that $! is dockerd.
  nsenter --net="/run/netns/$ns_d" dockerd --data-root "$work/docker/data" --exec-root "$work/docker/exec" \
    --pidfile "$work/docker/dockerd.pid" -H "unix://$work/docker/docker.sock" \
    --dns 127.0.0.1 >"$work/docker/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 150); do dk info >/dev/null 2>&1 && break; sleep 0.2; done
  if dk import -c 'CMD ["sh"]' "$work/rootfs.tar" bench/bb:1 >/dev/null 2>&1 &&
    dk network create benchnet >/dev/null; then
    peers+=(docker)
  else
    echo "dockerd did not come up (tail of its log):"; tail -3 "$work/docker/dockerd.log"
    stop_dockerd
  fi
else
  echo "docker not installed (apt-get install -y docker.io): not measured"
fi
# ---- podman -------------------------------------------------------------------------------
if command -v podman >/dev/null; then
  mk_netns "$ns_p"
  mkdir -p "$work/podman/networks"
  cat >"$CONTAINERS_CONF" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
dns_servers = ["127.0.0.1"]
[network]
network_backend = "netavark"
network_config_dir = "$work/podman/networks"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
  if pm import -q -c 'CMD ["sh"]' "$work/rootfs.tar" bench/bb:1 >/dev/null &&
    pm network create benchnet >/dev/null; then
    peers+=(podman)
  else
    echo "podman import / network create failed: podman not measured"
  fi
else
  echo "podman not installed (apt-get install -y podman): not measured"
fi

# ---- run --rm true, with and without the network ----------------------------------------
# engine_cmd ENGINE: the command line (for hyperfine) of ENGINE's CLI in its netns.
engine_cmd() {
  case $1 in
    berth) echo "nsenter --net=/run/netns/$ns_b $berth --root $root" ;;
    docker) echo "nsenter --net=/run/netns/$ns_d $docker_cli ${dk_args[*]}" ;;
    podman) echo "nsenter --net=/run/netns/$ns_p podman ${pm_args[*]}" ;;
  esac
}
echo "== run --rm bench/bb:1 true: $runs runs after 3 warm-ups (hyperfine) =="
cmds=()
for e in "${peers[@]}"; do
  c=$(engine_cmd "$e")
  cmds+=(-n "$e none" "$c container run --rm --network none bench/bb:1 true"
         -n "$e benchnet" "$c container run --rm --network benchnet bench/bb:1 true")
done
hyperfine -N --style basic --warmup 3 --runs "$runs" --export-json "$work/run.json" "${cmds[@]}" \
  >"$work/hyperfine.txt" 2>&1 || { cat "$work/hyperfine.txt"; exit 1; }
# berth with its DNS daemon kept up by a container on the network.
bt container run -d --name keeper --network benchnet bench/bb:1 sleep 600 >/dev/null
hyperfine -N --style basic --warmup 3 --runs "$runs" --export-json "$work/warm.json" \
  -n "berth benchnet, DNS up" "$(engine_cmd berth) container run --rm --network benchnet bench/bb:1 true" \
  >"$work/hyperfine-warm.txt" 2>&1 || { cat "$work/hyperfine-warm.txt"; exit 1; }
bt container rm -f keeper >/dev/null

# ---- 50 run -d, then rm -f of all 50 ------------------------------------------------------
echo "== $n x run -d --network benchnet sleep 600, then one rm -f of all $n =="
: >"$work/many.txt"
for e in "${peers[@]}"; do
  read -ra c <<<"$(engine_cmd "$e")"
  ids=()
  s=$(date +%s%N)
  for _ in $(seq "$n"); do
    ids+=("$("${c[@]}" container run -d --network benchnet bench/bb:1 sleep 600)")
  done
  m=$(date +%s%N)
  # podman's rm -f waits out the stop timeout (sleep ignores SIGTERM as pid 1); -t 0 kills
  # at once, as docker's and berth's rm -f do.
  t0=(); [ "$e" = podman ] && t0=(-t 0)
  "${c[@]}" container rm -f "${t0[@]}" "${ids[@]}" >/dev/null
  f=$(date +%s%N)
  echo "$e $(((m - s) / 1000)) $(((f - m) / 1000))" >>"$work/many.txt"
  left=$("${c[@]}" container ls -aq)
  [ -z "$left" ] || { echo "  LEFT: $e containers after rm -f: $left"; }
done

python3 - "$work/run.json" "$work/warm.json" "$work/many.txt" "$n" <<'PY'
import json, sys
r = {x["command"]: x for f in sys.argv[1:3] for x in json.load(open(f))["results"]}
for name, x in r.items():
    print(f"  {name:<24} {x['mean']*1000:7.1f} ms ± {x['stddev']*1000:5.1f} ms"
          f"   (median {x['median']*1000:.1f}, min {x['min']*1000:.1f})")
engines = [e for e in ("berth", "docker", "podman") if f"{e} none" in r]
cost = {e: r[f"{e} benchnet"]["mean"] - r[f"{e} none"]["mean"] for e in engines}
for e in engines:
    print(f"  {e} networking per container (benchnet - none): {cost[e]*1000:6.1f} ms")
print("  berth benchnet with DNS daemon up - none: "
      f"{(r['berth benchnet, DNS up']['mean'] - r['berth none']['mean'])*1000:6.1f} ms")
many = {}
for line in open(sys.argv[3]):
    e, a, b = line.split()
    many[e] = (int(a) / 1e6, int(b) / 1e6)
n = int(sys.argv[4])
for e, (a, b) in many.items():
    print(f"  {e:<7} {n} x run -d: {a:6.2f} s ({a / n * 1000:5.0f} ms each)   rm -f of {n}: {b:6.2f} s")
print("== ratios peer/berth ==")
for e in engines[1:]:
    print(f"  {e}/berth: run --rm none {r[e + ' none']['mean'] / r['berth none']['mean']:.2f}, "
          f"benchnet {r[e + ' benchnet']['mean'] / r['berth benchnet']['mean']:.2f}, "
          f"networking cost {cost[e] / cost['berth']:.2f}, "
          f"{n} x run -d {many[e][0] / many['berth'][0]:.2f}, rm -f {many[e][1] / many['berth'][1]:.2f}")
PY

# ---- everything goes, and nothing is left -------------------------------------------------
bt network rm benchnet >/dev/null
[ ! -f "$CONTAINERS_CONF" ] || pm network rm benchnet >/dev/null
stop_dockerd
sleep 1 # the DNS daemon exits once the last endpoint is gone
echo "== leftovers =="
left=0
for ns in "${made_ns[@]}"; do
  for p in $(pids_in "$ns"); do
    echo "  LEFT: process $p in $ns: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)"; left=1
  done
done
l=$(ip -n "$ns_b" -o link show | awk -F': ' '{print $2}' | tr '\n' ' ')
[ "$l" = "lo " ] || { echo "  LEFT: links in berth's netns: $l"; left=1; }
inb nft list tables | grep -q berth && { echo "  LEFT: berth's nft table"; left=1; }
trap - EXIT
cleanup
for ns in "${made_ns[@]}"; do
  [ ! -e "/run/netns/$ns" ] || { echo "  LEFT: netns $ns"; left=1; }
done
new_ns=$(comm -13 <(echo "$run_netns_before") <(ls /run/netns 2>/dev/null | sort) | grep '^netns-' || true)
[ -z "$new_ns" ] || { echo "  LEFT (podman's?): /run/netns/$new_ns"; left=1; }
grep -q " $work" /proc/self/mountinfo && { echo "  LEFT: mounts under $work"; left=1; }
[ "$(ip -o link show | awk -F': ' '{print $2}' | sort)" = "$host_links" ] ||
  { echo "  host links changed (another job?)"; left=1; }
[ "$(nft list tables | sort)" = "$host_tables" ] || { echo "  host nft tables changed"; left=1; }
[ "$left" = 1 ] || echo "  none: netns, links, nft tables, mounts, processes all gone"
