#!/usr/bin/env bash
# Remove skiff from this machine: stop it, then delete its units, config, data and binary.
set -u
[[ $(id -u) -eq 0 ]] || { echo "run as root" >&2; exit 1; }
BIN_DIR=$(dirname "$(readlink -f "$0")")
"$BIN_DIR/skiff-killall.sh"
if [[ -d /run/systemd/system ]]; then
  systemctl disable skiff.service skiff-agent.service 2>/dev/null || true
  rm -f /etc/systemd/system/skiff.service /etc/systemd/system/skiff.service.env \
        /etc/systemd/system/skiff-agent.service /etc/systemd/system/skiff-agent.service.env
  systemctl daemon-reload
fi
rm -rf /etc/skiff /var/lib/skiff /var/log/skiff.log
rm -f "$BIN_DIR/skiff" "$BIN_DIR/skiff-killall.sh" "$BIN_DIR/skiff-uninstall.sh"
echo "skiff uninstalled"
