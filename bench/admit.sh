#!/usr/bin/env bash
# bench/admit.sh — the admission figures of BENCHMARKS.md ("Admission") in
# one command.
#
#   bench/admit.sh [connections per round, default 20000] [rounds, default 6]
#
# Runs BenchmarkAcceptAdmission (edge): whole TCP connections per second on
# one listener on 127.0.0.1 — connect, accept, admission, no route, reset —
# with no access list and with an allow list of 100,000 prefixes; the two
# alternate within each round. Then BenchmarkGateAdmit, the admission step
# alone. Prints the mean of each and the ratio. Holds /work/bench.lock when
# it exists, so that two benchmarks never run at once.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cd "$repo"
n=${1:-20000}
rounds=${2:-6}
if [ -e /work/bench.lock ]; then
	exec 9>>/work/bench.lock
	flock 9
fi
echo "# start $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
out=$(go test -run '^$' -bench 'BenchmarkAcceptAdmission|BenchmarkGateAdmit' -benchtime "${n}x" -count "$rounds" ./edge/)
echo "$out" | grep '^Benchmark'
echo "$out" | awk '
	/^BenchmarkAcceptAdmission\/no-list/ { a += $3; na++ }
	/^BenchmarkAcceptAdmission\/allow-100k/ { b += $3; nb++ }
	/^BenchmarkGateAdmit\/no-rules/ { c += $3; nc++ }
	/^BenchmarkGateAdmit\/allow-100k-/ { d += $3; nd++ }
	END {
		printf "connections/s: no list %.0f, allow list of 100,000 prefixes %.0f (ratio %.3f)\n", 1e9/(a/na), 1e9/(b/nb), (a/na)/(b/nb)
		printf "admission step: no rules %.0f ns, 100,000-prefix allow list %.0f ns\n", c/nc, d/nd
	}'
echo "# end $(date -u +%Y-%m-%dT%H:%M:%SZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
