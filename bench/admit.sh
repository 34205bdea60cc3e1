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
# alone. Prints every round, the median of each and the ratio. Holds /work/bench.lock when
# it exists, so that two benchmarks never run at once.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lock.sh"
repo=$(cd "$here/.." && pwd)
cd "$repo"
n=${1:-20000}
rounds=${2:-6}
bench_lock
bench_mark start
# One test binary run per round, so that the cases alternate (go test
# -count would run each case's rounds back to back).
go test -c -o "${TMPDIR:-/tmp}/admit.test.$$" ./edge/
trap 'rm -f "${TMPDIR:-/tmp}/admit.test.$$"' EXIT
out=$(for _ in $(seq "$rounds"); do
	(cd edge && "${TMPDIR:-/tmp}/admit.test.$$" -test.run '^$' -test.bench 'BenchmarkAcceptAdmission|BenchmarkGateAdmit' -test.benchtime "${n}x")
done)
echo "$out" | grep '^Benchmark'
echo "$out" | awk '
	function median(a, n,   i, j, t) {
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	/^BenchmarkAcceptAdmission\/no-list/ { a[++na] = $3 }
	/^BenchmarkAcceptAdmission\/allow-100k/ { b[++nb] = $3 }
	/^BenchmarkGateAdmit\/no-rules/ { c[++nc] = $3 }
	/^BenchmarkGateAdmit\/allow-100k-/ { d[++nd] = $3 }
	END {
		ma = median(a, na); mb = median(b, nb)
		printf "connections/s (median of %d rounds): no list %.0f, allow list of 100,000 prefixes %.0f (ratio %.3f)\n", na, 1e9/ma, 1e9/mb, ma/mb
		printf "admission step (median): no rules %.0f ns, 100,000-prefix allow list %.0f ns\n", median(c, nc), median(d, nd)
	}'
bench_mark end
