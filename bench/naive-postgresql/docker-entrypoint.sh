#!/bin/bash
# The naive baseline's entrypoint (see the Dockerfile), written for the bench:
# the official postgres image's first-run steps, in its order, and nothing
# else. As root it hands the directories to postgres and re-executes itself
# as postgres; on an empty data directory it runs initdb, starts a temporary
# server on the unix socket only (pg_ctl --wait), creates POSTGRES_DB, runs
# /docker-entrypoint-initdb.d/, stops the server (pg_ctl --mode=fast --wait);
# then it executes the server, which becomes PID 1.
set -Eeuo pipefail
shopt -s nullglob

if [ "${1:0:1}" = - ]; then
	set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
	exec "$@"
fi

if [ "$(id -u)" = 0 ]; then
	install -d -o postgres -g postgres -m 0700 "$PGDATA"
	install -d -o postgres -g postgres -m 3777 /var/run/postgresql
	exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	password="${POSTGRES_PASSWORD:-}"
	if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
		password="$(<"$POSTGRES_PASSWORD_FILE")"
	fi
	[ -n "$password" ] || { echo "POSTGRES_PASSWORD is required" >&2; exit 1; }
	user="${POSTGRES_USER:-postgres}"
	db="${POSTGRES_DB:-$user}"
	# shellcheck disable=SC2086 # whitespace-separated options, as the official image takes them
	initdb --username="$user" --pwfile=<(printf '%s\n' "$password") ${POSTGRES_INITDB_ARGS:-}
	printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
	pg_ctl --pgdata="$PGDATA" --wait --options="-c listen_addresses='' -p 5432" start
	sql() { psql -v ON_ERROR_STOP=1 --username "$user" --no-password --no-psqlrc "$@"; }
	exists="$(sql --dbname postgres --set db="$db" --tuples-only --no-align <<<"SELECT 1 FROM pg_database WHERE datname = :'db';")"
	if [ -z "$exists" ]; then
		sql --dbname postgres --set db="$db" <<<"SELECT format('CREATE DATABASE %I', :'db') \gexec"
	fi
	for f in /docker-entrypoint-initdb.d/*; do
		case "$f" in
			*.sh)
				if [ -x "$f" ]; then
					"$f"
				else
					# shellcheck disable=SC1090 # the user's scripts
					. "$f"
				fi
				;;
			*.sql) sql --dbname "$db" -f "$f" ;;
			*.sql.gz) gunzip -c "$f" | sql --dbname "$db" ;;
		esac
	done
	pg_ctl --pgdata="$PGDATA" --mode=fast --wait stop
fi
exec "$@"
