#!/usr/bin/env bash
# bench/udp.sh — the UDP figures of BENCHMARKS.md ("UDP") in one command.
#
#   bench/udp.sh [seconds per iperf3 run, default 3]
#
# Runs edge/udp's TestUDPBenchmark: iperf3 -u directly and through anyedge
# (one edge and one region in the test process, real QUIC backbone on
# 127.0.0.1), 1200-byte payloads at rising rates until loss reaches 1 %,
# then 64-byte payloads; one flow and 64 flows (-P 64); -w 4M throughout.
# Prints the Markdown table and writes a CPU profile of a 500 Mbit/s anyedge
# run to bench/results/udp-cpu.pprof (read it with
# `go tool pprof -top bench/results/udp-cpu.pprof`). Needs iperf3 on PATH.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
command -v iperf3 >/dev/null || { echo "bench/udp.sh: iperf3 not found on PATH" >&2; exit 1; }
mkdir -p "$here/results"
cd "$repo"
ANYEDGE_UDP_BENCH=1 ANYEDGE_UDP_BENCH_SECS="${1:-3}" ANYEDGE_UDP_PROFILE="$here/results/udp-cpu.pprof" \
	go test -count=1 -run '^TestUDPBenchmark$' -v -timeout 30m ./edge/udp/
