#!/usr/bin/env bash
# TURN credentials from GET /v1/rooms/{id}/ice are accepted by relays holding the shared secret:
# the Bedside relay and, as a reference, coturn. coturn's turnutils_uclient allocates with the
# credentials the API handed out and relays messages to a loopback peer; a wrong secret is
# refused. Runs inside a network namespace with nothing but loopback.
set -euo pipefail
cd "$(dirname "$0")/../.."

. tests/lib/netns.sh
loopback_namespace 300 "turnserver turnutils_uclient turnutils_peer unshare ip python3" \
  "bedside-host bedside-relay" "$@"

target_dir=${CARGO_TARGET_DIR:-target}
suite_workdir
fail() {
  echo "FAIL: $*"
  for log in "$work"/*.log; do echo "--- $log"; tail -n 15 "$log"; done
  exit 1
}
pass() { echo "ok: $*"; }

secret=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
BEDSIDE_TURN_URLS=127.0.0.1 BEDSIDE_TURN_SECRET=$secret BEDSIDE_TURN_TTL_SECS=600 \
  BEDSIDE_ARGON2_M_KIB=1024 BEDSIDE_ARGON2_T=1 \
  "$target_dir/debug/bedside" serve --listen 127.0.0.1:8080 --data-dir "$work/data" \
  >"$work/bedside.log" 2>&1 &
pids+=($!)
turnutils_peer -L 127.0.0.1 -p 3480 >"$work/peer.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  python3 -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:8080/healthz")' \
    2>/dev/null && break
  sleep 0.1
done

# Two accounts, a call between them, and the caller's ICE configuration.
python3 - "$work/data/outbox.jsonl" >"$work/ice.json" <<'PY'
import json, sys, urllib.request

BASE = "http://127.0.0.1:8080"

def call(method, path, body=None, token=None):
    req = urllib.request.Request(BASE + path, method=method,
                                 data=None if body is None else json.dumps(body).encode())
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", "Bearer " + token)
    with urllib.request.urlopen(req) as response:
        return json.loads(response.read() or b"null")

def user(name):
    email = f"{name}@bedside.test"
    password = "Tulip-Harbor-58"
    call("POST", "/v1/accounts", {"email": email, "password": password, "activation_channel": "email"})
    codes = [json.loads(l) for l in open(sys.argv[1]) if json.loads(l)["to"] == email]
    call("POST", "/v1/accounts/activate", {"email": email, "code": codes[-1]["code"]})
    return call("POST", "/v1/auth/login", {"email": email, "password": password})["access_token"]

alice, bob = user("alice"), user("bob")
room = call("POST", "/v1/rooms", {"invitee": "bob@bedside.test"}, alice)
print(json.dumps(call("GET", f"/v1/rooms/{room['id']}/ice", None, alice)))
PY
username=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["iceServers"][1]["username"])' "$work/ice.json")
credential=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["iceServers"][1]["credential"])' "$work/ice.json")
[ -n "$username" ] && [ -n "$credential" ] || fail "no TURN credentials in $(cat "$work/ice.json")"
pass "ICE configuration: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["iceServers"][1]["urls"])' "$work/ice.json")"

# Relays `-n` messages through a relay on port $1 with the given credentials: 0 lost.
relayed() {
  local name=$1 port=$2 user=$3 pass=$4
  local log="$work/uclient-$name.log"
  timeout 30 turnutils_uclient -u "$user" -w "$pass" -n 20 -m 1 -l 120 -e 127.0.0.1 -r 3480 \
    -p "$port" 127.0.0.1 >"$log" 2>&1 || true
  local lost recv
  lost=$(sed -n 's/.*Total lost packets \([0-9]*\) .*/\1/p' "$log" | tail -1)
  recv=$(sed -n 's/.*start_mclient: tot_send_msgs=\([0-9]*\), tot_recv_msgs=\([0-9]*\).*/\2/p' "$log" | tail -1)
  [ "$lost" = 0 ] && [ "${recv:-0}" -gt 0 ]
}

# coturn, the reference TURN REST implementation.
turnserver -n --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 --listening-port=3478 \
  --min-port=49152 --max-port=49999 --use-auth-secret --static-auth-secret="$secret" \
  --realm=bedside.test --allow-loopback-peers --no-tls --no-dtls --no-cli \
  --log-file=stdout >"$work/coturn.log" 2>&1 &
pids+=($!)
sleep 1
relayed coturn 3478 "$username" "$credential" || fail "coturn refused the API's credentials"
pass "coturn relays with the API's credentials"
wrong=$(python3 -c 'import base64,hashlib,hmac,sys; print(base64.b64encode(hmac.new(b"wrong", sys.argv[1].encode(), hashlib.sha1).digest()).decode())' "$username")
relayed coturn-wrong 3478 "$username" "$wrong" && fail "coturn accepted a credential under another secret"
pass "coturn refuses a credential under another secret"

# The Bedside relay.
relay_bin="$target_dir/debug/bedside-relay"
cat >"$work/relay.toml" <<EOF
realm = "bedside.test"
listen = ["udp://127.0.0.1:3479", "tcp://127.0.0.1:3479"]
relay_ipv4 = "127.0.0.1"
port_range = "50000-50999"
allow_peers = ["127.0.0.0/8"]
metrics_addr = "127.0.0.1:9651"
log_level = "info"
EOF
BEDSIDE_RELAY_SECRET=$secret "$relay_bin" --config "$work/relay.toml" >"$work/relay.log" 2>&1 &
pids+=($!)
sleep 1
relayed bedside-relay 3479 "$username" "$credential" || fail "the Bedside relay refused the API's credentials"
pass "the Bedside relay relays with the API's credentials"
relayed bedside-relay-wrong 3479 "$username" "$wrong" \
  && fail "the Bedside relay accepted a credential under another secret"
pass "the Bedside relay refuses a credential under another secret"
