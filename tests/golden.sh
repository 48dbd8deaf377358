#!/bin/sh
# Golden tests of configuration loading.
#   tests/golden/bad/NN-name.json + NN-name.err: the "error: ..." and
#     "warning: ..." lines `vpcfwd --check-config -c NN-name.json` prints on
#     stderr (run from inside tests/golden/bad, so file names are bare).
#     Exit status must be 1 when the .err has an error line, else 0.
#   tests/golden/good/NN.json + NN.out: `vpcfwd --print-config -c NN.json`
#     on stdout, exit 0.  A .json without its .out fails (GOLDEN_UPDATE
#     writes it).  No vpcfwd built fails: nothing would be checked.
# To accept new output after a deliberate change (or write the missing .out
# files), then review the result with git diff:
#   GOLDEN_UPDATE=1 tests/golden.sh
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$(dirname "$here")}
VPCFWD=${VPCFWD:-${top_builddir:-$top_srcdir/build}/src/vpcfwd}
golden=$top_srcdir/tests/golden

if [ ! -x "$VPCFWD" ]; then
	echo "FAIL: no vpcfwd at $VPCFWD (build it first)"
	exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

pass=0
fail=0

# check NAME WANT GOT EXPECTED_RC RC
check() {
	if [ "${GOLDEN_UPDATE:-}" = 1 ]; then
		cp "$3" "$2"
	fi
	if [ "$5" -ne "$4" ]; then
		echo "FAIL: $1: exit status $5, expected $4"
		cat "$3"
		fail=$((fail + 1))
	elif ! diff -u "$2" "$3" >"$tmp/diff"; then
		echo "FAIL: $1: output differs from $(basename "$2") (- expected, + got):"
		cat "$tmp/diff"
		fail=$((fail + 1))
	else
		pass=$((pass + 1))
	fi
}

cd "$golden/bad"
for json in *.json; do
	[ -e "$json" ] || continue
	err=${json%.json}.err
	if [ ! -f "$err" ]; then
		echo "FAIL: bad/$json has no $err"
		fail=$((fail + 1))
		continue
	fi
	rc=0
	"$VPCFWD" --check-config -c "$json" >/dev/null 2>"$tmp/stderr" || rc=$?
	grep -E '^(error|warning): ' "$tmp/stderr" >"$tmp/got" || true
	want_rc=0
	if grep -q '^error: ' "$err"; then
		want_rc=1
	fi
	check "bad/$json" "$err" "$tmp/got" "$want_rc" "$rc"
done

if [ -d "$golden/good" ]; then
	cd "$golden/good"
	for json in *.json; do
		[ -e "$json" ] || continue
		out=${json%.json}.out
		if [ ! -f "$out" ] && [ "${GOLDEN_UPDATE:-}" != 1 ]; then
			echo "FAIL: good/$json has no $out (GOLDEN_UPDATE=1 writes it)"
			fail=$((fail + 1))
			continue
		fi
		rc=0
		"$VPCFWD" --print-config -c "$json" >"$tmp/got" 2>"$tmp/stderr" || rc=$?
		if [ "$rc" -ne 0 ]; then
			cat "$tmp/stderr" >>"$tmp/got"
		fi
		check "good/$json" "$out" "$tmp/got" 0 "$rc"
	done
fi

echo "golden: $pass passed, $fail failed"
[ "$pass" -gt 0 ] || { echo "FAIL: no golden case ran"; exit 1; }
[ "$fail" -eq 0 ]
