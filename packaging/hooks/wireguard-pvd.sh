#!/bin/sh
# Announce a WireGuard (or any VPN) tunnel's PvD to pvdns when it comes up, and
# withdraw it when it goes down. From wg-quick's config:
#   PostUp   = /etc/pvdns/hooks/wireguard-pvd.sh up %i
#   PreDown  = /etc/pvdns/hooks/wireguard-pvd.sh down %i
# Set below, or in /etc/default/pvdns-vpn: the PvD's name, its DNS server(s),
# the names it owns, and its address prefixes (their reverse zones go with it).
# Two ways, pick one:
# - a file in pvdns's pvd.d folder (the default): needs write access to that
#   folder, no token;
# - the API (PVDNS_API=http://127.0.0.1:8053): every change needs pvdns's
#   bearer token, taken from $PVDNS_TOKEN, else read from $PVDNS_TOKEN_FILE
#   (default /run/pvdns/token, which pvdns writes at start and root can read).
set -eu
[ -r /etc/default/pvdns-vpn ] && . /etc/default/pvdns-vpn
PVD_ID="${PVD_ID:-corp.example.com}"
PVD_SERVERS="${PVD_SERVERS:-\"10.8.0.1\"}"           # JSON array items, quoted
PVD_ZONES="${PVD_ZONES:-\"corp.example.com\"}"
PVD_PREFIXES="${PVD_PREFIXES:-\"10.8.0.0/16\"}"
PVD_DIR="${PVD_DIR:-/etc/pvdns/pvd.d}"             # pvdSources.directory
PVDNS_API="${PVDNS_API:-}"                          # e.g. http://127.0.0.1:8053 to use the API instead
PVDNS_TOKEN="${PVDNS_TOKEN:-}"
PVDNS_TOKEN_FILE="${PVDNS_TOKEN_FILE:-/run/pvdns/token}"
me=$(basename "$0")

# pvdns_api METHOD PATH [BODY] (pvdns-api.sh, installed beside this hook).
. "$(dirname "$0")/pvdns-api.sh"

action="$1"; iface="${2:-wg0}"
body="{\"identifier\": \"$PVD_ID\", \"dnsServers\": [$PVD_SERVERS], \"dnsZones\": [$PVD_ZONES], \"prefixes\": [$PVD_PREFIXES], \"noInternet\": true, \"interface\": \"$iface\"}"

if [ -n "$PVDNS_API" ]; then
  case "$action" in
    up)   pvdns_api PUT "/v1/pvds/$PVD_ID" "$body" ;;
    # wg-quick runs its hooks under `set -e`: a failed PreDown would keep the tunnel up, so a
    # withdrawal that fails is reported and the tunnel still goes down.
    down) pvdns_api DELETE "/v1/pvds/$PVD_ID" || true ;;
    *)    echo "usage: $0 up|down [interface]" >&2; exit 2 ;;
  esac
else
  file="$PVD_DIR/$PVD_ID.json"
  case "$action" in
    # Written aside and renamed: pvdns never reads half a file.
    up)   printf '%s\n' "$body" > "$file.tmp" && mv "$file.tmp" "$file" ;;
    down) rm -f "$file" ;;
    *)    echo "usage: $0 up|down [interface]" >&2; exit 2 ;;
  esac
fi
