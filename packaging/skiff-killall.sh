#!/usr/bin/env bash
# Stop skiff on this machine (the service, or the background process the installer
# started) and, as k3s-killall.sh does, what it leaves running on purpose: containers
# outlive skiff (fail-static), so their shims and every process in skiff's cgroups are
# killed, then what skiff mounted under its data dir (root filesystems, namespace files,
# volumes, the runtime's tmpfs) is unmounted. SKIFF_DATA_DIR: the data dir if not
# /var/lib/skiff.
set -u
[[ $(id -u) -eq 0 ]] || { echo "run as root" >&2; exit 1; }
DATA_DIR=${SKIFF_DATA_DIR:-/var/lib/skiff}
if [[ -d /run/systemd/system ]]; then
  systemctl stop skiff.service skiff-agent.service 2>/dev/null || true
fi
if [[ -f /run/skiff.pid ]]; then
  kill "$(cat /run/skiff.pid)" 2>/dev/null || true
  rm -f /run/skiff.pid
fi
pkill -9 -f '^skiff shim --run-dir ' 2>/dev/null || true
for procs in /sys/fs/cgroup/*/skiff/ /sys/fs/cgroup/skiff/; do
  [[ -d $procs ]] || continue
  find "$procs" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -9 2>/dev/null
done
sleep 0.5
for dir in /sys/fs/cgroup/*/skiff /sys/fs/cgroup/skiff; do
  [[ -d $dir ]] && find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null
done
# Deepest first: a reverse sort lists a path before its parents.
awk -v d="${DATA_DIR%/}/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r |
  while read -r mnt; do umount -l "$mnt" 2>/dev/null; done
exit 0
