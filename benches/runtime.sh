#!/usr/bin/env bash
# Container lifecycle benchmark (docs/benchmarks.md): create + start + wait + delete of
# the same trivial container (`true` in a busybox-static rootfs), N times in a row,
# through skiff's embedded runtime (`skiff runtime-bench`: one `skiff shim` re-exec per
# container, libcontainer inside) and through Debian's runc and crun (`<rt> run` on the
# identical OCI bundle, written by skiff's own spec translation), in the same run.
# Prints a markdown table with medians and the ratio to skiff.
#
#   sudo benches/runtime.sh            # N=100, builds `cargo build --release` first
#   N=20 SKIFF=target/debug/skiff sudo -E benches/runtime.sh   # a prebuilt binary
#
# Needs root (namespaces, cgroups). Installs runc, crun and busybox-static with apt-get
# if missing. Touches no network configuration (each container gets a new, empty netns).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-100}
if [[ $(id -u) -ne 0 ]]; then
  echo "error: run as root (containers need namespaces and cgroups)" >&2
  exit 1
fi

need=()
command -v runc >/dev/null || need+=(runc)
command -v crun >/dev/null || need+=(crun)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
command -v python3 >/dev/null || need+=(python3)
if ((${#need[@]})); then
  echo "==> installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
fi

if [[ -z ${SKIFF:-} ]]; then
  echo "==> cargo build --release" >&2
  cargo build --release --bin skiff >&2
  SKIFF="${CARGO_TARGET_DIR:-target}/release/skiff"
fi
SKIFF=$(realpath "$SKIFF")

work=$(mktemp -d /tmp/skiff-rtbench.XXXXXX)
cleanup() {
  for rt in runc crun; do
    "$rt" --root "$work/$rt-state" delete -f bench-"$rt" >/dev/null 2>&1 || true
  done
  for d in /sys/fs/cgroup/*/skiff-bench /sys/fs/cgroup/skiff-bench; do
    [[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

rootfs="$work/rootfs"
mkdir -p "$rootfs"/{bin,etc,tmp,proc,sys,dev}
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
  [[ $applet == busybox ]] || ln -s busybox "$rootfs/bin/$applet"
done

# The same bundle for runc and crun as skiff runs (same namespaces, mounts, caps).
"$SKIFF" runtime-bench --rootfs "$rootfs" --run-dir "$work/skiff-run" --bundle-out "$work/bundle"

cat >"$work/timeit.py" <<'PY'
import subprocess, sys, time
n = int(sys.argv[1]); cmd = sys.argv[2:]
ts = []
for _ in range(n):
    t = time.perf_counter()
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ts.append((time.perf_counter() - t) * 1e3)
    if r.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({r.returncode}): {r.stderr.decode(errors='replace').strip()}")
ts.sort()
print(f"{ts[n // 2]:.2f} {ts[min(n * 9 // 10, n - 1)]:.2f} {sum(ts) / n:.2f}")
PY
timeit() { # N command... -> "median p90 mean" in ms
  python3 "$work/timeit.py" "$@"
}
# crun (Debian's 1.8) refuses a cgroup v1 "hybrid" host whose v2 hierarchy has any
# controller; in a private mount namespace without the v2 mount it sees plain v1. The
# host's mounts are not changed.
timeit_crun() {
  if mountpoint -q /sys/fs/cgroup/unified; then
    unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified && exec python3 "$@"' sh "$work/timeit.py" "$@"
  else
    timeit "$@"
  fi
}

echo "==> skiff ($N runs)" >&2
line=$("$SKIFF" runtime-bench --rootfs "$rootfs" --run-dir "$work/skiff-run" -n "$N")
skiff_med=$(sed -E 's/.*median_ms=([0-9.]+).*/\1/' <<<"$line")
skiff_p90=$(sed -E 's/.*p90_ms=([0-9.]+).*/\1/' <<<"$line")
skiff_mean=$(sed -E 's/.*mean_ms=([0-9.]+).*/\1/' <<<"$line")

declare -A med p90 mean ver
for rt in runc crun; do
  echo "==> $rt ($N runs)" >&2
  t=timeit
  [[ $rt == crun ]] && t=timeit_crun
  read -r med[$rt] p90[$rt] mean[$rt] < <($t "$N" "$rt" --root "$work/$rt-state" run --bundle "$work/bundle" bench-"$rt")
  ver[$rt]=$("$rt" --version | head -1)
done

ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
echo
echo "Container lifecycle (create+start+wait+delete of \`true\`), N=$N, $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%d):"
echo
echo "| runtime | median ms | p90 ms | mean ms | median / skiff |"
echo "|---|---|---|---|---|"
echo "| skiff (shim + libcontainer 0.7, $(basename "$(dirname "$SKIFF")")) | $skiff_med | $skiff_p90 | $skiff_mean | 1.00 |"
for rt in runc crun; do
  echo "| ${ver[$rt]} | ${med[$rt]} | ${p90[$rt]} | ${mean[$rt]} | $(ratio "${med[$rt]}" "$skiff_med") |"
done
