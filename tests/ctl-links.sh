#!/bin/sh
# What vpcfwctl links (issue #11 item 2): a client, the control protocol's
# framing and the answers' formatting; the engine only through one call per
# offline verb (offline.h).  Checked on the build's objects and binary:
#  - vpcfwctl.c asks the engine for nothing but the offline_* calls: none of
#    its undefined symbols is defined by libvpcfw.a;
#  - the binary holds no packet path beyond the decision, no replay, no
#    daemon: not the lane's lane_run (with its hooks), the shadow, replay_run,
#    the state file, HA, the control server.  (mirror.o and flowlog.o do come
#    along: loading a configuration checks its mirror sessions and flow logs,
#    mirror_check_config and flowlog_check_config, which live there;)
#  - and it holds what the offline verbs need (offline_diff, the lane's
#    decision lane_decide, explain_json), so that the check above cannot pass
#    on a binary that lost them.
set -u
top_builddir=${top_builddir:-$(cd "$(dirname "$0")/.." && pwd)/build}
NM=${NM:-nm}
ctl=$top_builddir/src/vpcfwctl
obj=$top_builddir/src/vpcfwctl-vpcfwctl.o
lib=$top_builddir/libvpcfw.a

command -v "$NM" >/dev/null 2>&1 || { echo "SKIP: no nm"; exit 77; }
for f in "$ctl" "$obj" "$lib"; do
	[ -e "$f" ] || { echo "FAIL: $f not built"; exit 1; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
fail=0

"$NM" -u "$obj" | awk '{print $NF}' | sort -u >"$tmp/undef"
"$NM" --defined-only "$lib" 2>/dev/null | awk 'NF == 3 && $2 ~ /^[TDBR]$/ {print $3}' | sort -u >"$tmp/engine"
[ -s "$tmp/engine" ] || { echo "FAIL: no symbol read from $lib"; exit 1; }
comm -12 "$tmp/undef" "$tmp/engine" >"$tmp/asked"
if [ -s "$tmp/asked" ]; then
	echo "FAIL: vpcfwctl.c calls into the engine beside offline.h: $(tr '\n' ' ' <"$tmp/asked")"
	fail=1
else
	echo "ok   vpcfwctl.c asks the engine for nothing (offline_* from libvpcfw_offline.a)"
fi
for s in offline_explain offline_check_config offline_diff; do
	grep -qx "$s" "$tmp/undef" || { echo "FAIL: vpcfwctl.c does not call $s"; fail=1; }
done

"$NM" --defined-only "$ctl" | awk '{print $NF}' | sort -u >"$tmp/defined"
for s in lane_run shadow_eval shadow_create replay_run state_encode ha_open ctl_open ctl_handle \
	daemon_run; do
	if grep -qx "$s" "$tmp/defined"; then
		echo "FAIL: vpcfwctl links $s"
		fail=1
	fi
done
[ "$fail" = 0 ] && echo "ok   no lane_run, shadow, replay, state file, HA or server in vpcfwctl"
for s in offline_diff lane_decide explain_json ctl_read_config_files; do
	if ! grep -qx "$s" "$tmp/defined"; then
		echo "FAIL: vpcfwctl lacks $s"
		fail=1
	fi
done
exit $fail
