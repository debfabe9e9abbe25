#!/usr/bin/env bash
# A/B of two berth builds (run by hand, as root): `up -d` and `down -t 0` of N services,
# the two binaries taking turns.
#
# Why: on the shared dev VM the same binary's `up -d` of 50 services ranges 0.7–1.6 s from
# one minute to the next, so two builds timed one after the other compare the minutes, not
# the builds. Interleaved, each repetition runs A then B back to back, and the means compare.
#
# Method
# - A compose file with N (default 50) services `sK: {image: bench/bb:1, command: [sleep,
#   "600"]}` (one default network). A busybox-static rootfs tar imported as bench/bb:1.
# - Each build has its own state root and its own throw-away network namespace (commands
#   through `nsenter --net`), so bridges, veths and firewall rules die with it and no DNS
#   query leaves it (<root>/daemon.json {"dns": ["127.0.0.1"]}).
# - REPS (default 5) repetitions of: A up -d, A down -t 0, B up -d, B down -t 0. Printed per
#   run: wall time of `up -d` and of `down -t 0`, and the CPU time all cores spent during
#   `up -d` (/proc/stat busy jiffies: berth's processes, the containers' and the kernel's
#   work for them). Then each build's means.
# - At the end: no netns, mount or process of this script is left.
#
# Usage: A=path/to/berth-before B=path/to/berth-after [N=50] [REPS=5] bench/ab.sh
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
A=$(realpath "${A:?A=path to the first berth binary}")
B=$(realpath "${B:?B=path to the second berth binary}")
N=${N:-50}
REPS=${REPS:-5}
for t in nsenter ip; do
  command -v "$t" >/dev/null || { echo "$t not installed (apt-get install -y $t)" >&2; exit 1; }
done
[ -x /bin/busybox ] && file -L /bin/busybox | grep -q 'statically linked' ||
  { echo "needs Debian's busybox-static (apt-get install -y busybox-static)" >&2; exit 1; }

work=$(mktemp -d /var/tmp/berth-ab.XXXXXX)
tag=ab$$
bin_of() { if [ "$1" = a ]; then echo "$A"; else echo "$B"; fi; }
b() { # b a|b ARGS…: that build, in its namespace, on the project
  local t=$1
  shift
  nsenter --net="/run/netns/$tag$t" "$(bin_of "$t")" --root "$work/$t/root" \
    --project-directory "$work/p" -p ab "$@"
}
cleanup() {
  set +e
  for t in a b; do
    [ -e "/run/netns/$tag$t" ] || continue
    b "$t" down -t 0 >/dev/null 2>&1
    ip netns del "$tag$t"
  done
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/rootfs/bin" "$work/p"
cp /bin/busybox "$work/rootfs/bin/"
for x in $(/bin/busybox --list); do
  [ "$x" = busybox ] || ln -s busybox "$work/rootfs/bin/$x"
done
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
{
  echo services:
  for i in $(seq "$N"); do printf '  s%d:\n    image: bench/bb:1\n    command: [sleep, "600"]\n' "$i"; done
} >"$work/p/compose.yaml"
for t in a b; do
  ip netns add "$tag$t"
  ip -n "$tag$t" link set lo up
  mkdir -p "$work/$t"
  "$(bin_of "$t")" --root "$work/$t/root" image import -c 'CMD ["sh"]' "$work/rootfs.tar" bench/bb:1 >/dev/null
  echo '{"dns": ["127.0.0.1"]}' >"$work/$t/root/daemon.json"
done

busy() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }
ms() { echo $((($2 - $1) / 1000000)); }
declare -A up down cpu
echo "A=$A"
echo "B=$B"
echo "N=$N REPS=$REPS"
for r in $(seq "$REPS"); do
  for t in a b; do
    c0=$(busy) s=$(date +%s%N)
    b "$t" up -d >/dev/null 2>"$work/err" || { cat "$work/err"; exit 1; }
    e=$(date +%s%N) c1=$(busy)
    u=$(ms "$s" "$e") c=$(((c1 - c0) * 1000 / $(getconf CLK_TCK)))
    s=$(date +%s%N)
    b "$t" down -t 0 >/dev/null 2>"$work/err" || { cat "$work/err"; exit 1; }
    d=$(ms "$s" "$(date +%s%N)")
    left=$(b "$t" ps -aq)
    [ -z "$left" ] || { echo "containers left after down: $left" >&2; exit 1; }
    echo "rep $r ${t^^}: up -d $u ms (cpu $c ms)  down $d ms"
    up[$t]=$((${up[$t]:-0} + u)) down[$t]=$((${down[$t]:-0} + d)) cpu[$t]=$((${cpu[$t]:-0} + c))
  done
done
for t in a b; do
  echo "${t^^} mean: up -d $((up[$t] / REPS)) ms (cpu $((cpu[$t] / REPS)) ms)  down $((down[$t] / REPS)) ms"
done
trap - EXIT
cleanup
for t in a b; do
  [ ! -e "/run/netns/$tag$t" ] || echo "LEFT: netns $tag$t"
done
if grep -q " $work" /proc/self/mountinfo; then echo "LEFT: mounts under $work"; fi
