#!/bin/sh
# Real AWS JSON (tests/data/awsdata, see its README) through
# `vpcfwd --check-config`: every file alone, and every directory that holds
# *.json as one merged configuration, must load (warnings are fine; the two
# oddities of the data must give their warnings, checked at the end).
# Directories that are collections of unrelated examples (they reuse ids
# across files) are loaded file by file only.  None of the data is invalid,
# so no file is expected to be refused.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$(dirname "$here")}
VPCFWD=${VPCFWD:-${top_builddir:-$top_srcdir/build}/src/vpcfwd}
data=$top_srcdir/tests/data/awsdata

if [ ! -x "$VPCFWD" ]; then
	echo "FAIL: no vpcfwd at $VPCFWD (build it first)"
	exit 1
fi
if [ ! -d "$data" ]; then
	echo "FAIL: no $data"
	exit 1
fi

collections='
aws-cli
batfish/representation/aws
'

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

files=0
dirs=0
failed=0

# try PATH (relative to $data): must load (most files describe no
# interface: --allow-empty, the data is what is checked here)
try() {
	rc=0
	"$VPCFWD" --check-config --allow-empty -c "$1" >/dev/null 2>"$tmp/stderr" || rc=$?
	[ "$rc" -eq 0 ] && return
	echo "FAIL: $1 (exit $rc)"
	grep -v '^warning: ' "$tmp/stderr" | head -20
	failed=$((failed + 1))
}

cd "$data"
find . -name '*.json' -type f | sed 's|^\./||' | LC_ALL=C sort >"$tmp/files"
while IFS= read -r f; do
	files=$((files + 1))
	try "$f"
done <"$tmp/files"

sed 's|/[^/]*$||; s|^[^/]*\.json$|.|' "$tmp/files" | LC_ALL=C sort -u >"$tmp/dirs"
while IFS= read -r d; do
	if printf '%s\n' "$collections" | grep -qxF -- "$d"; then
		continue
	fi
	dirs=$((dirs + 1))
	try "$d"
done <"$tmp/dirs"

# the oddities: a typo'd address in describe-instances (the interface is
# dropped with a warning) and one group id reused by unrelated test groups
# that no interface uses (a warning; the first is kept)
for case in \
	'aws-cli/describe-instances.example1.json|"10-0-0-157" is not an IPv4 address; the interface is not taken from describe-instances' \
	'batfish/representation/aws/SecurityGroupTest.json|sg-0de0ddfa8a5a12348 is defined twice'; do
	f=${case%%|*}
	want=${case#*|}
	if ! "$VPCFWD" --check-config --allow-empty -c "$data/$f" 2>&1 | grep -F "warning:" | grep -qF "$want"; then
		echo "FAIL: $f: no warning containing: $want"
		failed=$((failed + 1))
	fi
done

echo "awsdata: $files files and $dirs directories checked, $failed failed"
[ "$files" -gt 0 ] && [ "$dirs" -gt 0 ] || { echo "FAIL: no data checked"; exit 1; }
[ "$failed" -eq 0 ]
