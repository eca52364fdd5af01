#!/usr/bin/env bash
# Pod start latency and agent memory (docs/benchmarks.md, issue 4): a single-node
# `skiff server` (server + agent in one process) inside a network namespace this script
# makes; a busybox-static image built here and imported; then
#  1. N pods (default 50) created in one `kubectl create`, the image present: the time from
#     just before the create until a watch shows each pod Running (p50, p99), and per pod
#     from its creation (when the watch first shows it) until Running;
#  2. with those pods running (sleeping), the memory of the skiff process and of every
#     `skiff shim` (VmRSS, PSS, private, anonymous; median, max); SMAPS_DIR=dir also
#     keeps /proc/PID/smaps of skiff and of one shim, and the server log, there; SETTLE=s
#     waits s seconds (default 5) after the last pod runs before measuring.
#
#   sudo benches/pods.sh                       # builds `cargo build --release` first
#   N=30 SKIFF=target/release/skiff sudo -E benches/pods.sh
#
# Needs root. Touches only its own network namespace and temp dir; removes both (and
# every process it started) at the end, also on failure.
set -euo pipefail
export LC_ALL=C # "." as the decimal point of $EPOCHREALTIME
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
# The runtime's run dir as the server sees it: a tmpfs in the server's private mount
# namespace, reached through /proc while the server runs.
run_dir() { echo "/proc/$SERVER_PID/root$WORK/data/agent/run"; }
cleanup() {
  set +e
  local ids=() shims=() dir
  if [[ -n $SERVER_PID ]]; then
    nsenter --net=/run/netns/$NS kubectl --kubeconfig "$WORK/kubeconfig" delete pods --all \
      --grace-period=1 --wait=true --timeout=120s >/dev/null 2>&1
    for dir in "$(run_dir)"/containers/*/; do
      [[ -d $dir ]] || continue
      ids+=("$(basename "$dir")"); shims+=("$(cat "$dir/shim.pid" 2>/dev/null)")
    done
    kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null
  fi
  # Whatever a failed run left: shims, container processes, their cgroups.
  for pid in "${shims[@]}"; do [[ -n $pid ]] && kill -9 "$pid" 2>/dev/null; done
  for id in "${ids[@]}"; do
    uid=${id%%_*}
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
# Timestamps from bash's own clock ($EPOCHREALTIME): a `date` per line would be ~200
# forks competing with the pod starts for the CPUs.
k get pods -w --no-headers -o 'custom-columns=NAME:.metadata.name,PHASE:.status.phase' 2>"$WORK/watch.err" |
  while read -r name phase; do echo "$EPOCHREALTIME $name $phase"; done >"$WORK/watch.log" &
WATCH_PID=$!
sleep 1
# CPU time (utime + stime + reaped children's, in clock ticks) of a process.
cpu_ticks() { awk '{print $14 + $15 + $16 + $17}' /proc/"$1"/stat 2>/dev/null || echo 0; }
CPU0=$(cpu_ticks "$SERVER_PID")
T0=$EPOCHREALTIME
k create -f "$WORK/pods.yaml" >/dev/null
for _ in $(seq 1 600); do
  running=$(awk '$3=="Running"{print $2}' "$WORK/watch.log" | sort -u | wc -l)
  [[ $running -ge $N ]] && break
  sleep 0.2
done
kill "$WATCH_PID" 2>/dev/null || true
CPU1=$(cpu_ticks "$SERVER_PID")
watch_failed() {
  { echo "--- the watch's errors:"; cat "$WORK/watch.err"; echo "--- the server's last lines:"
    tail -20 "$WORK/server.log"; } >&2
  exit 1
}
python3 - "$T0" "$N" "$WORK/watch.log" <<'EOF' || watch_failed
import sys
t0, n, path = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
seen, running = {}, {}
for line in open(path):
    ts, name, phase = line.split()[:3]
    seen.setdefault(name, float(ts))
    if phase == "Running" and name not in running:
        running[name] = float(ts)
if len(running) < n:
    print(f"only {len(running)} of {n} pods reached Running")
    sys.exit(1)
def row(what, lat):
    lat = sorted(lat)
    p = lambda q: lat[min(len(lat) - 1, int(round(q * (len(lat) - 1))))]
    print(f"| {n} | {what} | {p(0.5)*1000:.0f} ms | {p(0.99)*1000:.0f} ms | {lat[-1]*1000:.0f} ms |")
print("| pods | from | p50 | p99 | max |\n|---|---|---|---|---|")
# From just before `kubectl create` (kubectl's start and its N sequential POSTs included).
row("before the create", [t - t0 for t in running.values()])
# From the pod's own creation (its first sight in the watch) to Running: Kubernetes'
# pod startup latency, per pod.
row("the pod's creation", [running[k] - seen[k] for k in running])
EOF

# CPU time per pod start: the skiff process's during the burst (API server, scheduler,
# agent, the kernel's work for namespaces and links, the shims' first processes it
# reaps) and the shims' own so far (their main thread's time on CPU, from schedstat;
# not libcontainer's short-lived processes).
shim_ns=0
for f in "$(run_dir)"/containers/*/shim.pid; do
  shim_ns=$((shim_ns + $(awk '{print $1}' /proc/"$(cat "$f")"/schedstat 2>/dev/null || echo 0)))
done
hz=$(getconf CLK_TCK)
awk -v n="$N" -v s=$((CPU1 - CPU0)) -v c="$shim_ns" -v hz="$hz" 'BEGIN {
  printf "\nCPU per pod start: skiff %.1f ms, shim %.1f ms (skiff %.2f s in all)\n", s*1000/hz/n, c/1e6/n, s/hz }'

# 2. Memory with the pods running: VmRSS counts every resident page a process maps, also
# the ones it shares (the skiff binary's text, which every shim maps from the one sealed
# copy); PSS divides shared pages among their mappers, "private" is what only that process
# has (Private_Clean + Private_Dirty of /proc/PID/smaps_rollup), "anon" its anonymous pages.
sleep "${SETTLE:-5}"
rollup() { # PID -> "rss pss private anon" in KiB
  awk '/^Rss:/{r=$2} /^Pss:/{p=$2} /^Private_(Clean|Dirty):/{v+=$2} /^Anonymous:/{a=$2}
       END{print r+0, p+0, v+0, a+0}' /proc/"$1"/smaps_rollup 2>/dev/null
}
read -r s_rss s_pss s_priv s_anon < <(rollup "$SERVER_PID")
s_threads=$(awk '/^Threads:/{print $2}' /proc/$SERVER_PID/status)
for f in "$(run_dir)"/containers/*/shim.pid; do rollup "$(cat "$f")"; done |
  grep . >"$WORK/shims.mem" || true
[[ -n ${SMAPS_DIR:-} ]] && { mkdir -p "$SMAPS_DIR"; cp /proc/$SERVER_PID/smaps "$SMAPS_DIR/skiff.smaps"
  cp "$WORK/server.log" "$SMAPS_DIR/server.log"
  cat /proc/$SERVER_PID/task/*/comm | sort | uniq -c >"$SMAPS_DIR/threads.txt"
  echo "$T0" >"$SMAPS_DIR/t0"; cp "$WORK/watch.log" "$SMAPS_DIR/watch.log"
  f=$(ls "$(run_dir)"/containers/*/shim.pid | head -1); cp /proc/"$(cat "$f")"/smaps "$SMAPS_DIR/shim.smaps"; }
echo
echo "| running pods | skiff VmRSS | skiff PSS | skiff private | skiff anon | skiff threads |"
echo "|---|---|---|---|---|---|"
awk -v n="$N" -v r="$s_rss" -v p="$s_pss" -v v="$s_priv" -v a="$s_anon" -v t="$s_threads" \
  'BEGIN { printf "| %d | %.1f MiB | %.1f MiB | %.1f MiB | %.1f MiB | %d |\n", n, r/1024, p/1024, v/1024, a/1024, t }'
echo
echo "| shims | per shim (median / max) | VmRSS | PSS | private | anon |"
echo "|---|---|---|---|---|---|"
python3 - "$WORK/shims.mem" <<'EOF2'
import sys, statistics
rows = [list(map(int, l.split())) for l in open(sys.argv[1]) if l.strip()]
if not rows:
    print("| 0 | - | - | - | - | - |"); sys.exit(0)
cols = list(zip(*rows))
cell = lambda c: f"{statistics.median(c)/1024:.2f} / {max(c)/1024:.2f} MiB"
print(f"| {len(rows)} | | {cell(cols[0])} | {cell(cols[1])} | {cell(cols[2])} | {cell(cols[3])} |")
print(f"\nall shims together: PSS {sum(cols[1])/1024:.1f} MiB, private {sum(cols[2])/1024:.1f} MiB")
EOF2
