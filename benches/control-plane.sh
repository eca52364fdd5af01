#!/usr/bin/env bash
# The control-plane benchmark of issue 3 (docs/benchmarks.md): a release `skiff server
# --disable-agent` with `skiff simulate` nodes, driven by the real kubectl.
#  1. scheduler throughput: $NODES simulated nodes register and are Ready, then $PODS pods
#     are created over HTTP/2 by 32 parallel curl streams; time from the first create to
#     the last pod bound (creation is much faster than binding, see the output);
# Usage: ./benches/control-plane.sh   (NODES=1000 PODS=10000 REPLICAS=1000 TOTAL=30000,
#        SKIFF_BIN=target/debug/skiff to skip the release build)
set -euo pipefail
cd "$(dirname "$0")/.."

NODES=${NODES:-1000}
PODS=${PODS:-10000}
REPLICAS=${REPLICAS:-1000}
TOTAL=${TOTAL:-30000}

# SKIFF_BIN=path skips the release build (for a quick trial with another binary).
if [[ -z ${SKIFF_BIN:-} ]]; then
    cargo build --release --bin skiff >&2
fi
bin=${SKIFF_BIN:-$PWD/target/release/skiff}
work=$(mktemp -d /tmp/skiff-cp-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 1
    rm -rf "$work"
}
trap cleanup EXIT

port=${PORT:-$((20000 + RANDOM % 20000))}
echo "" > "$work/config.yaml"
# A bearer token for curl (kubectl uses the admin client certificate).
token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$token,bench-admin,bench-admin,system:masters" > "$work/tokens.csv"
"$bin" server --disable-agent --data-dir "$work/data" --bind-address 127.0.0.1 \
    --https-listen-port "$port" --write-kubeconfig "$work/kubeconfig" --config "$work/config.yaml" \
    --token-auth-file "$work/tokens.csv" > "$work/server.log" 2>&1 &
server=$!
pids+=("$server")
export KUBECONFIG=$work/kubeconfig HOME=$work
for _ in $(seq 100); do [[ -f $KUBECONFIG ]] && kubectl get --raw /readyz >/dev/null 2>&1 && break; sleep 0.1; done
api=https://127.0.0.1:$port

now() { date +%s.%N; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", a - b}'; }
rss() { awk '/^VmRSS/ {printf "%.1f MiB", $2/1024}' "/proc/$1/status"; }
# Pods without a node, counted from a JSON list (one metadata.uid per item).
count_pending() {
    curl -sk -H "Authorization: Bearer $token" "$api/api/v1/pods?fieldSelector=spec.nodeName%3D" |
        grep -o '"uid"' | wc -l
}

echo "benches/control-plane.sh: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# 1. Nodes first, then a burst of pods.
t=$(now)
"$bin" simulate --kubeconfig "$KUBECONFIG" --nodes "$NODES" > "$work/simulate.log" 2>&1 &
sim=$!
pids+=("$sim")
while (( $(kubectl get nodes --no-headers 2>/dev/null | grep -c ' Ready ') < NODES )); do sleep 1; done
nodes_s=$(minus "$(now)" "$t")
echo "$NODES nodes Ready after $nodes_s s" >&2

for ((i = 0; i < PODS; i++)); do
    printf 'url = "%s/api/v1/namespaces/default/pods"\n' "$api"
    printf 'header = "Authorization: Bearer %s"\nheader = "Content-Type: application/json"\n' "$token"
    printf 'insecure\nfail\noutput = "/dev/null"\n'
    printf 'data = "{\\"apiVersion\\":\\"v1\\",\\"kind\\":\\"Pod\\",\\"metadata\\":{\\"name\\":\\"bench-%d\\",\\"labels\\":{\\"app\\":\\"bench-%d\\"}},' "$i" $((i % 100))
    printf '\\"spec\\":{\\"containers\\":[{\\"name\\":\\"c\\",\\"image\\":\\"busybox\\",\\"resources\\":{\\"requests\\":{\\"cpu\\":\\"100m\\",\\"memory\\":\\"64Mi\\"}}}]}}"\n'
    ((i + 1 < PODS)) && echo next
done > "$work/pods.curl"
t_create=$(now)
curl -sS --no-progress-meter --http2 --parallel --parallel-max 32 -K "$work/pods.curl" || {
    echo "error: some pod creates failed" >&2
    exit 1
}
created_s=$(minus "$(now)" "$t_create")
echo "created $PODS pods in $created_s s" >&2
while (( $(count_pending) > 0 )); do sleep 0.2; done
t_bound=$(now)
bound=$(kubectl get pods --field-selector spec.nodeName!= -o name | wc -l)
if (( bound < PODS )); then
    echo "error: only $bound of $PODS pods bound" >&2
    exit 1
fi
sched_s=$(minus "$t_bound" "$t_create")
sched_rate=$(awk -v n="$PODS" -v s="$sched_s" 'BEGIN {printf "%d", n / s}')

# 2. A Deployment of $REPLICAS replicas.
t=$(now)
kubectl create deployment big --image=busybox --replicas="$REPLICAS" > /dev/null
kubectl rollout status deployment/big --timeout=900s > /dev/null
deploy_s=$(minus "$(now)" "$t")

# 3. $TOTAL pods in all.
t=$(now)
kubectl scale deployment/big --replicas=$((TOTAL - PODS)) > /dev/null
kubectl rollout status deployment/big --timeout=1800s > /dev/null
fill_s=$(minus "$(now)" "$t")
sleep 10
pods_now=$(kubectl get pods -A --no-headers | wc -l)
server_rss=$(rss "$server")
server_hwm=$(awk '/^VmHWM/ {printf "%.1f MiB", $2/1024}' "/proc/$server/status")
sim_rss=$(rss "$sim")

cat <<MD
## skiff control-plane benchmark

- date: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load at end $(cut -d' ' -f1-3 /proc/loadavg)
- skiff: $("$bin" --version)
- nodes: $NODES simulated (\`skiff simulate\`), all Ready ${nodes_s} s after it started

| figure | result |
|---|---:|
| $PODS pods on $NODES nodes, first create → last pod bound (creates took ${created_s} s) | **${sched_s} s = ${sched_rate} pods/s** |
| Deployment of $REPLICAS replicas, create → \`rollout status\` done | **${deploy_s} s** |
| scaling to $TOTAL pods in all, scale → \`rollout status\` done | ${fill_s} s |
| server RSS with $NODES nodes and $pods_now pods (peak) | **${server_rss}** (${server_hwm}) |
| \`skiff simulate\` RSS ($NODES nodes, $pods_now pods) | ${sim_rss} |
MD
