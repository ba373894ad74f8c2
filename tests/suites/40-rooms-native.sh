#!/usr/bin/env bash
# Rooms against the native host on loopback: the room routes of the conformance suite with
# relays configured and a short ring time, then the host serving TLS from a PEM certificate.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/conformance/tools/host.sh

build_host
work="$(mktemp -d)"
cleanup() {
  local status=$?
  stop_all
  if [ "$status" != 0 ]; then
    for log in "$work"/*.log; do
      [ -f "$log" ] && { echo "--- $log (last 40 lines)"; tail -n 40 "$log"; }
    done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

turn_secret="suite-relay-secret-$RANDOM$RANDOM"
port="$(free_port)"
start_bg bedside "$work/plain.log" env \
  BEDSIDE_TURN_URLS=relay.bedside.test BEDSIDE_TURN_SECRET="$turn_secret" BEDSIDE_TURN_TTL_SECS=600 \
  BEDSIDE_ROOM_RING_SECS=3 BEDSIDE_ARGON2_M_KIB=1024 BEDSIDE_ARGON2_T=1 \
  "$BEDSIDE_BIN" serve --listen "127.0.0.1:$port" --data-dir "$work/plain"
wait_http "http://127.0.0.1:$port/healthz" 60

BEDSIDE_BASE_URL="http://127.0.0.1:$port" \
  BEDSIDE_OUTBOX="$work/plain/outbox.jsonl" \
  BEDSIDE_TURN_SECRET="$turn_secret" \
  BEDSIDE_ROOM_RING_SECS=3 \
  timeout 600 tests/.venv/bin/python -m pytest tests/conformance/test_rooms.py -q "$@"
if grep -q "$turn_secret" "$work/plain.log"; then
  echo "the TURN secret appears in the server log" >&2
  exit 1
fi

# TLS: a self-signed certificate for 127.0.0.1; plain HTTP must not be answered.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
tls_port="$(free_port)"
start_bg bedside-tls "$work/tls.log" env BEDSIDE_TLS_CERT="$work/cert.pem" BEDSIDE_TLS_KEY="$work/key.pem" \
  "$BEDSIDE_BIN" serve --listen "127.0.0.1:$tls_port" --data-dir "$work/tls"
# Python's standard library as the client: trusts only the test certificate.
https_get() {
  "$BEDSIDE_PY" - "$1" "$work/cert.pem" <<'PY'
import ssl, sys, urllib.request
context = ssl.create_default_context(cafile=sys.argv[2])
with urllib.request.urlopen(sys.argv[1], context=context, timeout=5) as response:
    print(response.read().decode())
PY
}
for _ in $(seq 1 100); do
  https_get "https://127.0.0.1:$tls_port/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
body="$(https_get "https://127.0.0.1:$tls_port/healthz")"
[ "$body" = '{"status":"ok"}' ] || { echo "TLS health check answered: $body" >&2; exit 1; }
if "$BEDSIDE_PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' \
  "http://127.0.0.1:$tls_port/healthz" >/dev/null 2>&1; then
  echo "plain HTTP was answered on the TLS port" >&2
  exit 1
fi
echo "TLS: ok"
