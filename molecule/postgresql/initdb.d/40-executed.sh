#!/bin/bash
# Executable, so postgres-first-run runs it: only the environment reaches it.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
	--command "INSERT INTO init_runs (source) VALUES ('40-executed.sh')"
