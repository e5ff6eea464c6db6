#!/bin/sh
# OpenVPN: announce the tunnel's PvD with the DNS server and domain the server
# pushed, withdraw it on disconnect. In the client config:
#   script-security 2
#   up   /etc/pvdns/hooks/openvpn-pvd.sh
#   down /etc/pvdns/hooks/openvpn-pvd.sh
# OpenVPN passes pushed options as foreign_option_N ("dhcp-option DNS 10.8.0.1",
# "dhcp-option DOMAIN corp.example.com"); $script_type is "up" or "down".
# Two ways, as wireguard-pvd.sh: a file in pvdns's pvd.d folder (the default,
# no token), or the API with `setenv PVDNS_API http://127.0.0.1:8053` in the
# client config; every change through the API needs pvdns's bearer token, from
# $PVDNS_TOKEN, else read from $PVDNS_TOKEN_FILE (default /run/pvdns/token,
# which pvdns writes at start and root can read). The script must run as root
# for either (no `user`/`group` in the client config, or the down step fails).
set -eu
PVD_DIR="${PVD_DIR:-/etc/pvdns/pvd.d}"
PVDNS_API="${PVDNS_API:-}"
PVDNS_TOKEN="${PVDNS_TOKEN:-}"
PVDNS_TOKEN_FILE="${PVDNS_TOKEN_FILE:-/run/pvdns/token}"
me=$(basename "$0")

# pvdns_api METHOD PATH [BODY] (pvdns-api.sh, installed beside this hook).
. "$(dirname "$0")/pvdns-api.sh"

servers=""; zones=""
i=1
while :; do
  eval "opt=\${foreign_option_$i:-}"
  [ -z "$opt" ] && break
  case "$opt" in
    "dhcp-option DNS "*)    servers="$servers${servers:+, }\"${opt#dhcp-option DNS }\"" ;;
    "dhcp-option DOMAIN "*) zones="$zones${zones:+, }\"${opt#dhcp-option DOMAIN }\"" ;;
  esac
  i=$((i + 1))
done
id="${PVD_ID:-vpn-${dev:-tun0}}"
body=$(printf '{"identifier": "%s", "dnsServers": [%s], "dnsZones": [%s], "noInternet": true, "interface": "%s"}' \
  "$id" "$servers" "$zones" "${dev:-tun0}")
if [ -n "$PVDNS_API" ]; then
  case "${script_type:-}" in
    up)   pvdns_api PUT "/v1/pvds/$id" "$body" ;;
    # A withdrawal that fails is reported; the tunnel goes down all the same.
    down) pvdns_api DELETE "/v1/pvds/$id" || true ;;
  esac
else
  file="$PVD_DIR/$id.json"
  case "${script_type:-}" in
    # Written aside and renamed: pvdns never reads half a file.
    up)   printf '%s\n' "$body" > "$file.tmp" && mv "$file.tmp" "$file" ;;
    down) rm -f "$file" ;;
  esac
fi
