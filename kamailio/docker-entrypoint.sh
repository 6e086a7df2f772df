#!/bin/bash
# Start the ivagate edge (Kamailio) in a container from IVAGATE_EDGE_* environment variables.
#   ivagate-edge [run]     Kamailio in the foreground (the container's main process)
#   ivagate-edge reload    re-read the allowlist and the media nodes without a restart
#                          (after editing kamailio/ringcx-networks)
#   ivagate-edge health    exit 0 while Kamailio answers its control listener
#   ivagate-edge metrics   the edge's Prometheus metrics (the control listener is loopback-only)
#   ivagate-edge rpc METHOD [PARAMS_JSON]   Kamailio's JSON-RPC, e.g. `rpc dispatcher.list`
#
#   IVAGATE_EDGE_LISTEN       address to listen on (default: the container's first address;
#                             not 0.0.0.0, which Kamailio would write into Record-Route)
#   IVAGATE_EDGE_SIP_PORT     SIP over UDP and TCP (5060)
#   IVAGATE_EDGE_TLS_PORT     SIP over TLS (5061)
#   IVAGATE_EDGE_TLS          "false" turns the TLS listener off (on by default). Certificates
#                             are in /etc/ivagate/edge (mount it), where tls.cfg reads them:
#                             tls.crt and tls.key; when both are missing, a self-signed pair
#                             for IVAGATE_EDGE_TLS_NAME (default: the hostname) is made there
#   IVAGATE_EDGE_TLS_CLIENT_VERIFY  "true": TLS callers need a certificate signed by ca.crt
#                             (render-site tls --client-verify)
#   IVAGATE_EDGE_ADVERTISE    address put in Via/Record-Route when the edge is behind NAT
#   IVAGATE_EDGE_MEDIA_ADDR   the edge's private face toward the media nodes (MEDIA_ADDR)
#   IVAGATE_EDGE_ALLOW        extra sources allowed to send calls, as RingCX is: addresses or
#                             CIDRs, separated by spaces or commas (added to RingCX's supernets,
#                             kamailio/ringcx-networks)
#   IVAGATE_EDGE_MEDIA_NODES  media-node SIP URIs, separated by spaces or commas, in priority
#                             order (sip:127.0.0.1:5080)
#   IVAGATE_EDGE_REPORT_TOKEN the token every INFO report to a media node's controller starts
#                             with (kamailio/README.md, "INFO reports"; the controller's
#                             IVAGATE_EDGE__TOKEN)
#   IVAGATE_EDGE_REPORT_PORT  the controllers' report port on their nodes' addresses (8449)
#   IVAGATE_EDGE_DEFINES      more kamailio.cfg switches, e.g. "WITH_DEBUG TESTING"
#   IVAGATE_EDGE_SHM_MB       shared memory, MB (256: Kamailio's 64 runs out at a few hundred
#                             calls/s; see kamailio/README.md "Tuning")
#   IVAGATE_EDGE_PKG_MB       private memory per process, MB (8)
#   IVAGATE_EDGE_CONF_DIR     the config tree (/etc/ivagate/kamailio)
#
# The allowlist, the dispatcher list and the TLS profiles are written by the tree's
# render-site (the one renderer the Ansible role and the tests use too) into $state, and the
# site values into $state/kamailio-local.cfg (mode 0600: it holds the report token, which a
# -A option would show to every user in `ps`).
set -euo pipefail

conf=${IVAGATE_EDGE_CONF_DIR:-/etc/ivagate/kamailio}
tls_dir=/etc/ivagate/edge # fixed: the shipped tls.cfg names it
state=/run/ivagate-edge   # the site files render-site writes for Kamailio
http_port=8060

fail() {
	echo "ivagate-edge: $*" >&2
	exit 64
}

# Splits "a, b c" into one word per line.
words() { tr ', ' '\n\n' <<<"${1:-}" | sed '/^$/d'; }

# HTTP to the control listener kamailio.cfg keeps on 127.0.0.1 (no curl in the image):
# request METHOD PATH [BODY] prints the response body.
request() {
	local body=${3:-}
	exec 3<>"/dev/tcp/127.0.0.1/$http_port"
	printf '%s %s HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' \
		"$1" "$2" "${#body}" "$body" >&3
	sed '1,/^\r$/d' <&3
	exec 3<&-
}

rpc() { request POST /RPC "{\"jsonrpc\":\"2.0\",\"method\":\"$1\",\"params\":${2:-[]},\"id\":1}"; }

# render FILE ARGS...: $state/FILE from `render-site ARGS...`, replaced in one step.
render() {
	local file=$state/$1
	shift
	"$conf/render-site" "$@" >"$file.new"
	mv "$file.new" "$file"
}

# The allowlist: RingCX's supernets plus IVAGATE_EDGE_ALLOW may call; local health probes
# may send OPTIONS. The media nodes: IVAGATE_EDGE_MEDIA_NODES.
write_lists() {
	render allowlist.address allowlist "$("$conf/render-site" ringcx) ${IVAGATE_EDGE_ALLOW:-}" 127.0.0.1
	# shellcheck disable=SC2046 # one argument per URI
	render dispatcher.list dispatcher $(words "${IVAGATE_EDGE_MEDIA_NODES:-sip:127.0.0.1:5080}")
}

# A self-signed certificate when the operator gave none, so TLS works on first run.
ensure_certificate() {
	local crt=$tls_dir/tls.crt key=$tls_dir/tls.key name=${IVAGATE_EDGE_TLS_NAME:-$(hostname)}
	if [ ! -e "$crt" ] && [ ! -e "$key" ]; then
		echo "ivagate-edge: no certificate in $tls_dir; making a self-signed one for $name" >&2
		mkdir -p "$tls_dir"
		openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=$name" \
			-addext "subjectAltName=DNS:$name" -keyout "$key" -out "$crt" 2>/dev/null
		# Kamailio reads the key after it has dropped root
		chgrp kamailio "$key" && chmod 640 "$key"
	fi
	if [ ! -r "$crt" ] || [ ! -r "$key" ]; then fail "TLS needs both $crt and $key"; fi
}

# The site values as kamailio-local.cfg: kamailio.cfg imports that name from the working
# directory before its own directory, so this file, in $state, is the one read; it imports
# an operator's kamailio-local.cfg from the tree first. Root reads it before Kamailio drops
# to its user.
write_defines() {
	local define
	{
		echo "# written by ivagate-edge from IVAGATE_EDGE_* at each start"
		echo "import_file \"$conf/kamailio-local.cfg\""
		for define in "$@"; do
			echo "#!define ${define/=/ }"
		done
	} >"$state/kamailio-local.cfg.new"
	mv "$state/kamailio-local.cfg.new" "$state/kamailio-local.cfg"
}

run() {
	local listen define token=${IVAGATE_EDGE_REPORT_TOKEN:-}
	listen=${IVAGATE_EDGE_LISTEN:-$(hostname -i | cut -d' ' -f1)}
	local defines=("LISTEN_ADDR=$listen" "SIP_PORT=${IVAGATE_EDGE_SIP_PORT:-5060}"
		"TLS_PORT=${IVAGATE_EDGE_TLS_PORT:-5061}" "HTTP_PORT=$http_port"
		"ALLOWLIST_FILE=\"$state/allowlist.address\""
		"DISPATCHER_LIST=\"$state/dispatcher.list\"")
	mkdir -p "$state"
	write_lists
	if [ "${IVAGATE_EDGE_TLS:-true}" != false ]; then
		ensure_certificate
		local verify=()
		if [ "${IVAGATE_EDGE_TLS_CLIENT_VERIFY:-false}" = true ]; then
			[ -r "$tls_dir/ca.crt" ] || fail "IVAGATE_EDGE_TLS_CLIENT_VERIFY needs $tls_dir/ca.crt"
			verify=(--client-verify)
		fi
		render tls.cfg tls "${verify[@]}"
		defines+=(WITH_TLS "TLS_CONFIG=\"$state/tls.cfg\"")
	fi
	[ -z "${IVAGATE_EDGE_ADVERTISE:-}" ] || defines+=("ADVERTISE_ADDR=$IVAGATE_EDGE_ADVERTISE")
	[ -z "${IVAGATE_EDGE_MEDIA_ADDR:-}" ] || defines+=("MEDIA_ADDR=$IVAGATE_EDGE_MEDIA_ADDR")
	if [ -n "$token" ]; then
		# it is quoted in a #!define and starts a space-separated report line
		[[ $token =~ ^[A-Za-z0-9._~+/=-]+$ ]] ||
			fail "IVAGATE_EDGE_REPORT_TOKEN: only letters, digits and . _ ~ + / = -"
		defines+=("REPORT_TOKEN=\"$token\"")
	fi
	[ -z "${IVAGATE_EDGE_REPORT_PORT:-}" ] || defines+=("REPORT_PORT=$IVAGATE_EDGE_REPORT_PORT")
	for define in $(words "${IVAGATE_EDGE_DEFINES:-}"); do
		defines+=("$define")
	done
	(
		umask 077
		write_defines "${defines[@]}"
	)
	cd "$state"
	# -DD: foreground as the container's main process; -E: log to stderr (docker logs).
	# -x/-X tlsf: the TLSF allocator halves the CPU per call of Debian's default (README "Tuning").
	exec kamailio -DD -E -u kamailio -g kamailio -m "${IVAGATE_EDGE_SHM_MB:-256}" \
		-M "${IVAGATE_EDGE_PKG_MB:-8}" -x tlsf -X tlsf -f "$conf/kamailio.cfg"
}

case "${1:-run}" in
run) run ;;
reload)
	write_lists
	rpc permissions.addressReload
	rpc dispatcher.reload
	echo
	;;
health) rpc core.uptime | grep -q '"uptime"' ;;
metrics) request GET /metrics ;;
rpc)
	shift
	rpc "$@"
	echo
	;;
*) fail "unknown command '$1' (run, reload, health, metrics, rpc)" ;;
esac
