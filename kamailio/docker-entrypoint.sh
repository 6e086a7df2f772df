#!/bin/bash
# Start the ivagate edge (Kamailio) in a container from IVAGATE_EDGE_* environment variables.
#   ivagate-edge [run]     Kamailio in the foreground (the container's main process)
#   ivagate-edge reload    re-read allowlist.address and the media nodes without a restart
#                          (after editing kamailio/allowlist.address or dispatcher.list)
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
#   IVAGATE_EDGE_ADVERTISE    address put in Via/Record-Route when the edge is behind NAT
#   IVAGATE_EDGE_ALLOW        extra sources allowed to send calls, as RingCX is: addresses or
#                             CIDRs, separated by spaces or commas (added to allowlist.address)
#   IVAGATE_EDGE_MEDIA_NODES  media-node SIP URIs, separated by spaces or commas; replaces the
#                             entries of dispatcher.list (sip:10.0.0.7:5080)
#   IVAGATE_EDGE_DEFINES      more kamailio.cfg switches, e.g. "WITH_DEBUG TESTING"
#   IVAGATE_EDGE_SHM_MB       shared memory, MB (256: Kamailio's 64 runs out at a few hundred
#                             calls/s; see kamailio/README.md "Tuning")
#   IVAGATE_EDGE_PKG_MB       private memory per process, MB (8)
#   IVAGATE_EDGE_CONF_DIR     the config tree (/etc/ivagate/kamailio)
set -euo pipefail

conf=${IVAGATE_EDGE_CONF_DIR:-/etc/ivagate/kamailio}
tls_dir=/etc/ivagate/edge # fixed: the shipped tls.cfg names it
state=/run/ivagate-edge   # the files Kamailio reads: the tree's, plus this site's entries
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

# The allowlist: the tree's file (RingCX's supernets) plus IVAGATE_EDGE_ALLOW, in group 1.
write_allowlist() {
	local source
	{
		cat "$conf/allowlist.address"
		for source in $(words "${IVAGATE_EDGE_ALLOW:-}"); do
			[[ $source == */* ]] || source="$source/32"
			echo "1 ${source%/*} ${source#*/} 0 site"
		done
	} >"$state/allowlist.address.new"
	mv "$state/allowlist.address.new" "$state/allowlist.address"
}

# The media nodes: the tree's dispatcher.list, or set 1 made from IVAGATE_EDGE_MEDIA_NODES.
write_dispatcher() {
	local uri n=0
	if [ -z "${IVAGATE_EDGE_MEDIA_NODES:-}" ]; then
		cp "$conf/dispatcher.list" "$state/dispatcher.list.new"
	else
		for uri in $(words "$IVAGATE_EDGE_MEDIA_NODES"); do
			n=$((n + 1))
			echo "1 $uri 0 0 duid=media$n"
		done >"$state/dispatcher.list.new"
	fi
	mv "$state/dispatcher.list.new" "$state/dispatcher.list"
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

run() {
	local listen define
	listen=${IVAGATE_EDGE_LISTEN:-$(hostname -i | cut -d' ' -f1)}
	local defines=(-A "LISTEN_ADDR=$listen" -A "SIP_PORT=${IVAGATE_EDGE_SIP_PORT:-5060}"
		-A "TLS_PORT=${IVAGATE_EDGE_TLS_PORT:-5061}" -A "HTTP_PORT=$http_port"
		-A "ALLOWLIST_FILE=\"$state/allowlist.address\""
		-A "DISPATCHER_LIST=\"$state/dispatcher.list\"")
	mkdir -p "$state"
	write_allowlist
	write_dispatcher
	if [ "${IVAGATE_EDGE_TLS:-true}" != false ]; then
		ensure_certificate
		defines+=(-A WITH_TLS)
		if [ "${IVAGATE_EDGE_TLS_CLIENT_VERIFY:-false}" = true ]; then
			[ -r "$tls_dir/ca.crt" ] || fail "IVAGATE_EDGE_TLS_CLIENT_VERIFY needs $tls_dir/ca.crt"
			defines+=(-A WITH_TLS_CLIENT_VERIFY)
		fi
	fi
	[ -z "${IVAGATE_EDGE_ADVERTISE:-}" ] || defines+=(-A "ADVERTISE_ADDR=$IVAGATE_EDGE_ADVERTISE")
	for define in $(words "${IVAGATE_EDGE_DEFINES:-}"); do
		defines+=(-A "$define")
	done
	# Relative names in kamailio.cfg (tls.cfg, kamailio-local.cfg) are found from here.
	cd "$conf"
	# -DD: foreground as the container's main process; -E: log to stderr (docker logs).
	# -x/-X tlsf: the TLSF allocator halves the CPU per call of Debian's default (README "Tuning").
	exec kamailio -DD -E -u kamailio -g kamailio -m "${IVAGATE_EDGE_SHM_MB:-256}" \
		-M "${IVAGATE_EDGE_PKG_MB:-8}" -x tlsf -X tlsf -f "$conf/kamailio.cfg" "${defines[@]}"
}

case "${1:-run}" in
run) run ;;
reload)
	write_allowlist
	write_dispatcher
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
