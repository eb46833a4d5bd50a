#!/bin/bash
# Executable, so postgres-first-run runs it: only the environment reaches it.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
	--set os_user="$(id -un)" <<<"INSERT INTO init_runs (source, os_user) VALUES ('40-executed.sh', :'os_user');"
