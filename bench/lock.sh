# bench/lock.sh — sourced by the benchmark scripts: one rule for taking the
# benchmark lock and for framing a run with the time and load average.

# bench_lock takes $BENCH_LOCK (default /work/bench.lock) when it exists, on
# descriptor 9, for the rest of the script: two benchmarks never run at once.
bench_lock() {
	local lock=${BENCH_LOCK:-/work/bench.lock}
	if [ -e "$lock" ] && command -v flock >/dev/null; then
		exec 9>>"$lock"
		flock 9
	fi
}

# bench_mark start|end prints a comment line with the UTC time, and the
# CPUs and load average, for the report.
bench_mark() {
	local cpus=""
	[ "$1" = start ] && cpus=", $(nproc) CPUs"
	echo "# $1 $(date -u +%Y-%m-%dT%H:%M:%SZ)$cpus, load average $(cut -d' ' -f1-3 /proc/loadavg)"
}
