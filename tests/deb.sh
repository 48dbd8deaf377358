#!/bin/bash
# The Debian package (issue #12 item 6): dpkg-buildpackage -us -uc -b builds
# it from a copy of the source tree, lintian reports no error and no warning,
# and the .deb, unpacked into a scratch root (dpkg -x), has Debian's layout:
# vpcfwd in /usr/sbin, vpcfwctl in /usr/bin, the unit enabled but not
# started, man pages, bash completion, examples under /usr/share/doc, the
# daemon's settings in /etc/vpcfw as a conffile, the vpcfw user and group made by
# postinst.  Skips (77) only when dpkg-buildpackage, debhelper or lintian is
# not installed (tests/setup-debian installs them).
set -u
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}

missing=
command -v dpkg-buildpackage >/dev/null || missing="$missing dpkg-dev"
command -v dh >/dev/null || missing="$missing debhelper"
command -v lintian >/dev/null || missing="$missing lintian"
if [ -n "$missing" ]; then
	echo "SKIP: deb: not installed:$missing (tests/setup-debian installs them)" >&2
	echo "SKIP: deb: not installed:$missing (tests/setup-debian installs them)"
	exit 77
fi

T=$(mktemp -d)
trap '[ -n "${KEEP_TMP:-}" ] && echo "kept $T" || rm -rf "$T"' EXIT
fails=0
pass() { echo "PASS: $1"; }
fail() { echo "FAIL: $1"; fails=$((fails + 1)); }

# The source tree as a checkout or a release tarball has it: tracked and new
# files of a git checkout (no .git, no build directories), else the whole
# tree but its build directories (make distcheck's _build among them).
S=$T/vpcfw
mkdir "$S"
if git -C "$top_srcdir" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	(cd "$top_srcdir" && git ls-files -z --cached --others --exclude-standard) |
		(cd "$top_srcdir" && xargs -0 cp --parents -t "$S" 2>/dev/null)
	# deleted but not yet committed files are listed and cannot be copied
else
	tar -C "$top_srcdir" --exclude=./_build --exclude='./build*' --exclude=./autom4te.cache \
		--exclude=./debian/vpcfw --exclude=./debian/.debhelper -cf - . | tar -C "$S" -xf -
fi
chmod -R u+w "$S"	# distcheck's source tree is read-only
[ -x "$S/debian/rules" ] || { echo "FAIL: deb: no debian/rules in the copy"; exit 1; }

# A clean environment: a parent make's jobserver and flags are not the
# package build's; the test suite's sanitizer options are irrelevant to it.
# nocheck: the unit tests ran in this suite already (debian/rules runs them
# otherwise).
(cd "$S" && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u CFLAGS -u LDFLAGS -u CPPFLAGS \
	DEB_BUILD_OPTIONS="nocheck parallel=2" dpkg-buildpackage -us -uc -b) >"$T/build.log" 2>&1
rc=$?
if [ $rc -ne 0 ]; then
	tail -60 "$T/build.log"
	echo "FAIL: dpkg-buildpackage -us -uc -b (exit $rc)"
	exit 1
fi
pass "dpkg-buildpackage -us -uc -b"
deb=$(ls "$T"/vpcfw_*.deb 2>/dev/null | grep -v dbgsym | head -1)
changes=$(ls "$T"/vpcfw_*.changes 2>/dev/null | head -1)
[ -f "$deb" ] && [ -f "$changes" ] || { ls -l "$T"; echo "FAIL: no .deb or .changes"; exit 1; }

# -Werror only with --enable-werror (CI); the package's build never has it.
w=$(sed -n 's/^WARN_CFLAGS = //p' "$S/Makefile")
case " $w " in
"  ") fail "no WARN_CFLAGS in the package build's Makefile" ;;
*" -Werror "*) fail "the package's build uses -Werror ($w)" ;;
*) pass "the package's build warns without -Werror ($w)" ;;
esac

# lintian: no error, no warning (overrides, if any, are in debian/ with a reason)
lintian --fail-on error,warning --display-info "$changes" >"$T/lintian.log" 2>&1
rc=$?
cat "$T/lintian.log"
if [ $rc -eq 0 ] && ! grep -E '^(E|W): ' "$T/lintian.log" >/dev/null; then
	pass "lintian: no error or warning"
else
	fail "lintian: errors or warnings (exit $rc)"
fi

# ---------------------------------------------------------------- the layout, in a scratch root
R=$T/root
dpkg -x "$deb" "$R" || { echo "FAIL: dpkg -x"; exit 1; }
for f in /usr/sbin/vpcfwd:x /usr/bin/vpcfwctl:x /lib/systemd/system/vpcfwd.service:f \
	 /usr/share/man/man8/vpcfwd.8.gz:f /usr/share/man/man8/vpcfwctl.8.gz:f /usr/sbin/vpcfw-lab:x /usr/share/man/man8/vpcfw-lab.8.gz:f \
	 /usr/share/man/man5/vpcfw.conf.5.gz:f /usr/share/bash-completion/completions/vpcfwctl:f \
	 /usr/share/doc/vpcfw/examples/three-tier/40-security-groups.json:f \
	 /usr/share/doc/vpcfw/examples/three-tier.pcap:f \
	 /usr/share/doc/vpcfw/examples/three-tier-traffic.json:f \
	 /usr/share/doc/vpcfw/copyright:f /etc/vpcfw/90-vpcfw.json:f /etc/logrotate.d/vpcfw:f \
	 /usr/lib/sysusers.d/vpcfw.conf:f /usr/sbin/vpcfw-sync:x /usr/share/man/man8/vpcfw-sync.8.gz:f \
	 /lib/systemd/system/vpcfw-sync.service:f /lib/systemd/system/vpcfw-sync.timer:f; do
	if [ -"${f##*:}" "$R${f%:*}" ]; then pass "installed ${f%:*}"
	else fail "not installed: ${f%:*}"; fi
done
for f in /usr/sbin/vpcfwctl /etc/vpcfw/examples /usr/lib/systemd/system/vpcfwd.service; do
	[ -e "$R$f" ] && fail "installed where it does not belong: $f" || pass "not installed: $f"
done
# only the daemon's settings in /etc/vpcfw: vpcfwd -c reads every *.json there
got=$(cd "$R/etc/vpcfw" && find . -mindepth 1 | sort | tr '\n' ' ')
[ "$got" = "./90-vpcfw.json " ] && pass "/etc/vpcfw holds 90-vpcfw.json alone" ||
	fail "/etc/vpcfw holds: $got"
grep -q '^ExecStart=/usr/sbin/vpcfwd -c /etc/vpcfw$' "$R/lib/systemd/system/vpcfwd.service" &&
	pass "the unit names the installed paths" ||
	fail "unit: $(grep ExecStart= "$R/lib/systemd/system/vpcfwd.service")"
"$R/usr/sbin/vpcfwd" -c "$R/usr/share/doc/vpcfw/examples/three-tier" --check-config >"$T/check.log" 2>&1 &&
	pass "the installed example is valid (vpcfwd --check-config)" ||
	{ cat "$T/check.log"; fail "the installed example is refused"; }
"$R/usr/bin/vpcfwctl" help >/dev/null 2>&1 || "$R/usr/bin/vpcfwctl" --help >/dev/null 2>&1 &&
	pass "the installed vpcfwctl runs" || fail "the installed vpcfwctl does not run"

# ---------------------------------------------------------------- maintainer scripts
C=$T/control
dpkg-deb -e "$deb" "$C"
conf=$(sort "$C/conffiles" 2>/dev/null | tr '\n' ' ')
[ "$conf" = "/etc/logrotate.d/vpcfw /etc/vpcfw/90-vpcfw.json " ] &&
	pass "conffiles: /etc/vpcfw/90-vpcfw.json and /etc/logrotate.d/vpcfw" || fail "conffiles: $conf"
grep -q 'addgroup --system --quiet vpcfw' "$C/postinst" && pass "postinst creates the vpcfw group" ||
	fail "postinst does not create the vpcfw group"
grep -q 'adduser --system .*--ingroup vpcfw' "$C/postinst" &&
	pass "postinst creates the vpcfw user (the unit's User=) in that group" ||
	fail "postinst does not create the vpcfw user"
# enabled (deb-systemd-helper enable) but not started (no deb-systemd-invoke start)
grep -q "deb-systemd-helper enable 'vpcfwd.service'" "$C/postinst" && pass "postinst enables vpcfwd.service" ||
	fail "postinst does not enable vpcfwd.service"
grep -q 'deb-systemd-invoke .*start' "$C/postinst" && fail "postinst starts the unit" ||
	pass "postinst does not start the unit"
# vpcfw-sync: enabled again on upgrade only if the admin had enabled it
# (dh_installsystemd --no-enable: "was-enabled" guards each enable)
n_en=$(grep -c "deb-systemd-helper enable 'vpcfw-sync" "$C/postinst")
n_guarded=$(grep -B2 "deb-systemd-helper enable 'vpcfw-sync" "$C/postinst" | grep -c "was-enabled 'vpcfw-sync")
[ "$n_en" = "$n_guarded" ] && pass "postinst does not enable vpcfw-sync (only keeps an admin's choice)" ||
	fail "postinst enables vpcfw-sync (it needs the user's credentials first)"
# the group exists before the unit is enabled (the unit may name it)
g=$(grep -n 'addgroup' "$C/postinst" | head -1 | cut -d: -f1)
e=$(grep -n 'deb-systemd-helper enable' "$C/postinst" | head -1 | cut -d: -f1)
[ -n "$g" ] && [ -n "$e" ] && [ "$g" -lt "$e" ] && pass "the group is made before the unit is enabled" ||
	fail "the group is not made before the unit is enabled"
# postinst run against stubs (no change to this machine): on configure it
# adds the group when getent does not know it, and not when it does
B=$T/stubs
mkdir "$B"
printf '#!/bin/sh\necho "$(basename "$0") $*" >>"%s/calls"\nexit 0\n' "$T" >"$B/addgroup"
cp "$B/addgroup" "$B/adduser"
printf '#!/bin/sh\n[ -n "${EXISTS:-}" ]\n' >"$B/getent"
for s in deb-systemd-helper deb-systemd-invoke systemctl; do printf '#!/bin/sh\nexit 0\n' >"$B/$s"; done
chmod +x "$B"/*
PATH=$B:$PATH sh "$C/postinst" configure >/dev/null 2>&1
PATH=$B:$PATH EXISTS=1 sh "$C/postinst" configure >/dev/null 2>&1
calls=$(tr '\n' ';' <"$T/calls" 2>/dev/null)
[ "$calls" = "addgroup --system --quiet vpcfw;adduser --system --quiet --ingroup vpcfw --no-create-home --home /nonexistent --gecos vpcfw firewall daemon vpcfw;" ] &&
	pass "postinst configure: the group, then the user, once, only while missing" ||
	fail "postinst configure: calls: $calls"

echo "deb: $fails failure(s)"
exit $((fails ? 1 : 0))
