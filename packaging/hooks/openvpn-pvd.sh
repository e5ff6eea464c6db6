#!/bin/sh
# OpenVPN: announce the tunnel's PvD with the DNS server and domain the server
# pushed, withdraw it on disconnect. In the client config:
#   script-security 2
#   up   /etc/pvdns/hooks/openvpn-pvd.sh
#   down /etc/pvdns/hooks/openvpn-pvd.sh
# OpenVPN passes pushed options as foreign_option_N ("dhcp-option DNS 10.8.0.1",
# "dhcp-option DOMAIN corp.example.com"); $script_type is "up" or "down".
set -eu
PVD_DIR="${PVD_DIR:-/etc/pvdns/pvd.d}"
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
file="$PVD_DIR/$id.json"
case "${script_type:-}" in
  up)
    printf '{"identifier": "%s", "dnsServers": [%s], "dnsZones": [%s], "noInternet": true, "interface": "%s"}\n' \
      "$id" "$servers" "$zones" "${dev:-tun0}" > "$file.tmp" && mv "$file.tmp" "$file" ;;
  down) rm -f "$file" ;;
esac
