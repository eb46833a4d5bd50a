#!/bin/bash
# shipyard LAMP image: the container's command, handled as the official
# mariadb image handles it (images/lamp/README.md, "Commands"):
#   no arguments, or `mariadbd`          the supervised services (MariaDB,
#                                        PHP-FPM, Apache, the log agent)
#   a flag first, or `mariadbd` (or `mysqld`) + flags
#                                        the same, with the flags given to
#                                        MariaDB (and to the first run's
#                                        temporary server)
#   `mariadbd --version` (and other help flags), anything else
#                                        executed as it is, without the supervisor
# shipyard-init's own verbs stay under its name: `shipyard-init status`.
set -Eeuo pipefail

# shellcheck source=../../common/init/shipyard-lib.sh
. /usr/local/lib/shipyard/init/shipyard-lib.sh

# The options with which the server only prints something and exits.
MARIADB_HELP_FLAGS=('-?' --help --print-defaults -V --version)

_main() {
	if [ "$#" -eq 0 ] || [ "${1:0:1}" = - ]; then
		set -- mariadbd "$@"
	fi
	case "$1" in
		mariadbd | mysqld)
			if ! shipyard_any_of "${MARIADB_HELP_FLAGS[@]}" -- "$@"; then
				shift
				shipyard_supervise mysql /var/lib/mysql "$@"
			fi
			;;
	esac
	exec "$@"
}

if ! shipyard_is_sourced; then
	_main "$@"
fi
