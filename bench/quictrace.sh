#!/usr/bin/env bash
# bench/quictrace.sh — one QUIC connection's congestion window through the
# WAN lab's emulated backbone, with and without forward error correction:
# the evidence for BENCHMARKS.md's "Forward error correction" section.
#
#   bench/quictrace.sh [quictrace flags]   e.g. bench/quictrace.sh -rtt 200ms -loss 0,0.1,1
#
# Runs as root (network namespaces, TUN devices). Builds
# bench/cmd/quictrace, holds /work/bench.lock (or $BENCH_LOCK), and writes
# the table to bench/results/quictrace-<UTC date and time>.md, the samples
# beside it as .json and the congestion windows drawn as .png. With
# QLOGDIR set, quic-go's qlogs of every connection go there too.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

[ "$(id -u)" = 0 ] || { echo "bench/quictrace.sh: needs root" >&2; exit 1; }

bin=$(mktemp -d "${TMPDIR:-/tmp}/anyedge-quictrace-bin.XXXXXX")
trap 'rm -rf "$bin"' EXIT
(cd "$repo" && go build -o "$bin/quictrace" ./bench/cmd/quictrace)

mkdir -p "$repo/bench/results"
base="$repo/bench/results/quictrace-$(date -u +%Y-%m-%dT%H%MZ)"
lock=${BENCH_LOCK:-/work/bench.lock}
flock "$lock" "$bin/quictrace" -out "$base.json" -plot "$base.png" "$@" | tee "$base.md"
