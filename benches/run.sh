#!/usr/bin/env bash
# Runs skiff's benchmark (docs/benchmarks.md): installs what it needs (etcd 3.4 from
# Debian's etcd-server; protoc and the protobuf well-known types for the etcd client's
# build), builds the release binaries with the `bench` feature and runs
# `skiff-bench all`, which prints a markdown report.
#
# Usage: ./benches/run.sh [skiff-bench options...]   e.g. --ops 1000 --repeat 1
# The report also goes to target/bench-report.md.
set -euo pipefail

cd "$(dirname "$0")/.."

need_pkgs=()
command -v etcd >/dev/null 2>&1 || need_pkgs+=(etcd-server)
command -v protoc >/dev/null 2>&1 || need_pkgs+=(protobuf-compiler)
# The well-known types (google/protobuf/*.proto) that etcd's protos import.
[[ -e /usr/include/google/protobuf/descriptor.proto ]] || need_pkgs+=(libprotobuf-dev)
if ((${#need_pkgs[@]})); then
    echo "benches/run.sh: installing ${need_pkgs[*]}" >&2
    sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >&2
    # On a systemd host the package starts its own etcd on 2379; the benchmark does not use
    # it (it starts etcd itself on random ports), but it would compete for the CPU.
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
        echo "benches/run.sh: note: the packaged etcd service is running; consider 'systemctl stop etcd'" >&2
    fi
fi

cargo build --release --features bench --bin skiff --bin skiff-bench >&2

echo "benches/run.sh: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), kernel $(uname -r)" >&2
mkdir -p target
./target/release/skiff-bench all "$@" | tee target/bench-report.md
