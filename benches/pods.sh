#!/usr/bin/env bash
# Pod start latency and agent memory (docs/benchmarks.md, issue 4): a single-node
# `skiff server` (server + agent in one process) inside a network namespace this script
# makes; a busybox-static image built here and imported; then
#  1. N pods (default 50) created in one `kubectl create`, the image present: the time from
#     just before the create until a watch shows each pod Running (p50, p99);
#  2. with those pods running (sleeping), VmRSS of the skiff process and of every
#     `skiff shim` (median, max).
#
#   sudo benches/pods.sh                       # builds `cargo build --release` first
#   N=30 SKIFF=target/release/skiff sudo -E benches/pods.sh
#
# Needs root. Touches only its own network namespace and temp dir; removes both (and
# every process it started) at the end, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-50}
[[ $(id -u) -eq 0 ]] || { echo "error: run as root" >&2; exit 1; }
for cmd in ip nsenter unshare kubectl python3; do
  command -v "$cmd" >/dev/null || { echo "error: $cmd is needed" >&2; exit 1; }
done
[[ -x /bin/busybox ]] || { echo "error: install busybox-static" >&2; exit 1; }
if [[ -z ${SKIFF:-} ]]; then
  echo "==> cargo build --release" >&2
  cargo build --release --bin skiff >&2
  SKIFF="${CARGO_TARGET_DIR:-target}/release/skiff"
fi
SKIFF=$(realpath "$SKIFF")

NS="skiff-bench-$$"
WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
  set +e
  if [[ -n $SERVER_PID ]]; then
    nsenter --net=/run/netns/$NS kubectl --kubeconfig "$WORK/kubeconfig" delete pods --all \
      --grace-period=1 --wait=true --timeout=120s >/dev/null 2>&1
    kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null
  fi
  # Whatever a failed run left: shims, container processes, their cgroups.
  for dir in "$WORK"/data/agent/run/containers/*/; do
    [[ -d $dir ]] || continue
    id=$(basename "$dir"); uid=${id%%_*}
    [[ -f $dir/shim.pid ]] && kill -9 "$(cat "$dir/shim.pid")" 2>/dev/null
    for cg in /sys/fs/cgroup/*/skiff/pod"$uid"/"$id"; do
      [[ -f $cg/cgroup.procs ]] && xargs -r kill -9 <"$cg/cgroup.procs" 2>/dev/null
      sleep 0.1; rmdir "$cg" "$(dirname "$cg")" 2>/dev/null
    done
  done
  ip netns del "$NS" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

# The image: one layer with busybox and its applets, as a `docker save` tar.
mkdir -p "$WORK/rootfs/bin" "$WORK/image"
cp /bin/busybox "$WORK/rootfs/bin/"
for a in $(/bin/busybox --list); do [[ $a == busybox ]] || ln -s busybox "$WORK/rootfs/bin/$a"; done
tar -C "$WORK/rootfs" -cf "$WORK/image/layer.tar" .
DIFF=$(sha256sum "$WORK/image/layer.tar" | cut -d' ' -f1)
cat >"$WORK/image/config.json" <<EOF
{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:$DIFF"]}}
EOF
echo '[{"Config":"config.json","RepoTags":["docker.io/library/benchbox:1"],"Layers":["layer.tar"]}]' >"$WORK/image/manifest.json"
tar -C "$WORK/image" -cf "$WORK/benchbox.tar" manifest.json config.json layer.tar
"$SKIFF" images import --data-dir "$WORK/data" "$WORK/benchbox.tar" >&2

ip netns add "$NS"
ip -n "$NS" link set lo up
k() { nsenter --net=/run/netns/$NS kubectl --kubeconfig "$WORK/kubeconfig" "$@"; }
echo "" >"$WORK/config.yaml"
unshare --mount --propagation private nsenter --net=/run/netns/$NS "$SKIFF" server \
  --data-dir "$WORK/data" --bind-address 127.0.0.1 --https-listen-port 6443 \
  --write-kubeconfig "$WORK/kubeconfig" --config "$WORK/config.yaml" \
  --pod-logs-dir "$WORK/logs" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
  [[ -f $WORK/kubeconfig ]] && k get nodes --no-headers 2>/dev/null | grep -q ' Ready ' && break
  sleep 0.2
done
k get nodes --no-headers | grep -q ' Ready ' || { echo "error: the node is not Ready" >&2; tail "$WORK/server.log" >&2; exit 1; }
# The default ServiceAccount must exist before pods are created.
for _ in $(seq 1 100); do k get serviceaccount default >/dev/null 2>&1 && break; sleep 0.1; done

# 1. Start latency.
python3 - "$N" >"$WORK/pods.yaml" <<'EOF'
import json, sys
n = int(sys.argv[1])
items = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p{i}"},
          "spec": {"terminationGracePeriodSeconds": 1,
                   "containers": [{"name": "c", "image": "docker.io/library/benchbox:1",
                                   "command": ["sleep", "3600"]}]}} for i in range(n)]
print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
EOF
k get pods -w --no-headers -o 'custom-columns=NAME:.metadata.name,PHASE:.status.phase' 2>/dev/null |
  while read -r name phase; do echo "$(date +%s.%N) $name $phase"; done >"$WORK/watch.log" &
WATCH_PID=$!
sleep 1
T0=$(date +%s.%N)
k create -f "$WORK/pods.yaml" >/dev/null
for _ in $(seq 1 600); do
  running=$(awk '$3=="Running"{print $2}' "$WORK/watch.log" | sort -u | wc -l)
  [[ $running -ge $N ]] && break
  sleep 0.2
done
kill "$WATCH_PID" 2>/dev/null || true
python3 - "$T0" "$N" "$WORK/watch.log" <<'EOF'
import sys, statistics
t0, n, path = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
first = {}
for line in open(path):
    ts, name, phase = line.split()[:3]
    if phase == "Running" and name not in first:
        first[name] = float(ts) - t0
lat = sorted(first.values())
if len(lat) < n:
    print(f"only {len(lat)} of {n} pods reached Running")
    sys.exit(1)
p = lambda q: lat[min(len(lat) - 1, int(round(q * (len(lat) - 1))))]
print(f"| pods | p50 | p99 | max |\n|---|---|---|---|\n| {n} | {p(0.5)*1000:.0f} ms | {p(0.99)*1000:.0f} ms | {lat[-1]*1000:.0f} ms |")
EOF

# 2. Memory with the pods running.
sleep 5
skiff_rss=$(awk '/VmRSS/{print $2}' /proc/$SERVER_PID/status)
shims=$(for f in "$WORK"/data/agent/run/containers/*/shim.pid; do
  awk '/VmRSS/{print $2}' /proc/"$(cat "$f")"/status 2>/dev/null; done | sort -n)
count=$(echo "$shims" | grep -c . || true)
median=$(echo "$shims" | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
max=$(echo "$shims" | tail -1)
echo
echo "| running pods | skiff (server + agent) VmRSS | shims | shim VmRSS median | shim VmRSS max |"
echo "|---|---|---|---|---|"
awk -v n="$N" -v s="$skiff_rss" -v c="$count" -v med="$median" -v m="$max" \
  'BEGIN { printf "| %d | %.1f MiB | %d | %.2f MiB | %.2f MiB |\n", n, s/1024, c, med/1024, m/1024 }'
