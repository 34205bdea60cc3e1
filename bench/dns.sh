#!/usr/bin/env bash
# bench/dns.sh — the DNS figures of BENCHMARKS.md ("DNS") in one command.
#
#   bench/dns.sh [clients, default 64] [seconds per round, default 5] [rounds, default 5]
#
# Runs bench/cmd/dnsbench: anyedge's edge/dns (zone lookup, EDNS, rate
# limiting on at a rate never reached) and a bare miekg/dns server answering
# one fixed A record, both on 127.0.0.1 in one process, alternating rounds of
# closed-loop UDP clients. Holds /work/bench.lock when it exists, so that two
# benchmarks never run at once.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lock.sh"
repo=$(cd "$here/.." && pwd)
cd "$repo"
go build -o "${TMPDIR:-/tmp}/dnsbench.$$" ./bench/cmd/dnsbench
trap 'rm -f "${TMPDIR:-/tmp}/dnsbench.$$"' EXIT
bin="${TMPDIR:-/tmp}/dnsbench.$$"
measure() {
	bench_mark start
	"$bin" -clients "${1:-64}" -duration "${2:-5}s" -rounds "${3:-5}"
	bench_mark end
}
bench_lock
measure "$@"
