#!/usr/bin/env bash
# bench/config.sh — the config figures of BENCHMARKS.md ("Config") in one command.
#
#   bench/config.sh [iterations per shape, default 5]
#
# Builds control/config's test binary and runs BenchmarkLoad5MB: Load on
# 5 MB documents of misspelt keys (one flat mapping, one nested mapping,
# keys at three depths), of values of the wrong type, of values that fail
# validation, and a valid one. Then runs each shape once more on its own
# under /usr/bin/time to read the peak RSS of the process (generating the
# document included). Prints both as a Markdown table.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
n=${1:-5}
[ -x /usr/bin/time ] || { echo "bench/config.sh: /usr/bin/time not found (Debian package time)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$repo"
go test -c -o "$tmp/config.test" ./control/config
cd control/config
"$tmp/config.test" -test.run '^$' -test.bench 'Load5MB' -test.benchtime "${n}x" | tee "$tmp/bench.txt"
echo
echo "| document (5 MB) | time per load | allocated per load | peak RSS |"
echo "|---|---|---|---|"
for shape in flat-unknown-keys nested-unknown-keys unknown-keys-everywhere type-errors invalid-values valid; do
	/usr/bin/time -f "%M" -o "$tmp/rss" "$tmp/config.test" -test.run '^$' -test.bench "Load5MB/$shape\$" -test.benchtime 1x >/dev/null
	awk -v s="$shape" -v rss="$(cat "$tmp/rss")" '$1 ~ "/"s"-" {
		printf "| %s | %.2f s | %.0f MB | %.0f MB |\n", s, $3/1e9, $7/1e6, rss/1024 }' "$tmp/bench.txt"
done
