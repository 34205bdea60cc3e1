#!/usr/bin/env bash
# bench/flowmem.sh — memory per idle flow (BENCHMARKS.md, "Memory per
# flow") in one command.
#
#   bench/flowmem.sh [flows, default 100000]
#
# Builds anyedge and bench/cmd/flowmem, which runs `anyedge region` and
# `anyedge edge` as processes of their own on 127.0.0.1 and reads their
# VmRSS before and after N idle TCP flows, then N UDP flows (fresh
# processes each). Run as root: it raises RLIMIT_NOFILE to 1<<20 (with
# CAP_SYS_RESOURCE; without it, the hard limit caps the flows and says
# so). Holds /work/bench.lock when it exists.
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/fleet.sh" flowmem -flows "${1:-100000}"
