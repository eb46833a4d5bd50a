#!/bin/bash
# The naive baseline's entrypoint (see the Dockerfile), written for the bench:
# the steps the official postgres image's entrypoint takes on every start,
# in its order, and nothing else. As root it reads the environment, makes
# the directories and hands the data directory to postgres (a find over it),
# then executes itself again as postgres, which reads the environment again.
# On an empty data directory it runs initdb, starts a temporary server on
# the unix socket only (pg_ctl --wait), creates POSTGRES_DB, runs
# /docker-entrypoint-initdb.d/ and stops the server (pg_ctl --mode=fast
# --wait). Then it executes the server, which becomes PID 1.
set -Eeuo pipefail
shopt -s nullglob

file_env() {
	local var="$1" file="${1}_FILE" value="${2:-}"
	if [ -n "${!var:-}" ]; then
		value="${!var}"
	elif [ -n "${!file:-}" ]; then
		value="$(<"${!file}")"
	fi
	export "$var"="$value"
	unset "$file"
}

setup_env() {
	file_env POSTGRES_PASSWORD
	file_env POSTGRES_USER postgres
	file_env POSTGRES_DB "$POSTGRES_USER"
	file_env POSTGRES_INITDB_ARGS
	DATABASE_ALREADY_EXISTS=
	if [ -s "$PGDATA/PG_VERSION" ]; then
		DATABASE_ALREADY_EXISTS=true
	fi
}

create_directories() {
	mkdir -p "$PGDATA"
	chmod 00700 "$PGDATA" || :
	mkdir -p /var/run/postgresql || :
	chmod 03775 /var/run/postgresql || :
	if [ "$(id -u)" = 0 ]; then
		find "$PGDATA" \! -user postgres -exec chown postgres '{}' +
		find /var/run/postgresql \! -user postgres -exec chown postgres '{}' +
	fi
}

sql() {
	psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc "$@"
}

if [ "${1:0:1}" = - ]; then
	set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
	exec "$@"
fi

setup_env
create_directories
if [ "$(id -u)" = 0 ]; then
	exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [ -z "$DATABASE_ALREADY_EXISTS" ]; then
	[ -n "$POSTGRES_PASSWORD" ] || { echo "POSTGRES_PASSWORD is required" >&2; exit 1; }
	# shellcheck disable=SC2086 # whitespace-separated options, as the official image takes them
	initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") $POSTGRES_INITDB_ARGS
	printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
	PGUSER="$POSTGRES_USER" pg_ctl --pgdata="$PGDATA" --wait \
		--options="-c listen_addresses='' -p 5432" start
	exists="$(sql --dbname postgres --set db="$POSTGRES_DB" --tuples-only --no-align \
		<<<"SELECT 1 FROM pg_database WHERE datname = :'db';")"
	if [ -z "$exists" ]; then
		sql --dbname postgres --set db="$POSTGRES_DB" <<<"SELECT format('CREATE DATABASE %I', :'db') \gexec"
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
			*.sql) sql --dbname "$POSTGRES_DB" -f "$f" ;;
			*.sql.gz) gunzip -c "$f" | sql --dbname "$POSTGRES_DB" ;;
		esac
	done
	PGUSER="$POSTGRES_USER" pg_ctl --pgdata="$PGDATA" --mode=fast --wait stop
fi
exec "$@"
