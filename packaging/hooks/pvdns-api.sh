# pvdns's API as the VPN hooks call it (sourced by wireguard-pvd.sh and
# openvpn-pvd.sh, installed beside them). Reads PVDNS_API, PVDNS_TOKEN,
# PVDNS_TOKEN_FILE and `me` (the calling hook's name) from the hook.

# pvdns_api METHOD PATH [BODY]: one API call with the bearer token and a JSON body (pvdns refuses
# other bodies with 415). A refusal is reported with pvdns's own error, on one line.
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
