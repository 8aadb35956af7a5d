#!/usr/bin/env bash
# Installs every Debian package that the build, the demo and the tests need.
# Idempotent and non-interactive: a second run with everything present takes a second or two.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config clang-format
  # libraries
  libabsl-dev libvirt-dev libpugixml-dev libblkid-dev libbtrfsutil-dev
  nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev libsqlite3-dev sqlite3
  libgtest-dev libgmock-dev libbenchmark-dev libxxhash-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  libcpp-httplib-dev libtomlplusplus-dev
  # tools the demo and the tests drive: disk images, file systems, libvirt clients
  qemu-utils libvirt-clients btrfs-progs xfsprogs e2fsprogs util-linux
  # /usr/sbin/libvirtd: the tests run a private one serving the test driver on their own socket
  # (tests/integration/private_libvirtd.h); nothing is started or enabled system-wide
  libvirt-daemon
  # real QEMU/KVM through the system libvirtd (qemu:///system): the real-QEMU tests and bench;
  # scripts/qemu-env.sh starts virtlogd and libvirtd for them (there is no init system here)
  libvirt-daemon-system qemu-system-x86
  # a real one-node Pacemaker cluster for the `pacemaker` cluster membership tests;
  # scripts/pacemaker-env.sh starts it with its own corosync configuration
  pacemaker pacemaker-cli-utils corosync
)

# The web console: Node.js and npm build it (web/, `npm ci` + Vite), Chromium runs its browser
# tests (tests/browser, playwright-core). Debian's nodejs + npm, unless a Node.js with its own npm
# is installed already (NodeSource's nodejs conflicts with Debian's npm package).
PACKAGES+=(chromium)
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  PACKAGES+=(nodejs npm)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
