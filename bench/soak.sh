#!/usr/bin/env bash
# bench/soak.sh — the 30-minute soak of BENCHMARKS.md in one command.
#
#   bench/soak.sh [soak flags]      e.g. bench/soak.sh -duration 5m -tcp-rate 100
#
# Builds anyedge and bench/cmd/soak into a temporary directory and runs
# `anyedge dev` under a steady load of new TCP connections and UDP flows,
# printing RSS, goroutines, descriptors and threads every minute as a
# Markdown table (also written to bench/results/soak-<UTC time>.md). Not
# part of CI. It runs the quickstart with every port moved to 1NNNN (18080,
# 18053, 19180, the dashboard on 19190, …) so that it can run next to a
# quickstart or its test.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
bin=$(mktemp -d "${TMPDIR:-/tmp}/anyedge-soak-bin.XXXXXX")
trap 'rm -rf "$bin"' EXIT
(cd "$repo" && go build -o "$bin/anyedge" ./cmd/anyedge && go build -o "$bin/soak" ./bench/cmd/soak)
mkdir -p "$repo/bench/results"
out="$repo/bench/results/soak-$(date -u +%Y-%m-%dT%H%MZ).md"
# Every port of the quickstart lies in 7000–9999: prefix each with 1.
sed -E 's/\b([7-9][0-9]{3})\b/1\1/g' "$repo/configs/quickstart.yaml" >"$bin/soak.yaml"
"$bin/soak" -bin "$bin/anyedge" -config "$bin/soak.yaml" -tcp 127.0.0.1:18080 -udp 127.0.0.1:18053 \
	-admin 127.0.0.1:19180 -dashboard 127.0.0.1:19190 "$@" | tee "$out"
echo "written to $out" >&2
