#!/usr/bin/env bash
# The control-plane benchmark of issue 3 (docs/benchmarks.md): a release `skiff server
# --disable-agent` with `skiff simulate` nodes, driven by the real kubectl.
#  1. scheduler throughput: $PODS pods are created (HTTP/2, 32 parallel curl streams) while
#     no node exists; then $NODES simulated nodes start; time from their start to the last
#     pod bound (node registration, ~2 s for 1000 nodes, is included);
# Usage: ./benches/control-plane.sh   (NODES=1000 PODS=10000 REPLICAS=1000 TOTAL=30000,
#        SKIFF_BIN=target/debug/skiff to skip the release build, SCHED_ONLY=1 to stop after
#        phase 1 and print its figure only, SIM_BIN=path for another `skiff simulate`,
#        KEEP_LOGS=dir to keep the server's and the simulator's logs there; SKIFF_LOG
#        reaches both)
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
    if [[ -n ${KEEP_LOGS:-} ]]; then
        mkdir -p "$KEEP_LOGS" && cp "$work"/*.log "$KEEP_LOGS"/ 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

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
# CPU seconds (user + system) a process has used so far.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }
rss() { awk '/^VmRSS/ {printf "%.1f MiB", $2/1024}' "/proc/$1/status"; }
# Whether some pod still has no node: a list with limit=1, so the poll itself stays cheap
# (a full list of 10,000 pending pods every 0.2 s would cost the server more than binding).
some_pending() {
    curl -sk -H "Authorization: Bearer $token" \
        "$api/api/v1/pods?fieldSelector=spec.nodeName%3D&limit=1" | grep -q '"uid"'
}

echo "benches/control-plane.sh: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# 1. A backlog of pending pods, created over HTTP/2 before any node exists; then the
#    nodes register and the scheduler places the backlog.
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
t=$(now)
server_cpu0=$(cpu "$server")
# A /24 per node: 10.42.0.0/16 (k3s's default) has room for 256 nodes only.
"${SIM_BIN:-$bin}" simulate --kubeconfig "$KUBECONFIG" --nodes "$NODES" --cluster-cidr 10.0.0.0/8 \
    --metrics-interval 0 > "$work/simulate.log" 2>&1 &
sim=$!
pids+=("$sim")
while (( $(kubectl get nodes --no-headers 2>/dev/null | grep -c ' Ready ') < NODES )); do
    if ! kill -0 "$sim" 2>/dev/null; then
        echo "error: skiff simulate exited:" >&2
        tail -5 "$work/simulate.log" >&2
        exit 1
    fi
    sleep 1
done
nodes_s=$(minus "$(now)" "$t")
echo "$NODES nodes Ready after $nodes_s s" >&2

while some_pending; do sleep 0.2; done
t_bound=$(now)
server_cpu=$(minus "$(cpu "$server")" "$server_cpu0")
sim_cpu=$(cpu "$sim")
bound=$(kubectl get pods --field-selector spec.nodeName!= -o name | wc -l)
if (( bound < PODS )); then
    echo "error: only $bound of $PODS pods bound" >&2
    exit 1
fi
sched_s=$(minus "$t_bound" "$t")
sched_rate=$(awk -v n="$PODS" -v s="$sched_s" 'BEGIN {printf "%d", n / s}')
if [[ -n ${SCHED_ONLY:-} ]]; then
    echo "$PODS pods on $NODES nodes: ${sched_s} s = ${sched_rate} pods/s (nodes Ready after ${nodes_s} s; CPU in the phase: server ${server_cpu} s, simulate ${sim_cpu} s; load $(cut -d' ' -f1-3 /proc/loadavg))"
    exit 0
fi

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
- nodes: $NODES simulated (\`skiff simulate --metrics-interval 0\`)

| figure | result |
|---|---:|
| $PODS pending pods placed on $NODES nodes: \`skiff simulate\` start → last pod bound (nodes Ready after ${nodes_s} s) | **${sched_s} s = ${sched_rate} pods/s** |
| creating those $PODS pods over HTTP/2, 32 streams, no nodes yet | ${created_s} s |
| Deployment of $REPLICAS replicas, create → \`rollout status\` done | **${deploy_s} s** |
| scaling to $TOTAL pods in all, scale → \`rollout status\` done | ${fill_s} s |
| server RSS with $NODES nodes and $pods_now pods (peak) | **${server_rss}** (${server_hwm}) |
| \`skiff simulate\` RSS ($NODES nodes, $pods_now pods) | ${sim_rss} |
MD
