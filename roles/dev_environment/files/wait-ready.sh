#!/bin/sh
# usage: wait-ready.sh TIMEOUT CONTAINER...
# Asks each container's supervisor (`shipyard-init status`, 0 ready, 1 not)
# until every one reports its services ready, all containers in parallel.
# Exits 0 when they are; otherwise prints one line per container that is not,
# in the supervisor's own words or with the container's state, and exits 1.
# A container that has stopped for good fails at once rather than at the
# timeout; one that its restart policy is restarting gets until the timeout.
set -u
timeout=$1
shift
deadline=$(($(date +%s) + timeout))
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

while :; do
	for c in "$@"; do
		(
			docker exec "$c" shipyard-init status >"$out/$c" 2>&1
			echo $? >"$out/$c.rc"
		) &
	done
	wait
	pending=
	for c in "$@"; do
		[ "$(cat "$out/$c.rc")" = 0 ] || pending="$pending $c"
	done
	[ -z "$pending" ] && exit 0
	for c in $pending; do
		state=$(docker inspect --format '{{.State.Status}}' "$c" 2>/dev/null || echo missing)
		case $state in
		running | restarting) ;;
		*)
			echo "$c: the container is $state"
			exit 1
			;;
		esac
	done
	if [ "$(date +%s)" -ge "$deadline" ]; then
		for c in $pending; do
			restarts=$(docker inspect --format '{{.RestartCount}}' "$c" 2>/dev/null || echo '?')
			echo "$c ($restarts restarts): $(tr '\n' ' ' <"$out/$c")"
		done
		exit 1
	fi
	sleep 1
done
