#!/usr/bin/env bash
# Installs, with apt, what the test suite needs on a fresh Debian 12 machine and is not
# already there: QEMU (and qemu-storage-daemon, the reference backend), and the guest's
# packages (busybox-static, fio, e2fsprogs, util-linux, cpio), strace (a test makes io_uring_setup
# fail with it), plus the addon's build tools.
# Needs root (or sudo). Installs nothing when everything is present.
set -euo pipefail
packages=(qemu-system-x86 qemu-utils busybox-static fio cpio e2fsprogs util-linux strace g++ make python3 xz-utils zstd)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-debian-deps: everything is installed"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-debian-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y --no-install-recommends "${missing[@]}"
