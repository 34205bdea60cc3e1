#!/usr/bin/env bash
# bench/config.sh — the config figures of BENCHMARKS.md ("Config") in one command.
#
#   bench/config.sh [-base REV] [iterations per shape, default 5]
#
# Builds control/config's test binary and runs BenchmarkLoad5MB, one shape
# at a time: Load on 5 MB documents of misspelt keys (one flat mapping, one
# nested mapping, keys at three depths), of values of the wrong type, of
# values that fail validation, of keys given twice, a valid one, and the
# valid documents with very long lists (wide-*). Each shape runs n loads in
# one process (time and allocation per load), then once more on its own
# under /usr/bin/time for the peak RSS of the process (generating the
# document included). Prints a Markdown table.
#
# With -base REV the same benchmark (this tree's load_bench_test.go, if it
# compiles against REV) is also built from REV (in a temporary git
# worktree) and the two binaries run alternately, shape by shape, so
# that a shared machine's load falls on both alike: the table then has
# both figures and the ratio REV / this tree. A shape that REV's benchmark
# lacks shows "–".
#
# Holds /work/bench.lock when it exists, so that two benchmarks never run
# at once.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lock.sh"
repo=$(cd "$here/.." && pwd)
base=""
if [ "${1:-}" = -base ]; then
	base=$2
	shift 2
fi
n=${1:-5}
[ -x /usr/bin/time ] || { echo "bench/config.sh: /usr/bin/time not found (Debian package time)" >&2; exit 1; }
tmp=$(mktemp -d)
cleanup() {
	[ -z "$base" ] || git -C "$repo" worktree remove --force "$tmp/base" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
cd "$repo"
go test -c -o "$tmp/this.test" ./control/config
bins=(this)
if [ -n "$base" ]; then
	git worktree add --detach "$tmp/base" "$base" >/dev/null 2>&1
	# The same benchmark on both sides: this tree's benchmark file, built
	# against REV's package when it compiles there (else REV's own).
	cp control/config/load_bench_test.go "$tmp/base/control/config/" 2>/dev/null || true
	if ! (cd "$tmp/base" && go test -c -o "$tmp/base.test" ./control/config 2>/dev/null); then
		git -C "$tmp/base" checkout -- control/config/load_bench_test.go
		(cd "$tmp/base" && go test -c -o "$tmp/base.test" ./control/config)
	fi
	bins=(base this)
fi
bench_lock
bench_mark start
[ -z "$base" ] || echo "# base: $base ($(git rev-parse --short "$base")), this: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- control/config || echo ' + uncommitted changes')"
cd control/config

# measure BIN SHAPE prints "0.81s 249MB 158MB": time and allocation per load, peak RSS;
# or "– – –" when BIN's benchmark has no such shape.
measure() {
	local out
	out=$("$tmp/$1.test" -test.run '^$' -test.bench "Load5MB/$2\$" -test.benchtime "${n}x" | grep '^BenchmarkLoad5MB/' || true)
	if [ -z "$out" ]; then
		echo "– – –"
		return
	fi
	echo "$1 $out" >>"$tmp/raw.txt"
	/usr/bin/time -f "%M" -o "$tmp/rss" "$tmp/$1.test" -test.run '^$' -test.bench "Load5MB/$2\$" -test.benchtime 1x >/dev/null
	echo "$out" | awk -v rss="$(cat "$tmp/rss")" '{ printf "%.2fs %.0fMB %.0fMB\n", $3/1e9, $7/1e6, rss/1024 }'
}

shapes="flat-unknown-keys nested-unknown-keys unknown-keys-everywhere type-errors invalid-values duplicate-keys valid wide-listeners wide-prefixes wide-overrides"
if [ -z "$base" ]; then
	echo "| document (5 MB) | time per load | allocated per load | peak RSS |"
	echo "|---|---|---|---|"
else
	echo "| document (5 MB) | time per load, base → this | ratio | allocated per load, base → this | peak RSS, base → this |"
	echo "|---|---|---|---|---|"
fi
for shape in $shapes; do
	if [ -z "$base" ]; then
		read -r s a r < <(measure this "$shape")
		echo "| $shape | $s | $a | $r |"
		continue
	fi
	read -r bs ba br < <(measure base "$shape")
	read -r s a r < <(measure this "$shape")
	ratio=$(awk -v b="$bs" -v t="$s" 'BEGIN { if (b+0 > 0 && t+0 > 0) printf "%.2f×", b/t; else print "–" }')
	echo "| $shape | $bs → $s | $ratio | $ba → $a | $br → $r |"
done
echo
echo "# raw benchmark lines:"
cat "$tmp/raw.txt"
bench_mark end
