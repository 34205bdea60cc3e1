#!/usr/bin/env bash
# bench/reload.sh — the "Reload under load" figures of BENCHMARKS.md in one
# command.
#
#   bench/reload.sh [connections per case and round, default 20000] [rounds, default 6]
#
# Runs BenchmarkReloadUnderLoad (bench/reload_test.go): an edge and a region
# in one process, parallel clients opening new flows (connect, echo one
# byte, close), with no reload and with both nodes reloading every 50 ms
# (weights changed, a second listener bound and closed, in turn); the two
# cases alternate within each round. Prints each run, then the mean
# connections per second of each case, their ratio, and every failed
# connection. Holds /work/bench.lock when it exists, so that two
# benchmarks never run at once.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lock.sh"
repo=$(cd "$here/.." && pwd)
cd "$repo"
n=${1:-20000}
rounds=${2:-6}
bench_lock
bench_mark start
out=$(go test -run '^$' -bench 'BenchmarkReloadUnderLoad' -benchtime "${n}x" -count "$rounds" ./bench/)
echo "$out" | grep '^BenchmarkReloadUnderLoad'
echo "$out" | awk '
	function field(name,   i) { for (i = 1; i <= NF; i++) if ($(i+1) == name) return $i; return 0 }
	/^BenchmarkReloadUnderLoad\/no-reload/ { a += field("conns/s"); fa += field("failed"); na++ }
	/^BenchmarkReloadUnderLoad\/reload-every/ { b += field("conns/s"); fb += field("failed"); r += field("reloads"); nb++ }
	END {
		printf "connections/s: no reload %.0f, reloading every 50 ms %.0f (ratio %.3f)\n", a/na, b/nb, (b/nb)/(a/na)
		printf "failed connections: no reload %d, reloading %d; reloads applied during the runs: %d\n", fa, fb, r
	}'
bench_mark end
