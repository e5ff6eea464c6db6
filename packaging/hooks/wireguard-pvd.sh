#!/bin/sh
# Announce a WireGuard (or any VPN) tunnel's PvD to pvdns when it comes up, and
# withdraw it when it goes down. From wg-quick's config:
#   PostUp   = /etc/pvdns/hooks/wireguard-pvd.sh up %i
#   PreDown  = /etc/pvdns/hooks/wireguard-pvd.sh down %i
# Set below, or in /etc/default/pvdns-vpn: the PvD's name, its DNS server(s),
# the names it owns, and its address prefixes (their reverse zones go with it).
# Two ways, pick one: a file in pvdns's pvd.d folder (no token needed), or the API.
set -eu
[ -r /etc/default/pvdns-vpn ] && . /etc/default/pvdns-vpn
PVD_ID="${PVD_ID:-corp.example.com}"
PVD_SERVERS="${PVD_SERVERS:-\"10.8.0.1\"}"           # JSON array items, quoted
PVD_ZONES="${PVD_ZONES:-\"corp.example.com\"}"
PVD_PREFIXES="${PVD_PREFIXES:-\"10.8.0.0/16\"}"
PVD_DIR="${PVD_DIR:-/etc/pvdns/pvd.d}"             # pvdSources.directory
PVDNS_API="${PVDNS_API:-}"                          # e.g. http://127.0.0.1:8053 to use the API instead
PVDNS_TOKEN="${PVDNS_TOKEN:-}"

action="$1"; iface="${2:-wg0}"
body="{\"identifier\": \"$PVD_ID\", \"dnsServers\": [$PVD_SERVERS], \"dnsZones\": [$PVD_ZONES], \"prefixes\": [$PVD_PREFIXES], \"noInternet\": true, \"interface\": \"$iface\"}"

if [ -n "$PVDNS_API" ]; then
  auth=""; [ -n "$PVDNS_TOKEN" ] && auth="authorization: Bearer $PVDNS_TOKEN"
  case "$action" in
    up)   curl -fsS -X PUT "$PVDNS_API/v1/pvds/$PVD_ID" -H 'content-type: application/json' ${auth:+-H "$auth"} -d "$body" >/dev/null ;;
    down) curl -fsS -X DELETE "$PVDNS_API/v1/pvds/$PVD_ID" ${auth:+-H "$auth"} >/dev/null || true ;;
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
