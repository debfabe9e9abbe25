#!/usr/bin/env bash
# Makes the example's image offline: a rootfs from Debian's busybox-static (every applet as a
# symlink), imported as berth-example/busybox:latest. Usage: make-image.sh [BERTH]
set -euo pipefail
berth=${1:-berth}
busybox=/bin/busybox
[ -x "$busybox" ] || { echo "make-image: $busybox missing: apt-get install busybox-static" >&2; exit 1; }
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs"/{bin,etc,tmp,www,data,root}
chmod 1777 "$rootfs/tmp"
cp "$busybox" "$rootfs/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$rootfs/etc/group"
tar -C "$rootfs" --numeric-owner -cf - . | "$berth" image import \
  -c 'CMD ["sh"]' -c 'ENV PATH=/bin' -c 'WORKDIR /' - berth-example/busybox:latest
