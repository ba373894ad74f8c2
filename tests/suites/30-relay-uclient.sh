#!/usr/bin/env bash
# The TURN relay against a third-party client: coturn's turnutils_uclient and turnutils_peer.
#
# Runs inside a network namespace that has nothing but loopback, so no bug can send a packet
# off the machine. Checks: UDP, TCP and TLS relaying with TURN REST credentials and 0 lost
# messages; client-to-client relaying; wrong and expired credentials refused; uclient's DoS and
# random-disconnect modes leave the relay running and clean; the control call ends a room;
# events reach an HTTPS audit sink; SIGHUP reloads the certificate; SIGTERM drains and exits.
set -euo pipefail
cd "$(dirname "$0")/../.."

. tests/lib/netns.sh
loopback_namespace 600 "turnutils_uclient turnutils_peer unshare ip openssl curl python3" \
  "bedside-relay" "$@"

target_dir=${CARGO_TARGET_DIR:-target}
relay_bin="$target_dir/debug/bedside-relay"
suite_workdir

fail() { echo "FAIL: $*"; echo "--- relay log (tail)"; tail -n 40 "$work/relay.log" || true; exit 1; }
pass() { echo "ok: $*"; }

secret=$(openssl rand -hex 16)
control_token=$(openssl rand -hex 24)
# A throwaway CA and two leaf certificates for 127.0.0.1 (the second one for the reload check).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=bedside-test-ca -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
cert() {
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost \
    -keyout "$1.key" -out "$1.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial \
    -days 2 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
}
cert "$work/a"
cert "$work/b"
cp "$work/a.crt" "$work/relay.crt"
cp "$work/a.key" "$work/relay.key"

# An HTTPS sink standing in for the functions' audit endpoint.
cat >"$work/sink.py" <<'EOF'
import http.server, ssl, sys
out = open(sys.argv[1], "ab", buffering=0)
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        ok = self.headers.get("authorization") == "Bearer " + sys.argv[4]
        if ok:
            out.write(body + b"\n")
        self.send_response(200 if ok else 401)
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 9643), Sink)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
EOF
events_token=$(openssl rand -hex 16)
python3 "$work/sink.py" "$work/events.jsonl" "$work/a.crt" "$work/a.key" "$events_token" &
pids+=($!)

cat >"$work/relay.toml" <<EOF
realm = "bedside.test"
listen = ["udp://127.0.0.1:3478", "tcp://127.0.0.1:3478", "tls://127.0.0.1:5349"]
relay_ipv4 = "127.0.0.1"
relay_ipv6 = "::1"
port_range = "50000-50999"
allow_peers = ["127.0.0.0/8", "::1/128"]
tls_cert = "$work/relay.crt"
tls_key = "$work/relay.key"
metrics_addr = "127.0.0.1:9641"
control_addr = "127.0.0.1:9642"
events_url = "https://127.0.0.1:9643/events"
events_ca = "$work/ca.crt"
drain_secs = 5
unauthorized_per_sec = 500
log_level = "info"
EOF
BEDSIDE_RELAY_SECRET=$secret BEDSIDE_RELAY_CONTROL_TOKEN=$control_token \
  BEDSIDE_RELAY_EVENTS_TOKEN=$events_token "$relay_bin" --config "$work/relay.toml" \
  >"$work/relay.log" 2>&1 &
relay_pid=$!
pids+=($relay_pid)
turnutils_peer -L 127.0.0.1 -p 3480 >"$work/peer.log" 2>&1 &
pids+=($!)

metric() {
  curl -fsS http://127.0.0.1:9641/metrics | awk -v m="bedside_relay_$1" '$1 == m { print $2 }'
}
for _ in $(seq 50); do curl -fsS http://127.0.0.1:9641/health >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS http://127.0.0.1:9641/health >/dev/null || fail "relay did not become healthy"
pass "relay healthy"

# Runs uclient and checks that every message came back.
relay_run() {
  local name=$1
  shift
  local log="$work/uclient-$name.log"
  local rc=0
  timeout 60 turnutils_uclient -u "room-$name" "$@" >"$log" 2>&1 || rc=$?
  [ "$rc" = 0 ] || { tail -n 8 "$log"; fail "$name: uclient exited with $rc"; }
  local lost sent recv
  lost=$(sed -n 's/.*Total lost packets \([0-9]*\) .*/\1/p' "$log" | tail -1)
  sent=$(sed -n 's/.*start_mclient: tot_send_msgs=\([0-9]*\), tot_recv_msgs=\([0-9]*\).*/\1/p' "$log" | tail -1)
  recv=$(sed -n 's/.*start_mclient: tot_send_msgs=\([0-9]*\), tot_recv_msgs=\([0-9]*\).*/\2/p' "$log" | tail -1)
  [ -n "$lost" ] && [ -n "$sent" ] || { tail -n 20 "$log"; fail "$name: no summary"; }
  [ "$lost" = 0 ] || { tail -n 5 "$log"; fail "$name: $lost lost messages"; }
  [ "$sent" -gt 0 ] && [ "$sent" = "$recv" ] || fail "$name: sent $sent, received $recv"
  pass "$name: $sent messages relayed, 0 lost"
}
# Each run is its own room: UDP allocations outlive the client, and rooms have a quota.
common=(-W "$secret" -n 40 -m 4 -l 180 -z 5)
relay_run udp "${common[@]}" -e 127.0.0.1 -r 3480 127.0.0.1
relay_run udp-send-indications "${common[@]}" -s -e 127.0.0.1 -r 3480 127.0.0.1
relay_run tcp "${common[@]}" -t -e 127.0.0.1 -r 3480 127.0.0.1
relay_run tls "${common[@]}" -t -S -e 127.0.0.1 -r 3480 127.0.0.1
relay_run udp-client-to-client "${common[@]}" -y 127.0.0.1
relay_run tls-client-to-client "${common[@]}" -t -S -y 127.0.0.1
relay_run udp-ipv6-relay "${common[@]}" -x -y 127.0.0.1

# Credentials the relay must refuse: a wrong secret, and a REST username that has expired.
refused() {
  local name=$1
  shift
  local before after
  before=$(metric auth_failures_total)
  timeout 5 turnutils_uclient -n 3 -m 1 -e 127.0.0.1 -r 3480 "$@" 127.0.0.1 \
    >"$work/uclient-$name.log" 2>&1 || true
  grep -q 'Total lost packets' "$work/uclient-$name.log" && fail "$name: relayed anyway"
  after=$(metric auth_failures_total)
  [ "$after" -gt "$before" ] || fail "$name: no authentication failure counted"
  pass "$name refused ($((after - before)) failures counted)"
}
refused wrong-secret -W "wrong-$secret" -u room-1
expired_user="1000000000:room-1"
expired_pass=$(printf '%s' "$expired_user" | openssl dgst -sha1 -hmac "$secret" -binary | base64)
refused expired-credential -u "$expired_user" -w "$expired_pass"

# DoS (connect and leave at once) and random disconnects: the relay stays up, and TCP
# allocations are cleaned up when their connections close.
timeout 60 turnutils_uclient -O -W "$secret" -u dos -m 20 -e 127.0.0.1 -r 3480 127.0.0.1 \
  >"$work/uclient-dos-udp.log" 2>&1 || true
timeout 60 turnutils_uclient -O -t -W "$secret" -u dos -m 20 -e 127.0.0.1 -r 3480 127.0.0.1 \
  >"$work/uclient-dos-tcp.log" 2>&1 || true
timeout 60 turnutils_uclient -B -t -W "$secret" -u random -n 200 -m 4 -e 127.0.0.1 -r 3480 \
  127.0.0.1 >"$work/uclient-random.log" 2>&1 || true
kill -0 "$relay_pid" 2>/dev/null || fail "relay died under DoS / random disconnects"
curl -fsS http://127.0.0.1:9641/health >/dev/null || fail "relay unhealthy after DoS"
pass "relay survived DoS and random-disconnect modes"
relay_run after-dos "${common[@]}" -t -e 127.0.0.1 -r 3480 127.0.0.1

# The control call: end a room while its clients hang on to their allocations.
timeout 60 turnutils_uclient -h -W "$secret" -u ended-room -n 5 -m 2 -e 127.0.0.1 -r 3480 \
  127.0.0.1 >"$work/uclient-hang.log" 2>&1 &
hang=$!
pids+=($hang)
for _ in $(seq 100); do
  grep -q 'start_mclient: msz=' "$work/uclient-hang.log" && break
  sleep 0.1
done
grep -q 'start_mclient: msz=' "$work/uclient-hang.log" \
  || { tail -n 5 "$work/uclient-hang.log"; fail "the hanging client did not get going"; }
code=$(curl -sk -o /dev/null -w '%{http_code}' -X POST -H "authorization: Bearer wrong" \
  https://127.0.0.1:9642/v1/rooms/ended-room/end)
[ "$code" = 401 ] || fail "control call with a wrong token answered $code"
answer=$(curl -fsSk -X POST -H "authorization: Bearer $control_token" \
  https://127.0.0.1:9642/v1/rooms/ended-room/end)
ended=$(echo "$answer" | sed -n 's/.*"ended":\([0-9]*\).*/\1/p')
[ "${ended:-0}" -gt 0 ] || fail "control call ended nothing: $answer"
kill "$hang" 2>/dev/null || true
pass "control call ended $ended allocations of the room"

# The allocations that only UDP clients held expire later; the TCP ones are gone already.
sleep 1.5
grep -q '"allocation_created"' "$work/events.jsonl" || fail "no allocation_created event reported"
grep -q '"reason":"room_ended"' "$work/events.jsonl" || fail "no room_ended event reported"
grep -q '"allocation_failed"' "$work/events.jsonl" || fail "no allocation_failed event reported"
grep -q "$secret" "$work/relay.log" "$work/events.jsonl" && fail "the secret leaked into logs"
grep -q "$control_token" "$work/relay.log" && fail "the control token leaked into logs"
pass "audit events reported over https ($(wc -l <"$work/events.jsonl") batches)"

# SIGHUP reloads the configuration: a previous secret added to the file is accepted afterwards
# (rotation without restart), and the TLS certificate is read again.
rotated=$(openssl rand -hex 16)
echo "previous_secret = \"$rotated\"" >>"$work/relay.toml"
fingerprint() {
  openssl s_client -connect 127.0.0.1:5349 </dev/null 2>/dev/null | openssl x509 -noout -fingerprint
}
first=$(fingerprint)
cp "$work/b.crt" "$work/relay.crt"
cp "$work/b.key" "$work/relay.key"
kill -HUP "$relay_pid"
sleep 0.5
second=$(fingerprint)
[ -n "$first" ] && [ "$first" != "$second" ] || fail "certificate not reloaded"
[ "$second" = "$(openssl x509 -in "$work/b.crt" -noout -fingerprint)" ] || fail "wrong certificate"
pass "certificate reloaded on SIGHUP"
relay_run rotated-secret -W "$rotated" -n 10 -m 2 -l 100 -e 127.0.0.1 -r 3480 127.0.0.1

# Graceful drain: health turns 503, new allocations are refused, the process exits.
kill -TERM "$relay_pid"
sleep 0.3
code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9641/health || true)
[ "$code" = 503 ] || fail "health during drain answered $code"
for _ in $(seq 100); do kill -0 "$relay_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$relay_pid" 2>/dev/null && fail "relay still running after the drain period"
grep -q 'stopped' "$work/relay.log" || fail "relay did not stop cleanly"
pass "SIGTERM drained and stopped the relay"
echo "relay suite: all checks passed"
