#!/usr/bin/env bash
# Stop skiff on this machine (the service, or the background process the installer started).
set -u
[[ $(id -u) -eq 0 ]] || { echo "run as root" >&2; exit 1; }
if [[ -d /run/systemd/system ]]; then
  systemctl stop skiff.service skiff-agent.service 2>/dev/null || true
fi
if [[ -f /run/skiff.pid ]]; then
  kill "$(cat /run/skiff.pid)" 2>/dev/null || true
  rm -f /run/skiff.pid
fi
