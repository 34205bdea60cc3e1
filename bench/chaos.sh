#!/usr/bin/env bash
# bench/chaos.sh — chaos under load (BENCHMARKS.md, "Chaos") in one command.
#
#   bench/chaos.sh [new TCP connections per second, default 50] [UDP flows, default 4]
#
# Builds anyedge and bench/cmd/chaos, which runs an edge and two regions as
# processes on 127.0.0.1 under a steady load and, in turn, SIGKILLs the
# preferred region and restarts it, SIGSTOPs it for 10 s, restarts the
# edge, and fills the disk of its flow logs (a 256 KiB tmpfs: root). It
# prints a Markdown table of failed and slowed connections per scenario and
# every log line at warning or above. About two minutes. Holds
# /work/bench.lock when it exists.
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/fleet.sh" chaos -rate "${1:-50}" -udp "${2:-4}"
