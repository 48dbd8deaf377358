#!/bin/sh
# The man pages must be clean under mandoc's linter (warnings and worse).
set -eu
top=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
command -v mandoc >/dev/null 2>&1 || { echo "mandoc not installed: skipped"; exit 77; }
fail=0
for page in "$top"/man/*.[1-8]; do
	if out=$(mandoc -T lint -W warning "$page" 2>&1) && [ -z "$out" ]; then
		echo "ok   $(basename "$page")"
	else
		echo "FAIL $(basename "$page")"; echo "$out"; fail=1
	fi
done
# one date for the set, kept in one place: vpcfwd.8 (the others must agree)
want=$(sed -n 's/^\.Dd //p' "$top/man/vpcfwd.8")
for page in "$top"/man/*.[1-8]; do
	got=$(sed -n 's/^\.Dd //p' "$page")
	if [ "$got" = "$want" ]; then
		echo "ok   $(basename "$page") dated $got"
	else
		echo "FAIL $(basename "$page") dated '$got', vpcfwd.8 '$want'"; fail=1
	fi
done
exit $fail
