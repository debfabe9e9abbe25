#!/usr/bin/env bash
# Benchmark (run by hand, as root): container start/stop latency, shim memory, and a profile.
#
# 1. `berth container run --rm bb:1 true` against `runc run` and `crun run` on the same busybox
#    bundle (rootfs = Debian's busybox-static with its applets as symlinks; config.json from
#    `runc spec`, made non-terminal, args ["true"]), and against `docker run --rm` and
#    `podman run --rm` of the same rootfs tar (`docker import` / `podman import`, no internet).
#    The peers run with `--network none`: berth's default is a fresh netns with only `lo`, the
#    same thing (docker's bridge would add a veth pair and iptables work berth does not do).
#    hyperfine, warmup 3, RUNS runs (default 30): mean ± σ and the ratios.
# 2. PSS: 50 `berth container run -d bb:1 sleep 1000`, sum of Pss (smaps_rollup) of every
#    `berth __shim` process of this root, per container; the same for podman's conmon and
#    docker's containerd-shim-runc-v2 (50 `run -d` each). Everything is removed and checked.
# 3. Where `run --rm true` spends its time: strace of milestone syscalls only (--seccomp-bpf,
#    so untraced syscalls run at full speed), phases by bench/container/profile.py.
#
# Peers are isolated from anything else on the machine: dockerd gets its own data/exec root
# and socket, --iptables=false --ip-forward=false --bridge=none (so it never touches the
# firewall), is stopped at the end, and the FORWARD policy / DOCKER chains / docker0 are checked
# and put back anyway; podman gets its own --root/--runroot/--tmpdir and a containers.conf via
# CONTAINERS_CONF (runtime runc, cgroupfs, default_ulimits this sandbox can grant).
# Debian packages: hyperfine runc crun docker.io podman busybox-static strace.
#
# Measured 2026-11-23 on the shared 2-core dev VM (kernel 6.18, hybrid cgroups v1+v2, ext4),
# RUNS=20/30. First session of this script (before the shim work):
#   berth 104.3 ± 8.8 ms, runc 52.0 ± 5.1 ms (berth/runc 2.01), docker 588.9, podman 428.3;
#   berth shim PSS 8.57 MiB per idle container.
# After (non-PIE binary, lazy mimalloc arena, hand-over to __monitor, lazy registry client,
# no fsync for regenerated files), two runs of this script, the second on a busier machine:
#   run --rm true      run A              run B
#   berth              85.7 ±  9.5 ms     98.3 ± 23.6 ms
#   runc (runc spec)   45.3 ±  4.5 ms     51.2 ±  8.9 ms   berth/runc 1.89 / 1.92
#   runc (berth spec)  69.9 ±  6.5 ms     61.9 ±  9.5 ms   berth/runc-berth-spec 1.23 / 1.59
#   docker 20.10      430.6 ± 23.7 ms    391.2 ± 73.8 ms   docker/berth 5.02 / 3.98
#   podman 4.3        248.5 ± 17.5 ms    301.6 ± 25.7 ms   podman/berth 2.90 / 3.07
#   crun 1.8.1        refused: "cgroups in hybrid mode not supported": no ratio
#   ("runc spec" has no seccomp filter; berth's own bundle has Docker's, ~15 ms per start.)
#   PSS per idle container (50 x sleep 1000): berth __shim/__monitor 0.467-0.469 MiB,
#   docker containerd-shim-runc-v2 2.63 MiB, podman conmon 0.36 MiB. 50 x berth run -d:
#   3.4-5.7 s. Nothing left after rm -f.
#   Profile (straced, median of 7): runtime create 68 ms (of it pivot_root -> seccomp loaded
#   15.6), cli record -> spawn 13 ms, shim exec -> overlay 12 ms, exit -> umount 9.5 ms,
#   11 fsyncs.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
runs=${RUNS:-30}
n=${N:-50}
for t in hyperfine runc strace python3; do
  command -v "$t" >/dev/null || { echo "$t not installed (apt-get install -y $t)" >&2; exit 1; }
done
[ -x /bin/busybox ] && file -L /bin/busybox | grep -q 'statically linked' ||
  { echo "needs Debian's busybox-static (apt-get install -y busybox-static)" >&2; exit 1; }
cargo build --release --locked -q
berth=$(realpath "${CARGO_TARGET_DIR:-target}/release/berth")

work=$(mktemp -d /var/tmp/berth-cbench.XXXXXX)
root=$work/berth
ids=()           # every berth container id this script made (for the leftover check)
dockerd_pid=
forward_policy=$(iptables -S FORWARD 2>/dev/null | awk '$1 == "-P" {print $3}') || true
had_docker0=$(ip link show docker0 >/dev/null 2>&1 && echo yes || echo no)

docker_cli=docker
[ -x /usr/bin/docker ] && docker_cli=/usr/bin/docker # Debian's CLI matches Debian's dockerd
dk() { "$docker_cli" -H "unix://$work/docker/docker.sock" "$@"; }
export CONTAINERS_CONF=$work/podman/containers.conf
pm() { podman --root "$work/podman/root" --runroot "$work/podman/run" --tmpdir "$work/podman/tmp" \
  --storage-driver overlay "$@"; }

stop_dockerd() {
  [ -n "$dockerd_pid" ] || return 0
  dk ps -aq 2>/dev/null | xargs -r "$docker_cli" -H "unix://$work/docker/docker.sock" rm -f >/dev/null 2>&1 || true
  kill "$dockerd_pid" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.2; done
  dockerd_pid=
  # dockerd was told to leave the firewall alone; make sure it did.
  if [ -n "$forward_policy" ] && [ "$(iptables -S FORWARD | awk '$1 == "-P" {print $3}')" != "$forward_policy" ]; then
    iptables -P FORWARD "$forward_policy"
  fi
  for c in DOCKER-USER DOCKER-ISOLATION-STAGE-1 DOCKER-ISOLATION-STAGE-2 DOCKER; do
    for t in filter nat; do
      if iptables -t "$t" -S "$c" >/dev/null 2>&1; then
        iptables -t "$t" -S | grep -E -- "-j $c( |$)" | sed 's/^-A/-D/' |
          while read -r rule; do eval "iptables -t $t $rule"; done
        iptables -t "$t" -F "$c"; iptables -t "$t" -X "$c"
      fi
    done
  done
  [ "$had_docker0" = no ] && ip link show docker0 >/dev/null 2>&1 && ip link delete docker0
  return 0
}
berth_rm_all() {
  local l
  l=$("$berth" --root "$root" container ls -aq --no-trunc 2>/dev/null) || true
  [ -z "$l" ] || "$berth" --root "$root" container rm -f $l >/dev/null 2>&1 || true
}
cleanup() {
  set +e
  berth_rm_all
  [ -d "$work/podman" ] && command -v podman >/dev/null && pm rm -af -t 0 >/dev/null 2>&1
  stop_dockerd
  runc --root "$work/runc" delete -f bench >/dev/null 2>&1
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
  rm -rf "$work"
}
trap cleanup EXIT

# ---- the busybox rootfs, its tar, the OCI bundle, and the images -------------------------
mkdir -p "$work/rootfs/bin" "$work/bundle"
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$work/rootfs/bin/$a"; done
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
cp -a "$work/rootfs" "$work/bundle/rootfs"
(cd "$work/bundle" && runc spec)
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["process"]["terminal"] = False
c["process"]["args"] = ["true"]
json.dump(c, open(sys.argv[1], "w"), indent=1)
PY
"$berth" --root "$root" image import -c 'CMD ["sh"]' "$work/rootfs.tar" bb:1 >/dev/null

# The same container as berth makes it, for runc: berth's own generated bundle (Docker's
# capabilities, seccomp profile, masked paths, mounts, device rules) over the same rootfs dir.
# `runc spec`'s bundle has no seccomp filter, which alone costs ~15 ms per start here.
"$berth" --root "$root" container run -d --name specsrc bb:1 sleep 60 >/dev/null
sid=$("$berth" --root "$root" container inspect specsrc | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Id"])')
mkdir -p "$work/bundle-berth"
cp "$root/containers/$sid/bundle/config.json" "$root/containers/$sid/"{hostname,hosts,resolv.conf} "$work/bundle-berth/"
"$berth" --root "$root" container rm -f specsrc >/dev/null
python3 - "$work/bundle-berth" "$work/bundle/rootfs" "$root" <<'PY'
import json, sys
bundle, rootfs, root = sys.argv[1:4]
c = json.load(open(bundle + "/config.json"))
c["root"]["path"] = rootfs
c["process"]["args"] = ["true"]
c["linux"]["cgroupsPath"] = "/berth-bench/runc"
for m in c["mounts"]:
    if m.get("source", "").startswith(root):
        m["source"] = bundle + "/" + m["source"].rsplit("/", 1)[1]
json.dump(c, open(bundle + "/config.json", "w"), indent=1)
PY

echo "== run --rm true: $runs runs after 3 warm-ups (hyperfine) =="
cmds=(-n berth "$berth --root $root container run --rm bb:1 true"
      -n runc "runc --root $work/runc run -b $work/bundle bench"
      -n runc-berth-spec "runc --root $work/runc run -b $work/bundle-berth bench")
if command -v crun >/dev/null; then
  if out=$(crun --root "$work/crun" run -b "$work/bundle" bench 2>&1); then
    cmds+=(-n crun "crun --root $work/crun run -b $work/bundle bench")
  else
    echo "crun $(crun --version | awk 'NR==1 {print $3}') refuses this host: $out"
  fi
else
  echo "crun not installed (apt-get install -y crun)"
fi
if command -v dockerd >/dev/null; then
  mkdir -p "$work/docker"
  dockerd --data-root "$work/docker/data" --exec-root "$work/docker/exec" \
    --pidfile "$work/docker/dockerd.pid" -H "unix://$work/docker/docker.sock" \
    --iptables=false --ip-forward=false --bridge=none >"$work/docker/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 150); do dk info >/dev/null 2>&1 && break; sleep 0.2; done
  if dk import -c 'CMD ["sh"]' "$work/rootfs.tar" bb:1 >/dev/null 2>&1; then
    cmds+=(-n docker "$docker_cli -H unix://$work/docker/docker.sock run --rm --network none bb:1 true")
  else
    echo "dockerd did not come up (log: tail of $work/docker/dockerd.log):"; tail -3 "$work/docker/dockerd.log"
    stop_dockerd
  fi
else
  echo "docker not installed (apt-get install -y docker.io)"
fi
if command -v podman >/dev/null; then
  mkdir -p "$work/podman"
  cat >"$CONTAINERS_CONF" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
  if pm import -q -c 'CMD ["sh"]' "$work/rootfs.tar" bb:1 >/dev/null 2>&1; then
    cmds+=(-n podman "podman --root $work/podman/root --runroot $work/podman/run --tmpdir $work/podman/tmp --storage-driver overlay run --rm --network none bb:1 true")
  else
    echo "podman import failed: podman not measured"
  fi
else
  echo "podman not installed (apt-get install -y podman)"
fi
hyperfine -N --style basic --warmup 3 --runs "$runs" --export-json "$work/run.json" "${cmds[@]}" >"$work/hyperfine.txt" 2>&1 ||
  { cat "$work/hyperfine.txt"; exit 1; }
python3 - "$work/run.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
for name, x in r.items():
    print(f"  {name:<16} {x['mean']*1000:7.1f} ms ± {x['stddev']*1000:5.1f} ms"
          f"   (median {x['median']*1000:.1f}, min {x['min']*1000:.1f}, max {x['max']*1000:.1f})")
b = r["berth"]["mean"]
for label, a, c in (("berth/runc", "berth", "runc"), ("berth/runc-berth-spec", "berth", "runc-berth-spec"),
                    ("berth/crun", "berth", "crun"),
                    ("docker/berth", "docker", "berth"), ("podman/berth", "podman", "berth")):
    if a in r and c in r:
        print(f"  {label:<13} {r[a]['mean'] / r[c]['mean']:.2f}")
PY

echo "== PSS of $n idle containers' monitors (sum of smaps_rollup Pss / $n) =="
# pss_of PATTERN...: sum of Pss (kB) of processes whose NUL-separated cmdline matches every
# PATTERN (fixed strings); prints "<count> <kB>".
pss_of() {
  python3 - "$@" <<'PY'
import os, sys
pats = [p.encode() for p in sys.argv[1:]]
count = total = 0
me = str(os.getpid())
for pid in filter(str.isdigit, os.listdir("/proc")):
    if pid == me:
        continue
    try:
        args = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        if not all(any(p == a or p in a for a in args) for p in pats):
            continue
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                total += int(line.split()[1]); count += 1
    except OSError:
        pass
print(count, total)
PY
}
report_pss() { # NAME COUNT KB
  awk -v name="$1" -v c="$2" -v kb="$3" -v n="$n" 'BEGIN {
    printf "  %-34s %3d processes, %7.2f MiB total, %.3f MiB per container\n", name, c, kb/1024, kb/1024/n }'
}
s=$(date +%s%N)
for i in $(seq "$n"); do
  ids+=("$("$berth" --root "$root" container run -d bb:1 sleep 1000)")
done
e=$(date +%s%N)
echo "  berth: $n x run -d took $(((e - s) / 1000000)) ms"
sleep 1
# After 500 ms each shim has handed over to its `__monitor` image; count both stages.
read -r c1 kb1 < <(pss_of "$berth" __shim "$root")
read -r c2 kb2 < <(pss_of "$berth" __monitor "$root")
report_pss "berth __shim + __monitor" "$((c1 + c2))" "$((kb1 + kb2))"
berth_kb=$((kb1 + kb2))
read -r c kb < <(pss_of sleep 1000); echo "  (the $c sleep processes themselves: $((kb / 1024)) MiB Pss, not counted)"
berth_rm_all
if [ -n "$dockerd_pid" ]; then
  for i in $(seq "$n"); do dk run -d --network none bb:1 sleep 1000 >/dev/null; done
  sleep 1
  read -r c kb < <(pss_of containerd-shim-runc-v2 "$work/docker")
  report_pss "docker containerd-shim-runc-v2" "$c" "$kb"
  awk -v a="$kb" -v b="$berth_kb" 'BEGIN { if (b > 0) printf "  containerd-shim/berth-shim: %.2f\n", a/b }'
  dk rm -f $(dk ps -aq) >/dev/null
fi
stop_dockerd
if [ -f "$CONTAINERS_CONF" ]; then
  for i in $(seq "$n"); do pm run -d --network none bb:1 sleep 1000 >/dev/null; done
  sleep 1
  read -r c kb < <(pss_of conmon "$work/podman")
  report_pss "podman conmon" "$c" "$kb"
  awk -v a="$kb" -v b="$berth_kb" 'BEGIN { if (b > 0) printf "  conmon/berth-shim: %.2f\n", a/b }'
  pm rm -af -t 0 >/dev/null
fi

echo "== leftovers after rm -f =="
left=0
# ($root/run is berth's runtime tmpfs: it stays, as /run does.)
if grep " $work/berth" /proc/self/mountinfo | grep -vq " $root/run "; then echo "  LEFT: mounts under $root"; left=1; fi
for id in "${ids[@]}"; do
  for d in /sys/fs/cgroup/*/berth/"$id" /sys/fs/cgroup/berth/"$id"; do
    [ -e "$d" ] && { echo "  LEFT: cgroup $d"; left=1; }
  done
done
read -r c _ < <(pss_of "$root")
[ "$c" = 0 ] || { echo "  LEFT: $c processes with $root in their command line"; left=1; }
[ -z "$("$berth" --root "$root" container ls -aq)" ] || { echo "  LEFT: containers in berth's store"; left=1; }
[ -z "$(pm ps -aq 2>/dev/null)" ] || { echo "  LEFT: podman containers"; left=1; }
read -r c _ < <(pss_of conmon "$work/podman")
[ "$c" = 0 ] || { echo "  LEFT: $c conmon processes"; left=1; }
[ "$left" = 1 ] || echo "  none: no mounts, no berth cgroups of the ${#ids[@]} containers, no processes"

echo "== where berth's run --rm true spends its time (strace of milestone syscalls, 7 runs) =="
for i in $(seq 7); do
  strace -f --seccomp-bpf -ttt -T -s 200 -o "$work/trace.$i" \
    -e trace=execve,clone,clone3,vfork,exit_group,mount,umount2,fsync,fdatasync,rename,pidfd_open,openat,write,unshare,pivot_root,seccomp \
    "$berth" --root "$root" container run --rm bb:1 true
done
python3 bench/container/profile.py "$work"/trace.*
