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

# pvdns_api METHOD PATH [BODY]: as in wireguard-pvd.sh (each hook stands alone).
pvdns_api() {
  token="$PVDNS_TOKEN"
  if [ -z "$token" ]; then
    if [ ! -r "$PVDNS_TOKEN_FILE" ] || ! token=$(cat "$PVDNS_TOKEN_FILE") || [ -z "$token" ]; then
      echo "$me: no pvdns API token: PVDNS_TOKEN is empty and $PVDNS_TOKEN_FILE cannot be read (pvdns writes it at start; run as root or set PVDNS_TOKEN_FILE)" >&2
      return 1
    fi
  fi
  # The header reaches curl on its standard input, not its command line, which every local user
  # can read in /proc. A pvdns that does not answer in 10 s does not hold the tunnel up.
  if ! resp=$(printf 'authorization: Bearer %s\n' "$token" |
    curl -sS --max-time 10 -X "$1" -H @- -H 'content-type: application/json' ${3:+--data-raw "$3"} -w '\n%{http_code}' "$PVDNS_API$2"); then
    echo "$me: $1 $PVDNS_API$2: no answer from pvdns" >&2
    return 1
  fi
  code=$(printf '%s\n' "$resp" | tail -n 1)
  case "$code" in
    2??) return 0 ;;
    *) echo "$me: $1 $PVDNS_API$2: pvdns answered $code $(printf '%s\n' "$resp" | sed '$d' | tr -d '\n')" >&2; return 1 ;;
  esac
}

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
