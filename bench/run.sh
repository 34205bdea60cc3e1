#!/usr/bin/env bash
# bench/run.sh — the TCP backbone benchmarks of BENCHMARKS.md in one command.
#
#   bench/run.sh [benchrun flags]      e.g. bench/run.sh -runs 5 -bulk 10s
#
# Builds anyedge and the bench helpers (bench/cmd/quicpipe, tcpprobe,
# benchrun) into a temporary directory, runs bench/cmd/benchrun, prints the
# Markdown table and writes it to bench/results/<UTC date and time>.md.
# Needs iperf3 and haproxy on PATH (Debian packages iperf3, haproxy).
# Every process started is stopped by PID on exit, error or Ctrl-C.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

for tool in go iperf3 haproxy; do
	command -v "$tool" >/dev/null || { echo "bench/run.sh: $tool not found on PATH" >&2; exit 1; }
done

# 10,000 idle flows need more than 10,000 descriptors per process.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 10240 ]; then
	echo "bench/run.sh: ulimit -n is $(ulimit -n); the idle-flow test needs 10240 (or pass -hold 0)" >&2
fi

bin=$(mktemp -d "${TMPDIR:-/tmp}/anyedge-bench-bin.XXXXXX")
benchpid=
cleanup() {
	if [ -n "$benchpid" ] && kill -0 "$benchpid" 2>/dev/null; then
		kill -TERM "$benchpid" 2>/dev/null || true
		wait "$benchpid" 2>/dev/null || true
	fi
	rm -rf "$bin"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "bench/run.sh: building into $bin" >&2
(cd "$repo" && go build -o "$bin/anyedge" ./cmd/anyedge \
	&& go build -o "$bin/quicpipe" ./bench/cmd/quicpipe \
	&& go build -o "$bin/tcpprobe" ./bench/cmd/tcpprobe \
	&& go build -o "$bin/benchrun" ./bench/cmd/benchrun)

mkdir -p "$repo/bench/results"
out="$repo/bench/results/$(date -u +%Y-%m-%dT%H%MZ).md"
"$bin/benchrun" -anyedge "$bin/anyedge" -quicpipe "$bin/quicpipe" -tcpprobe "$bin/tcpprobe" \
	-iperf3 "$(command -v iperf3)" -haproxy "$(command -v haproxy)" -out "$out" "$@" &
benchpid=$!
wait "$benchpid"
