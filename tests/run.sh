#!/usr/bin/env bash
# Run skiff's whole test suite (unit, integration and end-to-end with the real kubectl).
# Installs what the tests need on a fresh Debian machine, then runs `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v curl >/dev/null || need+=(curl)
command -v cc >/dev/null || need+=(gcc)
# The runtime tests (tests/runtime.rs) build container root filesystems from it.
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
# The image tests (tests/images.rs) pull from a local registry they start themselves
# (`docker-registry serve`, on 127.0.0.1; the package's service is not used).
dpkg -s docker-registry >/dev/null 2>&1 || need+=(docker-registry)
# The pod network tests (tests/net.rs): `ip`, `nft` and nsenter.
dpkg -s iproute2 >/dev/null 2>&1 || need+=(iproute2)
dpkg -s nftables >/dev/null 2>&1 || need+=(nftables)
command -v nsenter >/dev/null || need+=(util-linux)
if ((${#need[@]})); then
  echo "==> installing ${need[*]}"
  if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
if ! command -v kubectl >/dev/null; then
  echo "error: kubectl (1.32) is required on PATH for the end-to-end tests" >&2
  exit 1
fi
echo "==> kubectl $(kubectl version --client -o json 2>/dev/null | grep -m1 gitVersion | tr -d ' ",' | cut -d: -f2)"

# A nearly full disk puts the test nodes under DiskPressure (pods stay Pending): say so.
echo "==> disk: $(df -h --output=used,avail,pcent . | tail -1 | xargs) (used, available, use%)"

echo "==> cargo test"
exec cargo test --locked "$@"
