#!/usr/bin/env bash
# bench/observe.sh — what metrics and flow logs cost (BENCHMARKS.md
# "Metrics and flow logs") in one command.
#
#   bench/observe.sh [seconds per run, default 3] [rounds, default 5]
#
# Runs bench's TestObservabilityOverhead: two in-process fleets (an edge and
# a region each, real QUIC backbone on 127.0.0.1), one with metrics and
# flow logs off (nobody scrapes, no flow log), one with them on (/metrics
# and /status read every second, every flow written to a file), measured
# in interleaved runs: new TCP connections per second, TCP throughput and
# UDP packets per second. Prints the Markdown table and writes it to
# bench/results/<UTC date and time>-observe.md. Holds /work/bench.lock when
# it exists, so that two benchmarks never run at once.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lock.sh"
repo=$(cd "$here/.." && pwd)
mkdir -p "$here/results"
out="$here/results/$(date -u +%Y-%m-%dT%H%MZ)-observe.md"
cd "$repo"
run() {
	ANYEDGE_OBSERVE_BENCH=1 ANYEDGE_OBSERVE_SECS="${1:-3}" ANYEDGE_OBSERVE_ROUNDS="${2:-5}" \
		go test -count=1 -v -run '^TestObservabilityOverhead$' -timeout 30m ./bench/
}
bench_lock
log=$(mktemp "${TMPDIR:-/tmp}/anyedge-observe.XXXXXX")
trap 'rm -f "$log"' EXIT
if ! run "$@" >"$log" 2>&1; then
	cat "$log" >&2
	echo "bench/observe.sh: FAILED" >&2
	exit 1
fi
grep '^|' "$log" | tee "$out"
echo "bench/observe.sh: written to $out" >&2
