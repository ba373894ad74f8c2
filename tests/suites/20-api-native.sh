#!/usr/bin/env bash
# The accounts API conformance suite (tests/conformance) against the native host on loopback.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/conformance/tools/host.sh

build_host
data="$(mktemp -d)"
log="$(mktemp)"
port="$(free_port)"
cleanup() {
  local status=$?
  stop_all
  if [ "$status" != 0 ]; then
    echo "--- server log (last 40 lines)"
    tail -n 40 "$log"
  fi
  rm -rf "$data" "$log"
}
trap cleanup EXIT

# Debug logging, so that the check for secrets in the log covers everything the host says.
start_bg bedside "$log" env BEDSIDE_LOCKOUT_FREE_ATTEMPTS=5 BEDSIDE_LOG=debug \
  "$BEDSIDE_BIN" serve --listen "127.0.0.1:$port" --data-dir "$data"
wait_http "http://127.0.0.1:$port/healthz" 60

BEDSIDE_BASE_URL="http://127.0.0.1:$port" \
  BEDSIDE_OUTBOX="$data/outbox.jsonl" \
  BEDSIDE_SERVER_LOG="$log" \
  BEDSIDE_LOCKOUT_FREE_ATTEMPTS=5 \
  timeout 1200 tests/.venv/bin/python -m pytest tests/conformance -q "$@"
