#!/bin/sh
# Replays the fuzzing corpora through the fuzz targets built without
# libFuzzer (tests/fuzz/standalone.c): every seed and every input a fuzzing
# run kept must still go through cleanly, under the sanitizers when the
# build has them.
set -u

here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$(dirname "$here")}
top_builddir=${top_builddir:-$top_srcdir}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

pass=0
fail=0
for target in packet config flowlog ctl pcap logformat nfq state sync gzstream; do
	bin=$top_builddir/tests/fuzz/replay_$target
	corpus=$top_srcdir/tests/fuzz/corpus/$target
	if [ ! -x "$bin" ]; then
		echo "FAIL: $bin not built"
		fail=$((fail + 1))
		continue
	fi
	if [ ! -d "$corpus" ] || [ -z "$(ls -A "$corpus")" ]; then
		echo "FAIL: no seed corpus at $corpus"
		fail=$((fail + 1))
		continue
	fi
	"$bin" "$corpus" >"$tmp/out" 2>&1
	rc=$?
	cat "$tmp/out"
	if [ "$rc" -ne 0 ]; then
		echo "FAIL: replay_$target exited $rc"
		fail=$((fail + 1))
	elif grep -q -e 'runtime error' -e 'AddressSanitizer' -e 'LeakSanitizer' "$tmp/out"; then
		echo "FAIL: replay_$target: sanitizer report"
		fail=$((fail + 1))
	else
		pass=$((pass + 1))
	fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
