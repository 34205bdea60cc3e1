#!/usr/bin/env bash
# bench/fleet.sh TOOL [ARGS…] — builds anyedge and bench/cmd/TOOL, takes
# /work/bench.lock when it exists (so that two benchmarks never run at
# once), and runs TOOL -bin ANYEDGE ARGS…, framed by the time and load
# average. bench/flowmem.sh and bench/chaos.sh call it.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lock.sh"
repo=$(cd "$here/.." && pwd)
cd "$repo"
tool=$1
shift
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/anyedge" ./cmd/anyedge
go build -o "$tmp/$tool" "./bench/cmd/$tool"
bench_lock
bench_mark start
"$tmp/$tool" -bin "$tmp/anyedge" "$@"
bench_mark end
