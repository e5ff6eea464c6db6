#!/bin/bash
# Issue 14's attacks on the control plane, tried against pvdns as the systemd recipe ships it
# (packaging/config.yaml), moved to free loopback ports, a temporary token file and no host
# sources. Prints each attack and pvdns's answer. Needs curl and a built dist/ (npm run build);
# the "another user" row needs root (runuser). Sends traffic to 127.0.0.1 only.
#   bash bench/api-attacks.sh
set -u
cd "$(dirname "$0")/.."
D=$(mktemp -d); mkdir -p "$D/pvd.d"; chmod 755 "$D"
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$D"' EXIT
sed -e 's|127.0.0.153:53|127.0.0.1:15353|; s|127.0.0.1:8053|127.0.0.1:18053|; s|/run/pvdns/token|'"$D"'/run/token|; s|/etc/pvdns/pvd.d|'"$D"'/pvd.d|; s|host: true|host: false|' \
  packaging/config.yaml > "$D/config.yaml"
node dist/cli.js serve --config "$D/config.yaml" > "$D/log" 2>&1 & PID=$!
A=http://127.0.0.1:18053
for _ in $(seq 50); do curl -s -o /dev/null $A/healthz && break; sleep 0.1; done
EVIL='{"dnsServers":["127.0.0.53"],"priority":0}'
try() { # try DESCRIPTION CURL-ARGS...: one line, the answer's status and the start of its body
  local what=$1; shift
  local code; code=$(curl -s -o "$D/body" -w '%{http_code}' "$@")
  printf '%-66s %s %s\n' "$what" "$code" "$(head -c 90 "$D/body")"
}
try "PUT evil PvD, forged Host, text/plain, no token" -X PUT $A/v1/pvds/evil -H 'Host: attacker.example:8053' -H 'content-type: text/plain' -d "$EVIL"
try "the same with the real Host" -X PUT $A/v1/pvds/evil -H 'content-type: text/plain' -d "$EVIL"
try "the same as application/json, no token" -X PUT $A/v1/pvds/evil -H 'content-type: application/json' -d "$EVIL"
try "the same with a guessed token" -X PUT $A/v1/pvds/evil -H 'content-type: application/json' -H 'authorization: Bearer guessed-guessed-guessed' -d "$EVIL"
try "POST cache/flush, Origin: http://evil.example, text/plain" -X POST $A/v1/cache/flush -H 'Origin: http://evil.example' -H 'content-type: text/plain' -d x
try "POST cache/flush, no Origin, no token" -X POST $A/v1/cache/flush
try "DELETE a PvD, Sec-Fetch-Site: cross-site, with the token" -X DELETE $A/v1/pvds/x -H 'Sec-Fetch-Site: cross-site' -H "authorization: Bearer $(cat "$D/run/token")"
try "GET /v1/pvds through a rebound name" $A/v1/pvds -H 'Host: rebound.attacker.example:18053'
try "GET /metrics through a rebound name" $A/metrics -H 'Host: rebound.attacker.example:18053'
if [ "$(id -u)" = 0 ]; then
  printf '%-66s %s\n' "another local user (nobody) reads the token file" "$(runuser -u nobody -- cat "$D/run/token" 2>&1 >/dev/null | head -c 60)"
fi
try "root, with the token from the file: a PvD for ok.example" -X PUT $A/v1/pvds/ok.example -H 'content-type: application/json' -H "authorization: Bearer $(cat "$D/run/token")" -d '{"dnsServers":["127.0.0.9"],"noInternet":true}'
echo "token file: mode $(stat -c '%a, owner %U' "$D/run/token"); its folder: mode $(stat -c '%a' "$D/run")"
echo "PvDs now: $(curl -s $A/v1/pvds | grep -o '"identifier":"[^"]*"' | tr '\n' ' ')"
echo "audit lines in the log: $(grep -c '"audit":true' "$D/log")"
