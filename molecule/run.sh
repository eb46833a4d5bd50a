#!/usr/bin/env bash
# molecule/run.sh JOBS LOGDIR SCENARIO...: `molecule test` for each scenario,
# JOBS at a time. Scenarios spend most of their time waiting on containers,
# servers and sleeps, so two at a time on two cores take little more than the
# longer of them; each has its own containers, networks and names. Each
# scenario writes to LOGDIR/molecule-<scenario>.log, which is printed whole
# once it ends (never interleaved), with its exit code and time. The exit code
# is non-zero if any scenario failed; all of them run regardless.
set -euo pipefail

# molecule_one SCENARIO: run one scenario into its log, then print it.
molecule_one() {
	local scenario=$1 log="$MOLECULE_LOGDIR/molecule-$1.log" started=$SECONDS rc=0
	molecule test -s "$scenario" >"$log" 2>&1 </dev/null || rc=$?
	[ "$rc" -eq 0 ] || echo "$scenario (rc=$rc, $log)" >>"$MOLECULE_LOGDIR/.molecule-failed"
	{
		flock 9
		printf '\n== molecule test -s %s\n' "$scenario"
		cat "$log"
		printf '== molecule test -s %s: rc=%d in %d s\n' "$scenario" "$rc" "$((SECONDS - started))"
	} 9>>"$MOLECULE_LOGDIR/.molecule-print.lock"
	return "$rc"
}

molecule_main() {
	local jobs=$1
	MOLECULE_LOGDIR=$2
	shift 2
	[ "$jobs" -ge 1 ] 2>/dev/null || { echo "molecule/run.sh: JOBS must be a whole number >= 1, not '$jobs'" >&2; return 2; }
	mkdir -p "$MOLECULE_LOGDIR"
	rm -f "$MOLECULE_LOGDIR/.molecule-failed"
	export MOLECULE_LOGDIR
	# xargs exits 123 when any run failed; the list below names them.
	printf '%s\n' "$@" | xargs -P "$jobs" -n 1 "${BASH_SOURCE[0]}" --one || true
	if [ -s "$MOLECULE_LOGDIR/.molecule-failed" ]; then
		echo "molecule: failed scenarios:" >&2
		cat "$MOLECULE_LOGDIR/.molecule-failed" >&2
		return 1
	fi
}

# Sourced, it only defines the functions.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	if [ "${1:-}" = --one ]; then
		molecule_one "$2"
	else
		molecule_main "$@"
	fi
fi
