#!/usr/bin/env bash
# The control-plane benchmark of issue 3 (docs/benchmarks.md): a release `skiff server
# --disable-agent` with `skiff simulate` nodes, driven by the real kubectl.
#  1. scheduler throughput: $PODS pending pods (created before any node exists), then
#     $NODES simulated nodes register; time from the first node to the last pod bound;
#  2. a $REPLICAS-replica Deployment: time from `kubectl create` to `rollout status` done;
#  3. server RSS with $NODES nodes and $TOTAL pods.
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
"$bin" server --disable-agent --data-dir "$work/data" --bind-address 127.0.0.1 \
    --https-listen-port "$port" --write-kubeconfig "$work/kubeconfig" --config "$work/config.yaml" \
    > "$work/server.log" 2>&1 &
server=$!
pids+=("$server")
export KUBECONFIG=$work/kubeconfig HOME=$work
for _ in $(seq 100); do [[ -f $KUBECONFIG ]] && kubectl get --raw /readyz >/dev/null 2>&1 && break; sleep 0.1; done

now() { date +%s.%N; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", a - b}'; }
rss() { awk '/^VmRSS/ {printf "%.1f MiB", $2/1024}' "/proc/$1/status"; }
count_bound() { kubectl get pods -A --field-selector spec.nodeName!= -o name | wc -l; }

echo "benches/control-plane.sh: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# 1. Pending pods first.
# One YAML document per pod (kubectl validates each kind; a `kind: List` needs the
# protobuf OpenAPI v2 document for validation, which skiff does not serve yet).
for ((i = 0; i < PODS; i++)); do
    echo '---'
    printf '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"bench-%d","labels":{"app":"bench-%d"}},' "$i" $((i % 100))
    echo '"spec":{"containers":[{"name":"c","image":"busybox","resources":{"requests":{"cpu":"100m","memory":"64Mi"}}}]}}'
done > "$work/pods.yaml"
t=$(now)
kubectl create -f "$work/pods.yaml" > /dev/null
created=$(now)
echo "created $PODS pods in $(minus "$created" "$t") s" >&2

"$bin" simulate --kubeconfig "$KUBECONFIG" --nodes "$NODES" > "$work/simulate.log" 2>&1 &
sim=$!
pids+=("$sim")
t_nodes=$(now)
while (( $(count_bound) < PODS )); do sleep 0.2; done
t_bound=$(now)
sched_s=$(minus "$t_bound" "$t_nodes")
registered=$(grep -c "simulated nodes registered" "$work/simulate.log" || true)
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
- nodes: $NODES simulated (\`skiff simulate\`, registered: $registered)

| figure | result |
|---|---:|
| $PODS pending pods bound after $NODES nodes appear (first node → last pod bound) | **${sched_s} s = ${sched_rate} pods/s** |
| Deployment of $REPLICAS replicas, create → \`rollout status\` done | **${deploy_s} s** |
| scaling to $TOTAL pods in all, scale → \`rollout status\` done | ${fill_s} s |
| server RSS with $NODES nodes and $pods_now pods (peak) | **${server_rss}** (${server_hwm}) |
| \`skiff simulate\` RSS ($NODES nodes, $pods_now pods) | ${sim_rss} |
MD
