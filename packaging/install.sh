#!/usr/bin/env bash
# Install and start skiff on this machine, like k3s's install script.
#
#   sudo ./packaging/install.sh                 # a server (control plane)
#
# From a source checkout it builds the binary first (cargo build --release).
# Environment (k3s's names with SKIFF_):
#   INSTALL_SKIFF_EXEC        extra flags for `skiff server` (default: --disable-agent:
#                             the agent runs pods but has no probes, exec or PVCs yet;
#                             INSTALL_SKIFF_EXEC=" " runs it)
#   INSTALL_SKIFF_BIN_DIR     where the binary goes (default /usr/local/bin)
#   INSTALL_SKIFF_SKIP_START  "true": install only
#   SKIFF_URL, SKIFF_TOKEN    join a server as an agent (not built yet: refused)
set -euo pipefail

BIN_DIR=${INSTALL_SKIFF_BIN_DIR:-/usr/local/bin}
EXEC=${INSTALL_SKIFF_EXEC:---disable-agent}
SRC=$(cd "$(dirname "$0")/.." && pwd)

info() { echo "[INFO]  $*"; }
fatal() { echo "[ERROR] $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || fatal "run as root (sudo $0)"
if [[ -n ${SKIFF_URL:-} ]]; then
  fatal "joining as an agent (SKIFF_URL) is not built yet in this skiff version"
fi

# Build from source when run from a checkout.
if [[ -f $SRC/Cargo.toml ]]; then
  if ! command -v cargo >/dev/null; then
    fatal "cargo is needed to build skiff from source (install rustup's toolchain first)"
  fi
  if ! command -v cc >/dev/null; then
    info "installing gcc"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc
  fi
  info "building skiff (cargo build --release; the first build takes several minutes)"
  (cd "$SRC" && cargo build --release --locked)
  install -m 0755 "$SRC/target/release/skiff" "$BIN_DIR/skiff"
else
  [[ -x $SRC/skiff ]] || fatal "no Cargo.toml and no skiff binary next to this script"
  install -m 0755 "$SRC/skiff" "$BIN_DIR/skiff"
fi
info "installed $BIN_DIR/skiff ($("$BIN_DIR/skiff" --version))"

install -m 0755 "$SRC/packaging/skiff-killall.sh" "$BIN_DIR/skiff-killall.sh"
install -m 0755 "$SRC/packaging/skiff-uninstall.sh" "$BIN_DIR/skiff-uninstall.sh"
mkdir -p /etc/skiff

if [[ ${INSTALL_SKIFF_SKIP_START:-} == true ]]; then
  info "INSTALL_SKIFF_SKIP_START=true: not starting skiff"
  exit 0
fi

if [[ -d /run/systemd/system ]]; then
  install -m 0644 "$SRC/systemd/skiff.service" /etc/systemd/system/skiff.service
  umask 077
  echo "SKIFF_EXEC=$EXEC" > /etc/systemd/system/skiff.service.env
  systemctl daemon-reload
  systemctl enable skiff.service >/dev/null
  info "starting skiff.service"
  systemctl restart skiff.service
else
  # No systemd (containers, minimal VMs): run in the background, logging to a file.
  info "systemd is not running: starting skiff in the background (log: /var/log/skiff.log)"
  if [[ -f /run/skiff.pid ]] && kill -0 "$(cat /run/skiff.pid)" 2>/dev/null; then
    kill "$(cat /run/skiff.pid)" && sleep 1
  fi
  # shellcheck disable=SC2086
  nohup "$BIN_DIR/skiff" server $EXEC >>/var/log/skiff.log 2>&1 &
  echo $! > /run/skiff.pid
fi

for _ in $(seq 1 100); do
  if "$BIN_DIR/skiff" kubectl get --raw /readyz >/dev/null 2>&1; then
    info "skiff is ready: try '$BIN_DIR/skiff kubectl get namespaces'"
    exit 0
  fi
  sleep 0.2
done
fatal "skiff did not become ready in 20s (see journalctl -u skiff or /var/log/skiff.log)"
