#!/usr/bin/env bash
# Installs what berth's build and tests need on a fresh Debian machine of this kind.
# Idempotent and quiet when everything is already there. Run as root (CI is root).
set -euo pipefail

# Debian packages the tests use: a real registry on loopback and the busybox the test images are made of.
# libseccomp-dev for the runtime's seccomp filters, tini for `init: true` (Docker's docker-init is tini too).
# iproute2 and nftables for networking (berth talks netlink itself and runs `nft -j` for its own table),
# curl for the demo.
packages=(docker-registry busybox-static libseccomp-dev tini iproute2 nftables curl)

missing=()
for p in "${packages[@]+"${packages[@]}"}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing Debian packages ${missing[*]}; run as root or install them" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "setup: cargo not found (this kind of machine ships rustup's toolchain)" >&2; exit 1; }
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt >/dev/null 2>&1 || true
