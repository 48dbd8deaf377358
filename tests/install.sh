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
sbindir=$(var sbindir) bindir=$(var bindir) sysconfdir=$(var sysconfdir) mandir=$(var mandir)
docdir=$(var docdir) unitdir=$(var systemdsystemunitdir) compdir=$(var bashcompletiondir)
# Debian's layout (tests/deb.sh checks the package's): vpcfwctl on every
# user's PATH, examples as documentation, only the daemon's settings in
# $sysconfdir/vpcfw
for f in "$sbindir/vpcfwd:x" "$bindir/vpcfwctl:x" "$unitdir/vpcfwd.service:f" \
	 "$mandir/man8/vpcfwd.8:f" "$mandir/man8/vpcfwctl.8:f" "$sbindir/vpcfw-lab:x" "$mandir/man8/vpcfw-lab.8:f" "$mandir/man5/vpcfw.conf.5:f" \
	 "$compdir/vpcfwctl:f" "$docdir/examples/three-tier/40-security-groups.json:f" \
	 "$docdir/examples/three-tier.pcap:f" "$sysconfdir/vpcfw/90-vpcfw.json:f" \
	 "$sbindir/vpcfw-sync:x" "$mandir/man8/vpcfw-sync.8:f" "$unitdir/vpcfw-sync.service:f" \
	 "$unitdir/vpcfw-sync.timer:f" "$docdir/examples/offload/vpcfw-offload-iptables:x" \
	 "$docdir/examples/offload/vpcfw-offload.nft:f"; do
	if [ -"${f##*:}" "$D${f%:*}" ]; then echo "PASS: installed ${f%:*}"
	else echo "FAIL: not installed: ${f%:*}"; fails=$((fails + 1)); fi
done
sysusersdir=$(var sysusersdir)
[ -f "$D$sysusersdir/vpcfw.conf" ] && grep -q '^u vpcfw ' "$D$sysusersdir/vpcfw.conf" &&
	echo "PASS: installed $sysusersdir/vpcfw.conf (the user and group vpcfw)" ||
	{ echo "FAIL: no sysusers.d/vpcfw.conf"; fails=$((fails + 1)); }
# issue #12: flow logs and metrics readable by the group vpcfw, a watchdog
for l in User=vpcfw Group=vpcfw UMask=0027 LogsDirectory=vpcfw LogsDirectoryMode=0750 \
	 WatchdogSec=30s; do
	grep -qx "$l" "$D$unitdir/vpcfwd.service" && echo "PASS: unit: $l" ||
		{ echo "FAIL: unit lacks $l"; fails=$((fails + 1)); }
done
! grep -q '^DynamicUser=yes' "$D$unitdir/vpcfwd.service" &&
	echo "PASS: unit: no DynamicUser (its logs would be in /var/log/private, 0700)" ||
	{ echo "FAIL: unit: DynamicUser=yes"; fails=$((fails + 1)); }
if command -v systemd-analyze >/dev/null; then
	# the unit and the node_exporter drop-in as systemd parses them (an
	# unknown or misspelt setting is an error); the binaries at the paths
	# they name are the installed ones
	mkdir -p "$D/verify/vpcfwd.service.d"
	sed "s|$sbindir/|$D$sbindir/|g" "$D$unitdir/vpcfwd.service" >"$D/verify/vpcfwd.service"
	cp "$(dirname "$0")/../contrib/systemd/vpcfwd.service.d/node-exporter.conf" "$D/verify/vpcfwd.service.d/"
	if out=$(SYSTEMD_UNIT_PATH="$D/verify:" systemd-analyze verify --man=no "$D/verify/vpcfwd.service" 2>&1) &&
	   ! echo "$out" | grep -qi 'unknown\|ignoring'; then
		echo "PASS: systemd-analyze verify: the unit and the node_exporter drop-in"
	else
		echo "FAIL: systemd-analyze verify: $out"; fails=$((fails + 1))
	fi
	# vpcfw-sync's service and timer
	sed "s|$sbindir/|$D$sbindir/|g; s|$bindir/vpcfwctl|$D$bindir/vpcfwctl|g" "$D$unitdir/vpcfw-sync.service" \
		>"$D/verify/vpcfw-sync.service"
	cp "$D$unitdir/vpcfw-sync.timer" "$D/verify/"
	if out=$(SYSTEMD_UNIT_PATH="$D/verify:" systemd-analyze verify --man=no "$D/verify/vpcfw-sync.service" \
			"$D/verify/vpcfw-sync.timer" 2>&1) && ! echo "$out" | grep -qi 'unknown\|ignoring'; then
		echo "PASS: systemd-analyze verify: vpcfw-sync.service and .timer"
	else
		echo "FAIL: systemd-analyze verify (vpcfw-sync): $out"; fails=$((fails + 1))
	fi
	rm -rf "$D/verify"
else
	echo "NOTE: systemd-analyze not installed: the unit is not parsed here"
fi
case $docdir in */share/doc/vpcfw) echo "PASS: docdir is .../share/doc/vpcfw" ;;
*) echo "FAIL: docdir $docdir"; fails=$((fails + 1)) ;; esac
for f in "$sbindir/vpcfwctl" "$sysconfdir/vpcfw/examples"; do
	[ -e "$D$f" ] && { echo "FAIL: installed where it does not belong: $f"; fails=$((fails + 1)); } ||
		echo "PASS: not installed: $f"
done
# the settings alone enforce nothing (a warning, or refused without
# interfaces), but their file has no error of its own
"$D$sbindir/vpcfwd" -c "$D$sysconfdir/vpcfw" --check-config >/dev/null 2>"$D.check"
if grep -q 'error.*90-vpcfw\.json' "$D.check"; then
	cat "$D.check"; echo "FAIL: the installed settings have errors"; fails=$((fails + 1))
else echo "PASS: the installed settings (90-vpcfw.json) have no error"; fi
rm -f "$D.check"
grep -q "^ExecStart=$sbindir/vpcfwd -c $sysconfdir/vpcfw\$" "$D$unitdir/vpcfwd.service" &&
	echo "PASS: the unit names the installed paths" ||
	{ echo "FAIL: unit: $(grep ExecStart= "$D$unitdir/vpcfwd.service")"; fails=$((fails + 1)); }
if grep -q "^ExecStart=$sbindir/vpcfw-sync -c $sysconfdir/vpcfw --vpcfwd $sbindir/vpcfwd --vpcfwctl $bindir/vpcfwctl " \
	"$D$unitdir/vpcfw-sync.service"; then echo "PASS: the vpcfw-sync unit names the installed paths"
else echo "FAIL: vpcfw-sync unit: $(grep ExecStart= "$D$unitdir/vpcfw-sync.service")"; fails=$((fails + 1)); fi
"$D$sbindir/vpcfw-sync" --help >/dev/null 2>&1 && echo "PASS: the installed vpcfw-sync runs (--help)" ||
	{ echo "FAIL: the installed vpcfw-sync does not run"; fails=$((fails + 1)); }
"$D$sbindir/vpcfwd" -c "$D$docdir/examples/three-tier" --check-config >/dev/null 2>&1 &&
	echo "PASS: the installed example is valid" ||
	{ echo "FAIL: the installed example is refused"; fails=$((fails + 1)); }
# an edited settings file survives a reinstall and an uninstall
printf '{"Vpcfw": {"Queues": [3]}}\n' >"$D$sysconfdir/vpcfw/90-vpcfw.json"
"$MAKE" -s -C "$top_builddir" install DESTDIR="$D" >/dev/null 2>&1
grep -q '\[3\]' "$D$sysconfdir/vpcfw/90-vpcfw.json" &&
	echo "PASS: make install keeps an edited 90-vpcfw.json" ||
	{ echo "FAIL: make install overwrote an edited 90-vpcfw.json"; fails=$((fails + 1)); }
"$MAKE" -s -C "$top_builddir" uninstall DESTDIR="$D" >/dev/null 2>&1
left=$(find "$D" -type f | sed "s|^$D||")
[ "$left" = "$sysconfdir/vpcfw/90-vpcfw.json" ] &&
	echo "PASS: make uninstall removes every file but the edited settings" ||
	{ echo "FAIL: left after uninstall: $left"; fails=$((fails + 1)); }
rm -f "$D$sysconfdir/vpcfw/90-vpcfw.json"
"$MAKE" -s -C "$top_builddir" install DESTDIR="$D" >/dev/null 2>&1
"$MAKE" -s -C "$top_builddir" uninstall DESTDIR="$D" >/dev/null 2>&1
left=$(find "$D" -type f | sed "s|^$D||")
[ -z "$left" ] && echo "PASS: make uninstall removes every file (settings unchanged)" ||
	{ echo "FAIL: left after uninstall: $left"; fails=$((fails + 1)); }
exit $((fails ? 1 : 0))
