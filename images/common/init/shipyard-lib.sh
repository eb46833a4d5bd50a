# shellcheck shell=bash
# shipyard's shell helpers for the images' entrypoints and first-run steps:
# small shipyard_-prefixed functions, in the manner of docker-library's
# docker-entrypoint.sh. This file is sourced, never run:
#   . /usr/local/lib/shipyard/init/shipyard-lib.sh
# Defining functions is all it does; a script that sources it keeps its own
# `set` options.

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	echo "${0##*/}: a library of shell functions; source it, do not run it" >&2
	exit 64
fi

# usage: shipyard_is_sourced
# True when the script that calls it, at its top level, is being sourced
# rather than run (docker-library's _is_sourced). A script ends with
#   if ! shipyard_is_sourced; then _main "$@"; fi
# so that others can source it for its functions.
shipyard_is_sourced() {
	[ "${#FUNCNAME[@]}" -ge 2 ] &&
		[ "${FUNCNAME[0]}" = shipyard_is_sourced ] &&
		[ "${FUNCNAME[1]}" = source ]
}

# logging functions: one line each, on stdout (Note) or stderr (Warn, ERROR).
shipyard_log() {
	local type="$1"
	shift
	printf '%s [%s] [Entrypoint]: %s\n' "$(date --rfc-3339=seconds)" "$type" "$*"
}
shipyard_note() {
	shipyard_log Note "$@"
}
shipyard_warn() {
	shipyard_log Warn "$@" >&2
}
shipyard_error() {
	shipyard_log ERROR "$@" >&2
	exit 1
}

# usage: shipyard_file_env VAR [DEFAULT]
# Sets and exports VAR from $VAR, or from the file $VAR_FILE names (not both),
# else DEFAULT; unsets VAR_FILE. A trailing newline of the file is dropped.
shipyard_file_env() {
	local var="$1"
	local fileVar="${var}_FILE"
	local def="${2:-}"
	if [ -n "${!var:-}" ] && [ -n "${!fileVar:-}" ]; then
		shipyard_error "Both $var and $fileVar are set, but they are exclusive"
	fi
	local val="$def"
	if [ -n "${!var:-}" ]; then
		val="${!var}"
	elif [ -n "${!fileVar:-}" ]; then
		if [ ! -r "${!fileVar}" ]; then
			shipyard_error "$fileVar names ${!fileVar}, which uid $EUID cannot read"
		fi
		val="$(<"${!fileVar}")"
	fi
	printf -v "$var" '%s' "$val"
	export "${var?}"
	unset "$fileVar"
}

# usage: shipyard_writable DIR
# Fails, naming DIR, the uid and the reason, unless this user can create files in DIR.
shipyard_writable() {
	local dir="$1" probe reason
	if [ ! -d "$dir" ]; then
		shipyard_error "$dir does not exist, and uid $EUID could not create it; mount a volume or a tmpfs there"
	fi
	if probe="$(mktemp -p "$dir" .shipyard-writable.XXXXXX 2>&1)"; then
		rm -f "$probe"
		return 0
	fi
	reason="${probe##*: }"
	shipyard_error "$dir is not writable by uid $EUID (gid $(id -g)): ${reason:-permission denied}; it is owned by $(stat -c '%u:%g, mode %a' "$dir"). Mount a volume or a tmpfs there that this user can write (the image's README lists the paths)"
}

# usage: shipyard_dir DIR OWNER GROUP MODE
# As root: DIR exists with that owner, group and mode, changed only where
# they differ (so a read-only image directory that is already right passes).
# As any other user (docker run --user): DIR exists, made if its parent lets
# us, and is writable by us.
shipyard_dir() {
	local dir="$1" owner="$2" group="$3" mode="$4"
	if [ "$EUID" != 0 ]; then
		mkdir -p "$dir" 2>/dev/null || true
		shipyard_writable "$dir"
		return 0
	fi
	if [ ! -d "$dir" ]; then
		mkdir -p "$dir" 2>/dev/null || shipyard_writable "$(dirname "$dir")"
	fi
	# stat prints the mode without a leading zero.
	if [ "$(stat -c '%U:%G %a' "$dir")" != "$owner:$group ${mode#0}" ]; then
		if ! chown "$owner:$group" "$dir" 2>/dev/null || ! chmod "$mode" "$dir" 2>/dev/null; then
			shipyard_writable "$dir"
		fi
	fi
}

# usage: shipyard_sleep SECONDS
# sleep(1) without a process per call, for the short waits of a polling loop.
shipyard_sleep() {
	if [ -z "${SHIPYARD_SLEEP_FD:-}" ]; then
		# A pipe this shell holds both ends of: a read on it only ever times out.
		exec {SHIPYARD_SLEEP_FD}<> <(:)
	fi
	read -r -t "$1" -u "$SHIPYARD_SLEEP_FD" || true
}

# usage: shipyard_process_init_files RUNNER FILE...
# Runs /docker-entrypoint-initdb.d/ files in the given order: executable *.sh
# files are run, other *.sh files sourced (the caller's functions at hand),
# *.sql and *.sql.gz are piped into RUNNER, the image's SQL function.
shipyard_process_init_files() {
	local runner="$1" f
	shift
	for f; do
		case "$f" in
			*.sh)
				if [ -x "$f" ]; then
					shipyard_note "$0: running $f"
					"$f"
				else
					shipyard_note "$0: sourcing $f"
					# shellcheck disable=SC1090
					. "$f"
				fi
				;;
			*.sql)
				shipyard_note "$0: running $f"
				"$runner" <"$f"
				;;
			*.sql.gz)
				shipyard_note "$0: running $f"
				gunzip -c "$f" | "$runner"
				;;
			*)
				shipyard_warn "$0: ignoring $f"
				;;
		esac
	done
}

# usage: shipyard_any_of WORD... -- ARG...
# True when one of the ARGs is one of the WORDs; for instance, when a server's
# arguments hold a flag with which it only prints something (its version, its
# help) and exits.
shipyard_any_of() {
	local -a words=()
	while [ "$#" -gt 0 ] && [ "$1" != -- ]; do
		words+=("$1")
		shift
	done
	shift
	local arg word
	for arg; do
		for word in "${words[@]}"; do
			[ "$arg" = "$word" ] && return 0
		done
	done
	return 1
}

# usage: shipyard_become USER HOME SCRIPT [ARG...]
# As root: executes SCRIPT again as USER (the official images' gosu step),
# with what it has read so far, secrets from root-only files included, in
# its environment. As any other uid: returns, and the script goes on as it is.
shipyard_become() {
	local user="$1" home="$2"
	shift 2
	if [ "$EUID" != 0 ]; then
		return 0
	fi
	HOME="$home" USER="$user" LOGNAME="$user" \
		exec setpriv --reuid="$user" --regid="$user" --init-groups -- "$@"
}

# usage: shipyard_nss_wrap USER HOME
# Under an arbitrary uid (docker run --user 12345:0) that /etc/passwd does
# not know, gives that uid the name USER for every process from here on,
# through libnss_wrapper and files under /tmp: initdb and the database
# servers need a name for their own uid, and peer and unix_socket logins map
# the uid to USER. Root and known uids are left alone.
shipyard_nss_wrap() {
	local user="$1" home="$2" uid gid lib dir
	uid="$EUID"
	# Root first: every start as root (most of them) comes this way, and
	# asks nothing of another process.
	if [ "$uid" = 0 ] || getent passwd "$uid" >/dev/null; then
		return 0
	fi
	gid="$(id -g)"
	lib="$(compgen -G '/usr/lib/*/libnss_wrapper.so' | head -n 1 || true)"
	if [ -z "$lib" ]; then
		shipyard_warn "uid $uid has no name, and libnss_wrapper is missing; logins by peer credentials will fail"
		return 0
	fi
	shipyard_writable /tmp
	dir="$(mktemp -d /tmp/shipyard-nss.XXXXXX)"
	grep -v "^${user}:" /etc/passwd >"$dir/passwd"
	printf '%s:x:%s:%s:%s:%s:/usr/sbin/nologin\n' "$user" "$uid" "$gid" "$user" "$home" >>"$dir/passwd"
	cp /etc/group "$dir/group"
	if ! getent group "$gid" >/dev/null; then
		printf '%s:x:%s:\n' "$user" "$gid" >>"$dir/group"
	fi
	export LD_PRELOAD="$lib" NSS_WRAPPER_PASSWD="$dir/passwd" NSS_WRAPPER_GROUP="$dir/group"
}

# usage: shipyard_supervise USER HOME [ARG...]
# Hands the container to shipyard-init, which runs the image's services;
# ARGs go to the services that take them (the server).
shipyard_supervise() {
	local user="$1" home="$2"
	shift 2
	shipyard_nss_wrap "$user" "$home"
	exec /usr/local/bin/shipyard-init run -- "$@"
}
