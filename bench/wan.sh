#!/usr/bin/env bash
# bench/wan.sh — `make bench-wan`: the WAN matrix of BENCHMARKS.md in one command.
#
#   bench/wan.sh [wanbench flags]     e.g. bench/wan.sh -rtt 200ms -runs 3
#
# Runs as root (network namespaces, TUN devices). Builds anyedge and
# bench/cmd/wanbench into a temporary directory, holds /work/bench.lock (or
# $BENCH_LOCK) so that two benchmarks never run at once, and writes the
# report to bench/results/wan-<UTC date and time>.md (raw samples beside it
# as .json). Needs haproxy and curl on PATH. The lab and every process are
# removed at the end, on error and on Ctrl-C.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

[ "$(id -u)" = 0 ] || { echo "bench/wan.sh: needs root" >&2; exit 1; }
for tool in go haproxy curl ip; do
	command -v "$tool" >/dev/null || { echo "bench/wan.sh: $tool not found on PATH" >&2; exit 1; }
done

bin=$(mktemp -d "${TMPDIR:-/tmp}/anyedge-wan-bin.XXXXXX")
trap 'rm -rf "$bin"' EXIT

echo "bench/wan.sh: building into $bin" >&2
(cd "$repo" && go build -o "$bin/anyedge" ./cmd/anyedge && go build -o "$bin/wanbench" ./bench/cmd/wanbench)

mkdir -p "$repo/bench/results"
out="$repo/bench/results/wan-$(date -u +%Y-%m-%dT%H%MZ).md"
lock=${BENCH_LOCK:-/work/bench.lock}
flock "$lock" "$bin/wanbench" -anyedge "$bin/anyedge" -out "$out" "$@"
