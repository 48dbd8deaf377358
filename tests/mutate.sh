#!/usr/bin/env bash
# Mutation check (not part of `make check`): small planted bugs in the
# engine (network ACLs, security groups, the pipeline, connection tracking),
# the control socket and mirroring, each applied alone to a scratch copy of
# the source tree, built (no sanitizers, for speed) and run against the test
# suite.  A mutant is CAUGHT when a test fails, ESCAPED when the whole suite
# passes.  Tests run one at a time, unit suites first, and a mutant's run
# stops at its first failing test.  Run it as root with tests/setup-debian's
# packages (as CI runs the suite): without root the lab tests skip, and the
# bugs only they can see escape.
#
#   tests/mutate.sh            every mutant
#   tests/mutate.sh NAME...    only these
#   tests/mutate.sh --list     the mutants and what each breaks
#
# Exit status: 0 when every mutant was caught; 1 when one escaped, or did not
# apply (the code moved: update its sed expression), or did not build.
set -uo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# NAME @@ FILE @@ SED EXPRESSION(S), separated by ' ;; ' @@ what the bug does
MUTANTS='
nacl-order @@ src/nacl.c @@ s/return x->number < y->number ? -1 : x->number > y->number;/return x->number > y->number ? -1 : x->number < y->number;/ @@ network ACL entries evaluated highest number first
nacl-port-range @@ src/nacl.c @@ s/return p->dport >= r->port_from \&\& p->dport <= r->port_to;/return p->dport >= r->port_from \&\& p->dport < r->port_to;/ @@ a network ACL port range excludes its last port
nacl-peer @@ src/nacl.c @@ s/dir == NACL_INBOUND ? \&p->src : \&p->dst;/dir == NACL_INBOUND ? \&p->dst : \&p->src;/ @@ network ACLs match the wrong address (local instead of peer)
sg-port-range @@ src/sg.c @@ s/return p->dport >= r->from \&\& p->dport <= r->to;/return p->dport >= r->from \&\& p->dport < r->to;/ @@ a security-group port range excludes its last port
sg-peer @@ src/sg.c @@ s/const struct ip_addr \*peer = egress ? \&p->dst : \&p->src;/const struct ip_addr *peer = egress ? \&p->src : \&p->dst;/ @@ security groups match the wrong address
sg-icmp-code @@ src/sg.c @@ s/return r->to < 0 || p->icmp_code == r->to;/return true;/ @@ a security-group ICMP rule ignores the code
sg-untracked @@ src/sg.c @@ s/if (admitting \&\& admitting->world \&\& opposite->all_ports_world\[fam\]\[udp\])/if (admitting \&\& opposite->all_ports_world[fam][udp])/ @@ flows admitted by a narrow rule are left untracked
pl-no-nacl @@ src/pipeline.c @@ s/^\tif (x != y) {$/\tif (x != y \&\& 0) {/ @@ network ACLs never evaluated
pl-no-srcdst @@ src/pipeline.c @@ s/if (meta \&\& meta->in_iface \&\& meta->in_iface->source_dest_check \&\&/if (0 \&\& meta \&\& meta->in_iface \&\& meta->in_iface->source_dest_check \&\&/ @@ spoofed sources from a checked interface accepted
pl-ct-full-accepts @@ src/pipeline.c @@ s/finish(pl, v, false, STAGE_CONNTRACK, REASON_CONNTRACK_ALLOWANCE_EXCEEDED);/finish(pl, v, true, STAGE_CONNTRACK, REASON_CONNTRACK_ALLOWANCE_EXCEEDED);/ @@ a full flow table accepts new flows untracked
ct-rst-ignored @@ src/conntrack.c @@ s/^\tif (fl \& TCP_RST) {$/\tif (0 \&\& (fl \& TCP_RST)) {/ @@ a TCP RST never closes a tracked flow
ct-no-evict @@ src/conntrack.c @@ s/^\tif (ct->emb_head != NIL) {$/\tif (0) {/ @@ a full table never evicts embryonic flows
ctl-reader-changes @@ src/ctl.c @@ s/if (!peer->reader || (change \&\& !peer->admin)) {/if (!peer->reader) {/ @@ readers may reload, turn audit on, load shadows
ctl-reader-group-admin @@ src/ctl.c @@ /g == c->reader_gid)/{n;s/p->reader = true;/{ p->reader = true; p->admin = !ro; }/} @@ the reader group is classified as admin
mirror-no-ingress @@ src/mirror.c @@ s/if (v->dst_iface \&\& v->accept)$/if (v->dst_iface \&\& v->accept \&\& 0)/ @@ mirroring never copies a destination'"'"'s ingress
daemon-no-mirror @@ src/daemon.c @@ s/mirror = mirror_create(cur->pol, \&mo);/mirror = NULL; (void)mo;/ ;; s/if (!mirror \&\& mirror_enabled(cur->pol)) {/if (0) {/ @@ the daemon sets up no mirroring (and says nothing)
daemon-reload-no-swap @@ src/daemon.c @@ /^static bool reload_install/,/^}/s/^\tatomic_store(\&current, g);$/\t(void)g; \/* never swapped *\// ;; s/^\tgeneration_free(old);$/\t(void)old;/ @@ a reload logs the new configuration but never swaps it in
'

mutant_names() { printf '%s\n' "$MUTANTS" | awk -F' @@ ' 'NF >= 4 { print $1 }'; }
field() { printf '%s\n' "$MUTANTS" | awk -F' @@ ' -v n="$1" -v f="$2" '$1 == n { print $f }'; }

if [ "${1:-}" = --list ]; then
	printf '%s\n' "$MUTANTS" | awk -F' @@ ' 'NF >= 4 { printf "%-24s %-18s %s\n", $1, $2, $4 }'
	exit 0
fi
if [ $# -gt 0 ]; then
	names=("$@")
	for n in "${names[@]}"; do
		[ -n "$(field "$n" 2)" ] || { echo "mutate: no mutant '$n' (--list)" >&2; exit 2; }
	done
else
	mapfile -t names < <(mutant_names)
fi
[ "$(id -u)" = 0 ] || echo "mutate: not root: the lab tests skip, their bugs will escape" >&2

scratch=$(mktemp -d /tmp/vpcfw-mutate.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
echo "mutate: scratch copy in $scratch"
# the working tree as it is (tracked and new files, not what .gitignore
# excludes); a plain copy without git
if git -C "$top" rev-parse --git-dir >/dev/null 2>&1; then
	(cd "$top" && git ls-files -z --cached --others --exclude-standard |
		tar --null -T - -cf -) | tar -C "$scratch" -xf -
else
	cp -a "$top/." "$scratch/"
	rm -rf "$scratch"/build*
fi
src=$scratch
b=$scratch/build
log=$scratch/log
(cd "$src" && autoreconf -fi >"$log" 2>&1) || { cat "$log"; echo "mutate: autoreconf failed"; exit 1; }
mkdir -p "$b"
(cd "$b" && ../configure -q >"$log" 2>&1 && make -j2 >>"$log" 2>&1 && make -j2 check TESTS= >>"$log" 2>&1) ||
	{ tail -40 "$log"; echo "mutate: the unmutated tree does not build"; exit 1; }
# unit suites first: they are quick and catch most
read -r -a tests <<<"$(make -s -C "$b" print-var VAR=TESTS)"
ordered=()
for t in "${tests[@]}"; do case $t in *.sh) ;; *) ordered+=("$t") ;; esac; done
for t in "${tests[@]}"; do case $t in *.sh) ordered+=("$t") ;; esac; done

caught=0 escaped=0 broken=0
escaped_names=()
for n in "${names[@]}"; do
	file=$(field "$n" 2)
	exprs=$(field "$n" 3)
	cp "$src/$file" "$scratch/orig"
	sedargs=()
	while IFS= read -r e; do
		[ -n "$e" ] && sedargs+=(-e "$e")
	done < <(printf '%s\n' "$exprs" | sed 's/ ;; /\n/g')
	sed -i "${sedargs[@]}" "$src/$file"
	napplied=$(diff "$scratch/orig" "$src/$file" | grep -c '^>')
	if [ "${#sedargs[@]}" -eq 0 ] || [ "$napplied" -lt $((${#sedargs[@]} / 2)) ]; then
		echo "NOT APPLIED  $n: $file changed $napplied line(s) for ${#sedargs[@]} expression(s) (update the expression)"
		broken=$((broken + 1))
		cp "$scratch/orig" "$src/$file"
		continue
	fi
	if ! make -C "$b" -j2 >"$log" 2>&1 || ! make -C "$b" -j2 check TESTS= >>"$log" 2>&1; then
		echo "NO BUILD     $n"
		tail -5 "$log" | sed 's/^/             /'
		broken=$((broken + 1))
		cp "$scratch/orig" "$src/$file"
		continue
	fi
	by=
	start=$(date +%s)
	for t in "${ordered[@]}"; do
		if ! make -C "$b" check TESTS="$t" >"$log" 2>&1; then
			by=$t
			break
		fi
	done
	secs=$(($(date +%s) - start))
	if [ -n "$by" ]; then
		echo "caught       $n by $by (${secs}s)"
		caught=$((caught + 1))
	else
		echo "ESCAPED      $n: $(field "$n" 4) (${secs}s)"
		escaped=$((escaped + 1))
		escaped_names+=("$n")
	fi
	cp "$scratch/orig" "$src/$file"
	touch "$src/$file"
done
echo "mutate: ${#names[@]} mutants: $caught caught, $escaped escaped, $broken not applied or not built"
[ "$escaped" -eq 0 ] || echo "mutate: escaped: ${escaped_names[*]}"
[ "$escaped" -eq 0 ] && [ "$broken" -eq 0 ]
