#!/bin/sh
# Start FreeSWITCH on ivagate's config tree, in the foreground, and refuse to start without the
# settings that have no safe default. The image runs it; with an operator-supplied FreeSWITCH image,
# mount this tree and use this script as the entrypoint (README.md). Tests run it too.
#
# Site values are IVAGATE_FS_* environment variables, read by vars.xml when FreeSWITCH loads.
# Paths: IVAGATE_FS_BIN (freeswitch), IVAGATE_FS_CONF_DIR (this script's directory),
#        IVAGATE_FS_LOG_DIR (/var/log/freeswitch), IVAGATE_FS_STATE_DIR (/var/lib/freeswitch),
#        IVAGATE_FS_RUN_DIR (/run/freeswitch). Extra arguments are passed to freeswitch.
set -euf # -f: values are split on commas, never expanded as file names

fail() {
	echo "ivagate-freeswitch: $*" >&2
	exit 64
}

# An empty IVAGATE_FS_* would become an empty value in FreeSWITCH: treat it as unset (= default).
for name in $(env | sed -n 's/^\(IVAGATE_FS_[A-Z0-9_]*\)=$/\1/p'); do
	unset "$name"
done

# mod_event_socket falls back to the well-known "ClueCon" when the password is empty.
[ -n "${IVAGATE_FS_ESL_PASSWORD:-}" ] ||
	fail "IVAGATE_FS_ESL_PASSWORD is not set: the event socket has no default password"
[ "$IVAGATE_FS_ESL_PASSWORD" != "ClueCon" ] ||
	fail "IVAGATE_FS_ESL_PASSWORD is FreeSWITCH's well-known default: choose another"
case "$IVAGATE_FS_ESL_PASSWORD" in
*[!A-Za-z0-9._~+=-]*)
	# it is pasted into XML and into the controller's "auth" line: keep it to safe characters
	fail "IVAGATE_FS_ESL_PASSWORD may hold only letters, digits and . _ ~ + = -" ;;
esac

# FreeSWITCH would log a bad CIDR and drop it, or ignore entries past the 32nd: say so now.
if [ -n "${IVAGATE_FS_EDGE_CIDRS:-}" ]; then
	case "$IVAGATE_FS_EDGE_CIDRS" in
	,* | *, | *,,*) fail "IVAGATE_FS_EDGE_CIDRS: empty entry in '$IVAGATE_FS_EDGE_CIDRS'" ;;
	esac
	count=0
	for cidr in $(echo "$IVAGATE_FS_EDGE_CIDRS" | tr ',' ' '); do
		count=$((count + 1))
		case "$cidr" in
		*[!0-9A-Fa-f.:/]* | */*/* | /* | */) bad=yes ;;
		*/*) bad=no ;;
		*) bad=yes ;;
		esac
		[ "$bad" = no ] || fail "IVAGATE_FS_EDGE_CIDRS: '$cidr' is not address/bits"
	done
	[ "$count" -ge 1 ] && [ "$count" -le 32 ] ||
		fail "IVAGATE_FS_EDGE_CIDRS: give 1 to 32 comma-separated CIDRs, not $count"
fi

conf=${IVAGATE_FS_CONF_DIR:-$(cd "$(dirname "$0")" && pwd)}
log=${IVAGATE_FS_LOG_DIR:-/var/log/freeswitch}
state=${IVAGATE_FS_STATE_DIR:-/var/lib/freeswitch}
run=${IVAGATE_FS_RUN_DIR:-/run/freeswitch}
[ -r "$conf/freeswitch.xml" ] || fail "no freeswitch.xml in $conf (IVAGATE_FS_CONF_DIR)"
mkdir -p "$log" "$state/db" "$state/storage" "$state/recordings" "$run"

# -nonat: no UPnP/NAT-PMP probing (addresses are configured); -nf: stay in the foreground (the
# container's main process); -nc: no console (logs go to $log/freeswitch.log).
exec "${IVAGATE_FS_BIN:-freeswitch}" -nonat -nf -nc \
	-conf "$conf" -log "$log" -db "$state/db" -run "$run" \
	-storage "$state/storage" -recordings "$state/recordings" "$@"
