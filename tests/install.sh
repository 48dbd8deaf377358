#!/bin/bash
# make install into a temporary DESTDIR puts every file where it belongs,
# and make uninstall takes them all away again.
set -u
top_builddir=${top_builddir:-$(cd "$(dirname "$0")/.." && pwd)}
MAKE=${MAKE:-make}
[ -f "$top_builddir/Makefile" ] || { echo "install: no Makefile in $top_builddir, skipped"; exit 77; }
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
fails=0
# (a clean environment: a parent make's MAKEFLAGS would add "Entering directory")
var() { env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL "$MAKE" -s -C "$top_builddir" --no-print-directory print-var VAR="$1"; }

"$MAKE" -s -C "$top_builddir" install DESTDIR="$D" >"$D.log" 2>&1 ||
	{ cat "$D.log"; rm -f "$D.log"; echo "FAIL: make install"; exit 1; }
rm -f "$D.log"
sbindir=$(var sbindir) sysconfdir=$(var sysconfdir) mandir=$(var mandir)
unitdir=$(var systemdsystemunitdir) compdir=$(var bashcompletiondir)
for f in "$sbindir/vpcfwd:x" "$sbindir/vpcfwctl:x" "$unitdir/vpcfwd.service:f" \
	 "$mandir/man8/vpcfwd.8:f" "$mandir/man8/vpcfwctl.8:f" "$mandir/man5/vpcfw.conf.5:f" \
	 "$compdir/vpcfwctl:f" "$sysconfdir/vpcfw/examples/three-tier/40-security-groups.json:f" \
	 "$sysconfdir/vpcfw/examples/three-tier.pcap:f"; do
	if [ -"${f##*:}" "$D${f%:*}" ]; then echo "PASS: installed ${f%:*}"
	else echo "FAIL: not installed: ${f%:*}"; fails=$((fails + 1)); fi
done
grep -q "^ExecStart=$sbindir/vpcfwd -c $sysconfdir/vpcfw\$" "$D$unitdir/vpcfwd.service" &&
	echo "PASS: the unit names the installed paths" ||
	{ echo "FAIL: unit: $(grep ExecStart= "$D$unitdir/vpcfwd.service")"; fails=$((fails + 1)); }
"$D$sbindir/vpcfwd" -c "$D$sysconfdir/vpcfw/examples/three-tier" --check-config >/dev/null 2>&1 &&
	echo "PASS: the installed example is valid" ||
	{ echo "FAIL: the installed example is refused"; fails=$((fails + 1)); }
"$MAKE" -s -C "$top_builddir" uninstall DESTDIR="$D" >/dev/null 2>&1
left=$(find "$D" -type f | sed "s|^$D||")
[ -z "$left" ] && echo "PASS: make uninstall removes every file" ||
	{ echo "FAIL: left after uninstall: $left"; fails=$((fails + 1)); }
exit $((fails ? 1 : 0))
