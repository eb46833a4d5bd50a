#!/bin/bash
# shipyard PostgreSQL image: the container's command, handled as the official
# postgres image handles it (images/postgresql/README.md, "Commands"):
#   no arguments, or `postgres`          the supervised services (CMD is postgres)
#   a flag first, or `postgres` + flags  the same, with the flags given to the
#                                        server (and to the first-run steps'
#                                        temporary server)
#   `postgres --version` (and other help flags), anything else
#                                        executed as it is, without the supervisor
# shipyard-init's own verbs stay under its name: `shipyard-init status`.
set -Eeuo pipefail

# shellcheck source=../../common/init/shipyard-lib.sh
. /usr/local/lib/shipyard/init/shipyard-lib.sh

# The options with which the server only prints something and exits.
POSTGRES_HELP_FLAGS=('-?' --help --describe-config -V --version)

_main() {
	if [ "$#" -eq 0 ] || [ "${1:0:1}" = - ]; then
		set -- postgres "$@"
	fi
	if [ "$1" = postgres ] && ! shipyard_any_of "${POSTGRES_HELP_FLAGS[@]}" -- "$@"; then
		shift
		shipyard_supervise postgres /var/lib/postgresql "$@"
	fi
	exec "$@"
}

if ! shipyard_is_sourced; then
	_main "$@"
fi
